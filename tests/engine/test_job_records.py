"""Job records are bounded: pruned by age and count in SQLite and in the shared Redis store, and
a failed job keeps no input."""

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from novel_engine.app import MIGRATIONS as ENGINE_MIGRATIONS
from novel_engine.cache import L1Cache, TieredCache
from novel_engine.db import Database, PoolTimeout
from novel_engine.jobs import (
    MIGRATIONS,
    SQUASHES,
    Job,
    JobRunner,
    JobStatus,
    JobStore,
    SucceededJob,
    encode_input,
)
from novel_engine.keys import DB
from novel_engine.scheduler import DeadlineExceeded, Priority
from novel_engine.shared_jobs import DEFAULT_PREFIX, SharedJobStore
from novel_engine.simulation.request import SimulationInput
from novel_engine.simulation.service import result_key

from .api import FULL_CAST, SIEGE, engine_client, until
from .conftest import RedisServer
from .samples import sample_input

INPUTS = [sample_input(FULL_CAST[:3], turns=5, seed=seed) for seed in range(5)]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(
        tmp_path / "jobs.db", size=1, acquire_timeout=5, metrics=None, migrations=MIGRATIONS
    )
    yield database
    await database.close()


async def job_ids(db: Database) -> set[str]:
    async with db.acquire() as connection:
        return {row[0] for row in await connection.execute_fetchall("SELECT id FROM jobs")}


async def test_sqlite_records_beyond_the_count_go_oldest_first(db: Database) -> None:
    store = JobStore(db)
    for simulation in INPUTS:
        await store.record(simulation, JobStatus.QUEUED)
        await store.finish(simulation.simulation_id(), JobStatus.SUCCEEDED)
    running = sample_input(FULL_CAST[:2], turns=5)
    await store.record(running, JobStatus.QUEUED)

    assert await store.prune(retention_seconds=3600, max_records=2) == 3
    newest = {simulation.simulation_id() for simulation in INPUTS[-2:]}
    assert await job_ids(db) == newest | {running.simulation_id()}  # queued jobs stay


async def test_sqlite_records_older_than_the_retention_go(db: Database) -> None:
    store = JobStore(db)
    for simulation in INPUTS[:2]:
        await store.record(simulation, JobStatus.QUEUED)
        await store.finish(simulation.simulation_id(), JobStatus.SUCCEEDED)
    await asyncio.sleep(0.2)
    await store.record(INPUTS[2], JobStatus.SUCCEEDED)

    assert await store.prune(retention_seconds=0.1, max_records=100) == 2
    assert await job_ids(db) == {INPUTS[2].simulation_id()}


async def test_a_failed_job_keeps_its_status_and_error_but_no_input(db: Database) -> None:
    store = JobStore(db)
    job_id = INPUTS[0].simulation_id()
    await store.record(INPUTS[0], JobStatus.QUEUED)
    await store.finish(job_id, JobStatus.FAILED, "it broke")
    failed = await store.get(job_id)
    assert failed is not None
    assert (failed.status, failed.error) == (JobStatus.FAILED, "it broke")
    async with db.acquire() as connection:
        rows = list(await connection.execute_fetchall("SELECT input FROM jobs"))
    assert rows[0][0] is None


async def test_a_succeeded_job_keeps_its_input_compressed(db: Database) -> None:
    store = JobStore(db)
    await store.record(INPUTS[0], JobStatus.SUCCEEDED)
    job = await store.get(INPUTS[0].simulation_id())
    assert job is not None
    assert job.input == INPUTS[0]
    async with db.acquire() as connection:
        rows = list(await connection.execute_fetchall("SELECT length(input) FROM jobs"))
    assert rows[0][0] < len(INPUTS[0].model_dump_json()) / 2


def in_process_cache() -> TieredCache:
    return TieredCache(L1Cache(max_entries=10, max_bytes=100_000, ttl_seconds=60))


class ResultCheckingStore(JobStore):
    """Looks for the job's result, as a GET on any replica does first, at the moment its
    record is about to say that the job ended."""

    def __init__(self, db: Database, cache: TieredCache) -> None:
        super().__init__(db)
        self.cache = cache
        self.results_seen: list[bytes | None] = []

    async def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        self.results_seen.append(await self.cache.get(result_key(job_id)))
        await super().finish(job_id, status, error)


RESULT = b'{"turns": []}'


async def run_first_input(runner: JobRunner) -> str:
    """Accept INPUTS[0] as a job (queued) and let its computation end with RESULT; its id."""
    computation: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    assert (
        await runner.start(INPUTS[0], Priority.NORMAL, lambda *_: computation) is JobStatus.QUEUED
    )
    computation.set_result(RESULT)
    return INPUTS[0].simulation_id()


async def test_a_result_is_cached_before_any_record_says_the_job_succeeded(
    db: Database,
) -> None:
    # Otherwise a poll landing in between finds "succeeded" and no result, and runs the
    # simulation again to answer it.
    cache = in_process_cache()
    store = ResultCheckingStore(db, cache)
    runner = JobRunner(store, cache)
    job_id = await run_first_input(runner)

    async def succeeded() -> bool:
        job = await store.get(job_id)
        return job is not None and job.status is JobStatus.SUCCEEDED

    await until(succeeded)
    assert store.results_seen == [RESULT]
    await runner.close()


class HeldFinishStore(JobStore):
    """A database slow to write how a job ended: its finish waits for `release`."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.release = asyncio.Event()

    async def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        await self.release.wait()
        await super().finish(job_id, status, error)


async def test_a_request_for_a_job_whose_result_is_cached_is_told_it_succeeded(
    db: Database,
) -> None:
    # A client that polled the result, then sent the same request again, was told "queued".
    cache = in_process_cache()
    store = HeldFinishStore(db)
    runner = JobRunner(store, cache)
    job_id = await run_first_input(runner)

    async def cached() -> bool:
        return await cache.get(result_key(job_id)) == RESULT

    await until(cached)
    unused: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    again = await runner.start(INPUTS[0], Priority.NORMAL, lambda *_: unused)
    assert again is JobStatus.SUCCEEDED  # while the record is still being written
    store.release.set()
    await runner.close()


class FullStore(JobStore):
    """A database on a full disk: it cannot write how a job ended until `room` is set."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.room = False

    async def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        if not self.room:
            raise sqlite3.OperationalError("database or disk is full")
        await super().finish(job_id, status, error)


async def test_the_end_of_a_job_the_database_cannot_record_is_told_and_recorded_later(
    db: Database,
) -> None:
    # The job was said to be queued until a restart, which then recorded it failed.
    store = FullStore(db)
    runner = JobRunner(store, in_process_cache())
    job_id = await run_first_input(runner)

    async def ended() -> bool:
        job = await runner.lookup(job_id)
        return job is not None and job.status is not JobStatus.QUEUED

    await until(ended)
    job = await runner.lookup(job_id)
    assert job is not None
    assert (job.status, job.input) == (JobStatus.SUCCEEDED, INPUTS[0])  # it recomputes the result
    assert (await store.get(job_id)) == Job(job_id, JobStatus.QUEUED, None, None)
    store.room = True
    await runner.close()  # (housekeeping, or the stop at the latest, writes it)
    assert (await store.get(job_id)) == job


async def test_ends_a_full_database_refuses_are_logged_once_not_once_per_job(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = FullStore(db)
    runner = JobRunner(store, in_process_cache())
    with caplog.at_level(logging.WARNING, logger="novel_engine.jobs"):
        for simulation in INPUTS:
            computation: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            submit = functools.partial(lambda done, *_: done, computation)
            assert await runner.start(simulation, Priority.NORMAL, submit) is JobStatus.QUEUED
            computation.set_result(RESULT)

        async def all_ended() -> bool:
            jobs = [await runner.lookup(simulation.simulation_id()) for simulation in INPUTS]
            return all(job is not None and job.status is JobStatus.SUCCEEDED for job in jobs)

        await until(all_ended)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("could not record the end of simulation job ")
    assert lines[0].endswith(" yet: database or disk is full")
    store.room = True
    await runner.close()


async def test_a_new_run_of_a_job_replaces_the_end_the_database_could_not_take(
    db: Database,
) -> None:
    store = FullStore(db)
    runner = JobRunner(store, in_process_cache())
    computation: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    job_id = INPUTS[0].simulation_id()
    await runner.start(INPUTS[0], Priority.NORMAL, lambda *_: computation)
    computation.set_exception(DeadlineExceeded("too slow"))

    async def failed() -> bool:
        job = await runner.lookup(job_id)
        return job is not None and job.status is JobStatus.FAILED

    await until(failed)
    store.room = True
    rerun: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    assert await runner.start(INPUTS[0], Priority.NORMAL, lambda *_: rerun) is JobStatus.QUEUED
    assert (await runner.lookup(job_id)) == Job(job_id, JobStatus.QUEUED, None, None)
    rerun.set_result(RESULT)

    async def succeeded() -> bool:
        return (await store.get(job_id)) == Job(job_id, JobStatus.SUCCEEDED, None, INPUTS[0])

    await until(succeeded)
    await runner.close()  # writes down what is left unrecorded: not the first run's end
    assert (await store.get(job_id)) == Job(job_id, JobStatus.SUCCEEDED, None, INPUTS[0])


class BusyStore(JobStore):
    """A database that has no connection free for the job's record."""

    async def record(self, simulation: SimulationInput, status: JobStatus) -> None:
        raise PoolTimeout("no database connection free within 5 s")


async def test_a_job_whose_record_fails_is_not_run(db: Database) -> None:
    runner = JobRunner(BusyStore(db), in_process_cache())
    submitted: list[asyncio.Future[bytes]] = []

    def submit(simulation: SimulationInput, priority: Priority) -> asyncio.Future[bytes]:
        submitted.append(asyncio.get_running_loop().create_future())
        return submitted[-1]

    with pytest.raises(PoolTimeout):  # the client gets a 503
        await runner.start(INPUTS[0], Priority.NORMAL, submit)
    assert [future.cancelled() for future in submitted] == [True]  # so nothing runs unseen
    await runner.close()


class CancellationSwallowingStore(JobStore):
    """Its pruning turns a cancellation into an error, as a client library may."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.pruning = asyncio.Event()

    async def prune(self, retention_seconds: float, max_records: int) -> int:
        self.pruning.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise TimeoutError("interrupted") from None
        return 0


async def test_closing_stops_housekeeping_even_when_a_call_swallows_the_cancellation(
    db: Database,
) -> None:
    store = CancellationSwallowingStore(db)
    cache = in_process_cache()
    runner = JobRunner(store, cache, retention_seconds=0.04)  # prunes every 0.01 s
    runner.begin_housekeeping()
    await asyncio.wait_for(store.pruning.wait(), 10)
    closing = asyncio.create_task(runner.close())
    done, _ = await asyncio.wait({closing}, timeout=10)
    assert closing in done, "close() did not return: the pruning loop went on after its cancel"


async def test_rows_written_before_compression_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = await Database.open(
        path, size=1, acquire_timeout=5, metrics=None, migrations=MIGRATIONS[:1]
    )
    async with old.acquire() as connection:
        await connection.execute(
            "INSERT INTO jobs VALUES (?, 'succeeded', NULL, ?, ?)",
            (INPUTS[0].simulation_id(), INPUTS[0].model_dump_json(), time.time()),
        )
        await connection.commit()
    await old.close()

    upgraded = await Database.open(
        path, size=1, acquire_timeout=5, metrics=None, migrations=MIGRATIONS
    )
    try:
        job = await JobStore(upgraded).get(INPUTS[0].simulation_id())
        assert job is not None
        assert job.input == INPUTS[0]
    finally:
        await upgraded.close()


async def schema(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every table's columns and indexes, as SQLite describes them (not the CREATE text, which
    a rename rewrites)."""
    described: dict[str, list[tuple[object, ...]]] = {}
    async with db.acquire() as connection:
        tables = await connection.execute_fetchall(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name != 'schema_migrations'"
        )
        for (table,) in tables:
            columns = await connection.execute_fetchall(f"PRAGMA table_info({table})")
            indexes = await connection.execute_fetchall(f"PRAGMA index_list({table})")
            described[table] = [tuple(row) for row in [*columns, *indexes]]
            for index in indexes:
                info = await connection.execute_fetchall(f"PRAGMA index_info({index['name']})")
                described[table] += [tuple(row) for row in info]
    return described


async def test_a_fresh_database_has_the_schema_an_upgraded_one_has(tmp_path: Path) -> None:
    older = [migration for migration in ENGINE_MIGRATIONS if migration[0] != "jobs_0002"]
    upgraded = await Database.open(
        tmp_path / "old.db", size=1, acquire_timeout=5, metrics=None, migrations=older
    )
    await upgraded.close()
    upgraded = await Database.open(
        tmp_path / "old.db", size=1, acquire_timeout=5, metrics=None, migrations=ENGINE_MIGRATIONS
    )
    fresh = await Database.open(
        tmp_path / "new.db",
        size=1,
        acquire_timeout=5,
        metrics=None,
        migrations=ENGINE_MIGRATIONS,
        squashes=SQUASHES,
    )
    try:
        assert (await schema(fresh))["jobs"]
        assert await schema(fresh) == await schema(upgraded)
    finally:
        await fresh.close()
        await upgraded.close()


async def test_the_engine_prunes_its_job_records_by_age(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, job_retention_seconds=0.5)
    response = await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})
    assert response.status == 202
    assert await job_ids(client.app[DB])

    async def pruned() -> bool:
        return not await job_ids(client.app[DB])

    await until(pruned)


@pytest.mark.redis
async def test_shared_records_are_pruned_by_count_then_by_age(redis_server: RedisServer) -> None:
    # Retention long enough that the puts and the first prune never outlast it on a busy machine.
    store = SharedJobStore(redis_server.url, retention_seconds=2, max_records=2)
    direct = Redis.from_url(redis_server.url)
    try:
        for simulation in INPUTS[:4]:
            await store.put(simulation, Priority.NORMAL, JobStatus.SUCCEEDED)
            await asyncio.sleep(0.01)  # ages are kept in milliseconds: one apart from the next
        assert await store.prune() == 2
        assert [await store.get(s.simulation_id()) is not None for s in INPUTS[:4]] == [
            False, False, True, True,
        ]  # fmt: skip
        await asyncio.sleep(2.1)
        assert await store.prune() == 2
        assert await direct.keys("novel-engine:*") == []
    finally:
        await store.close()
        await direct.aclose()


@pytest.mark.redis
async def test_shared_queued_records_are_not_pruned_by_count(redis_server: RedisServer) -> None:
    # Retention long enough that the puts and the first prune never outlast it on a busy machine.
    store = SharedJobStore(redis_server.url, retention_seconds=2, max_records=1)
    try:
        queued = INPUTS[:2]
        for simulation in [*queued, *INPUTS[2:4]]:
            status = JobStatus.QUEUED if simulation in queued else JobStatus.SUCCEEDED
            await store.put(simulation, Priority.NORMAL, status)
            await asyncio.sleep(0.01)  # ages are kept in milliseconds: one apart from the next
        assert await store.prune() == 1  # one finished record too many: the older one
        assert [await store.get(s.simulation_id()) is not None for s in INPUTS[:4]] == [
            True, True, False, True,
        ]  # fmt: skip
        await asyncio.sleep(2.1)  # past the retention, a queued job has nobody to run it
        assert await store.prune() == 3
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_shared_record_written_only_if_absent_leaves_another_alone(
    redis_server: RedisServer,
) -> None:
    store = SharedJobStore(redis_server.url)
    try:
        job_id = INPUTS[0].simulation_id()
        await store.put(INPUTS[0], Priority.NORMAL, JobStatus.SUCCEEDED)
        assert not await store.put(
            INPUTS[0], Priority.NORMAL, JobStatus.QUEUED, only_if_absent=True
        )
        job = await store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.SUCCEEDED
        assert await store.put(INPUTS[1], Priority.NORMAL, JobStatus.QUEUED, only_if_absent=True)
    finally:
        await store.close()


@pytest.mark.redis
async def test_succeeded_jobs_are_restored_only_where_redis_lost_them(
    redis_server: RedisServer,
) -> None:
    store = SharedJobStore(redis_server.url, retention_seconds=3600)
    direct = Redis.from_url(redis_server.url)
    try:
        assert await store.lost_records()  # the first look
        assert not await store.lost_records()
        ended_at = time.time() - 600
        succeeded = [
            SucceededJob(job.simulation_id(), encode_input(job), ended_at) for job in INPUTS[:2]
        ]
        assert await store.put(INPUTS[1], Priority.LOW, JobStatus.QUEUED)  # a record there is
        assert await store.restore(succeeded) == 1
        assert await store.get(succeeded[0].id) == Job(
            succeeded[0].id, JobStatus.SUCCEEDED, None, INPUTS[0]
        )
        assert (await store.get(succeeded[1].id)) == Job(
            succeeded[1].id, JobStatus.QUEUED, None, None
        )
        # It expires when it would have: an hour after it ended, not after the restore.
        expiry = await direct.zscore(f"{DEFAULT_PREFIX}jobs:expiry", succeeded[0].id)
        assert expiry == pytest.approx((ended_at + 3600) * 1000, abs=1)

        await direct.flushall()  # as a Redis restarted without persistence
        assert await store.lost_records()
        assert await store.restore(succeeded) == 2
    finally:
        await direct.aclose()
        await store.close()


async def test_a_replica_restores_its_recent_successes_not_its_failures(
    db: Database, redis_server: RedisServer
) -> None:
    store = JobStore(db)
    for simulation in INPUTS[:3]:
        await store.record(simulation, JobStatus.QUEUED)
    await store.finish(INPUTS[0].simulation_id(), JobStatus.SUCCEEDED)
    await store.finish(INPUTS[1].simulation_id(), JobStatus.FAILED, "too slow")
    await store.finish(INPUTS[2].simulation_id(), JobStatus.SUCCEEDED)
    async with db.acquire() as connection:  # the third ended before the retention began
        await connection.execute(
            "UPDATE jobs SET updated_at = ? WHERE id = ?",
            (time.time() - 7200, INPUTS[2].simulation_id()),
        )
        await connection.commit()
    shared = SharedJobStore(redis_server.url, lease_seconds=0.3, retention_seconds=3600)
    runner = JobRunner(store, in_process_cache(), shared, retention_seconds=3600)
    runner.begin_housekeeping()
    try:

        async def restored() -> bool:
            return await shared.get(INPUTS[0].simulation_id()) is not None

        await until(restored)
        # A failure is not: another replica may run the job by now.
        assert await shared.get(INPUTS[1].simulation_id()) is None
        assert await shared.get(INPUTS[2].simulation_id()) is None
    finally:
        await runner.close()


async def test_a_shared_lease_is_held_by_one_replica_until_it_lapses(
    redis_server: RedisServer,
) -> None:
    # A lease long enough to outlast the first checks on a busy machine.
    first = SharedJobStore(redis_server.url, lease_seconds=2)
    second = SharedJobStore(redis_server.url, lease_seconds=2)
    try:
        simulation = INPUTS[0]
        assert await first.put(simulation, Priority.HIGH, JobStatus.QUEUED)
        assert not await second.put(simulation, Priority.HIGH, JobStatus.QUEUED)
        assert await second.claim_abandoned(10) == []
        await asyncio.sleep(2.1)
        assert await second.claim_abandoned(10) == [(simulation, Priority.HIGH)]
        assert await first.claim_abandoned(10) == []  # the second one holds it now
        # Its lease is another's: not renewed, and not missing either (only a lost one is).
        assert await first.renew([simulation.simulation_id(), "0" * 64]) == ["0" * 64]
        await first.finish(simulation.simulation_id(), JobStatus.FAILED, "late")
        job = await second.get(simulation.simulation_id())
        assert job is not None
        assert job.status is JobStatus.QUEUED  # a replica without the lease cannot fail it
    finally:
        await first.close()
        await second.close()
