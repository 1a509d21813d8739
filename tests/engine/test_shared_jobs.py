"""Async jobs shared through a real redis-server: any replica answers for any job, a job whose
replica died or stopped is finished by another, and job records outlive cache entries under
memory pressure."""

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from novel_engine.cache.l2 import RedisTier
from novel_engine.metrics import QUEUE_DEPTH_METRIC
from novel_engine.shared_jobs import DEFAULT_PREFIX
from novel_engine.simulation.service import result_key
from novel_operator.model import ManagedRedisSpec

from .api import FULL_CAST, SIEGE, EngineClient, engine_client, metric_samples, problem, until
from .conftest import RedisServer
from .processes import EngineProcess, EngineProcesses, get, post
from .samples import sample_input

pytestmark = pytest.mark.redis

#: Short leases, so that a dead replica's jobs are taken over within a test's patience.
LEASE_SECONDS = "1"


def heavy(seed: int) -> dict[str, Any]:
    """An async simulation of 8 characters x 200 turns (about 30 ms on 2 cores)."""
    return {"character_ids": FULL_CAST, "turns": 200, "seed": seed, "mode": "async"}


async def accept_jobs(
    session: aiohttp.ClientSession, engine: EngineProcess, count: int
) -> list[str]:
    """Submit `count` heavy async jobs at once; their ids. Sent together, so that they queue up
    faster than the engine runs them (one by one, they would not on a quiet machine)."""
    answers = await asyncio.gather(
        *(post(session, engine, "/v1/simulations", heavy(seed)) for seed in range(count))
    )
    ids = []
    for status, raw in answers:
        assert status == 202, raw
        body = json.loads(raw)
        assert body["status"] == "queued"
        ids.append(body["id"])
    return ids


async def poll(
    session: aiohttp.ClientSession,
    engine: EngineProcess,
    job_id: str,
    seconds: float = 120,
    *,
    after_outage: bool = False,
) -> tuple[list[str], bytes]:
    """Poll a job until its result comes: the statuses seen on the way, and the result.
    ``after_outage``: wait out 503s (the engine has not seen Redis answer again yet)."""
    statuses: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, raw = await get(session, engine, f"/v1/simulations/{job_id}")
        if status == 503 and after_outage:
            await asyncio.sleep(0.05)
            continue
        assert status == 200, raw
        body = json.loads(raw)
        if "status_url" not in body:  # the result itself
            assert body["id"] == job_id
            return statuses, raw
        assert body["status"] == "queued", body
        statuses.append(body["status"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished within {seconds} s")


def shared_engine_args(redis: RedisServer) -> tuple[str, ...]:
    return ("--redis-url", redis.url, "--job-lease-seconds", LEASE_SECONDS)


async def two_replicas(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis: RedisServer
) -> tuple[EngineProcess, EngineProcess]:
    """Two ready replicas sharing `redis`; the first runs its jobs one at a time."""
    shared = shared_engine_args(redis)
    accepting = engines.start("a", *shared, "--process-workers", "1")
    other = engines.start("b", *shared)
    await asyncio.gather(accepting.ready(session), other.ready(session))
    return accepting, other


async def test_a_job_accepted_by_one_replica_is_polled_through_another(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    accepting, other = await two_replicas(engines, session, redis_server)
    ids = await accept_jobs(session, accepting, 8)
    # The same request through the other replica joins the job instead of running it again.
    status, raw = await post(session, other, "/v1/simulations", heavy(7))
    assert (status, json.loads(raw)["status"]) == (202, "queued")

    # The last job waits behind seven others, so the other replica sees it queued first.
    statuses, result = await poll(session, other, ids[-1])
    assert statuses  # queued at first (poll accepts nothing else before the result)
    for job_id in ids[:-1]:
        await poll(session, other, job_id)
    assert (await get(session, accepting, f"/v1/simulations/{ids[-1]}")) == (200, result)
    # The jobs ran for longer than a lease: the accepting replica renewed its leases, and the
    # other replica ran none of them.
    assert "taking over" not in other.log()
    _, metrics = await get(session, other, "/metrics")
    tasks = metric_samples(metrics.decode(), "novel_engine_scheduler_tasks_total")
    assert tasks
    assert sum(tasks.values()) == 0


async def test_the_jobs_of_a_killed_replica_are_taken_over_and_finished(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    shared = shared_engine_args(redis_server)
    # One process runs the jobs one after the other: most are still queued when it dies.
    accepting = engines.start("a", *shared, "--process-workers", "1")
    other = engines.start("b", *shared)
    await asyncio.gather(accepting.ready(session), other.ready(session))
    ids = await accept_jobs(session, accepting, 8)

    await accepting.kill()
    results = [(await poll(session, other, job_id))[1] for job_id in ids]
    assert "taking over simulation job" in other.log()

    # Restarted on its data while Redis answers nothing, the killed replica does not make up
    # an ending for the jobs it gave up (its rows say "failed"): another replica finished them.
    redis_server.pause()
    try:
        restarted = engines.start("a", *shared)
        await restarted.ready(session)
        status, raw = await get(session, restarted, f"/v1/simulations/{ids[-1]}")
        assert status == 503, raw
    finally:
        redis_server.resume()

    async def finished() -> bool:  # once the replica sees Redis answer again
        return await get(session, restarted, f"/v1/simulations/{ids[-1]}") == (200, results[-1])

    await until(finished)


async def test_a_stopping_replica_hands_its_queued_jobs_over(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    shared = shared_engine_args(redis_server)
    stopping = engines.start("a", *shared, "--process-workers", "1", "--drain-timeout", "0.5")
    other = engines.start("b", *shared)
    await asyncio.gather(stopping.ready(session), other.ready(session))
    # Sixteen heavy jobs behind one pool process (a thread would hold the GIL and slow the
    # accepting down until most had run): some still wait at the signal.
    ids = await accept_jobs(session, stopping, 16)
    _, metrics = await get(session, stopping, "/metrics")
    assert sum(metric_samples(metrics.decode(), QUEUE_DEPTH_METRIC).values()) > 0

    stopping.terminate()
    assert await stopping.exit_code() == 0
    for job_id in ids:  # none failed: the other replica ran what the stopping one did not
        await poll(session, other, job_id)
    assert "taking over simulation job" in other.log()


async def test_a_replica_stopping_as_redis_returns_hands_over_the_jobs_of_the_outage(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    # A long lease: the stopping replica's background rounds (every third of it) do not see
    # Redis return before the signal, so only its shutdown can record the jobs there.
    stopping = engines.start(
        "a", "--redis-url", redis_server.url, "--job-lease-seconds", "60",
        "--process-workers", "1", "--drain-timeout", "0.5",
    )  # fmt: skip
    other = engines.start("b", *shared_engine_args(redis_server))
    await asyncio.gather(stopping.ready(session), other.ready(session))
    await asyncio.to_thread(redis_server.stop)
    ids = await accept_jobs(session, stopping, 16)  # run here; no other replica knows them
    _, metrics = await get(session, stopping, "/metrics")
    assert sum(metric_samples(metrics.decode(), QUEUE_DEPTH_METRIC).values()) > 0
    await asyncio.to_thread(redis_server.start)

    stopping.terminate()
    assert await stopping.exit_code() == 0
    # Those it ran are recorded succeeded (the other replica computes them again from their
    # input), those it did not are handed over: none is unknown, none failed.
    for job_id in ids:
        await poll(session, other, job_id, after_outage=True)
    assert "taking over simulation job" in other.log()


async def test_a_job_that_succeeds_while_redis_is_away_is_recorded_once_it_answers(
    engines: EngineProcesses,
    session: aiohttp.ClientSession,
    redis_factory: Callable[..., RedisServer],
) -> None:
    # Redis keeps its data across the outage, so the jobs stay queued in it. Leases of 30 s:
    # the replica records the successes at its next round after Redis answers again (within
    # 10 s), long before the leases run out and the other replica would run the jobs again.
    redis = redis_factory(extra_args=["--appendonly", "yes"])
    shared = ("--redis-url", redis.url, "--job-lease-seconds", "30")
    running = engines.start("a", *shared, "--process-workers", "1")
    other = engines.start("b", *shared)
    await asyncio.gather(running.ready(session), other.ready(session))
    # Some seconds of work one job at a time: most end while Redis is away.
    ids = await accept_jobs(session, running, 16)
    await asyncio.to_thread(redis.stop)
    for job_id in ids:  # (from its own records)
        await poll(session, running, job_id)
    await until(lambda: "shared job records unavailable" in running.log())
    await asyncio.sleep(0.5)  # the last end's call has failed too (at once: nothing listens)
    await asyncio.to_thread(redis.start)

    for job_id in ids:
        await poll(session, other, job_id, after_outage=True)
    assert "taking over" not in other.log()


async def test_while_redis_is_down_an_unknown_job_answers_503_with_retry_after(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, redis_url=redis_server.url)
    unknown = f"/v1/simulations/{'0' * 64}"
    await problem(await client.get(unknown), 404)

    await asyncio.to_thread(redis_server.stop)
    body = await problem(response := await client.get(unknown), 503)
    assert int(response.headers["Retry-After"]) >= 1
    assert "shared" in body["detail"]
    # A job accepted meanwhile runs here, and this replica answers for it.
    accepted = await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})
    assert accepted.status == 202
    await wait_for_result(client, (await accepted.json())["status_url"])

    await asyncio.to_thread(redis_server.start)

    async def unknown_again() -> bool:
        return (await client.get(unknown)).status == 404

    await until(unknown_again)


@pytest.mark.parametrize("restart", ["while-it-runs", "after-it-ended"])
async def test_another_replica_answers_for_a_job_after_redis_restarts_empty(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer, restart: str
) -> None:
    # While it runs: accepted in the outage, it is recorded once Redis is back. After it
    # ended: the replica that ran it finds that Redis lost its records, and records it again.
    shared = {"redis_url": redis_server.url, "job_lease_seconds": 1}
    first = await engine_client(aiohttp_client, tmp_path / "first", **shared)
    second = await engine_client(aiohttp_client, tmp_path / "second", **shared)
    if restart == "while-it-runs":
        await asyncio.to_thread(redis_server.stop)
    accepted = await first.post("/v1/simulations", json={**SIEGE, "mode": "async"})
    url = (await accepted.json())["status_url"]
    result = await wait_for_result(first, url)
    if restart == "while-it-runs":
        await problem(await second.get(url), 503)  # it cannot know yet
    else:
        await asyncio.to_thread(redis_server.stop)
    await asyncio.to_thread(redis_server.start)  # empty: the record and the result are gone

    async def served_by_the_other_replica() -> bool:
        response = await second.get(url)
        return response.status == 200 and await response.read() == result

    await until(served_by_the_other_replica, seconds=30)  # computed again, from its input


async def test_an_unknown_job_with_shared_records_says_so(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, redis_url=redis_server.url)
    body = await problem(await client.get(f"/v1/simulations/{'0' * 64}"), 404)
    assert "shared job records" in body["detail"]
    assert "without a shared cache" not in body["detail"]


async def wait_for_result(client: EngineClient, url: str) -> bytes:
    result = b""

    async def finished() -> bool:
        nonlocal result
        response = await client.get(url)
        assert response.status == 200
        result = await response.read()
        return "status_url" not in json.loads(result)

    await until(finished)
    return result


async def test_job_records_outlive_cache_entries_under_memory_pressure(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    # The managed Redis tier's own policy, and a memory limit the cache entries soon exceed.
    policy = ManagedRedisSpec().maxmemory_policy
    redis = redis_factory(extra_args=["--maxmemory", "3mb", "--maxmemory-policy", policy])
    accepting = await engine_client(aiohttp_client, tmp_path / "a", redis_url=redis.url)
    ids = []
    for seed in range(10):
        response = await accepting.post(
            "/v1/simulations", json={**SIEGE, "seed": seed, "mode": "async"}
        )
        ids.append((await response.json())["id"])
    for job_id in ids:
        await wait_for_result(accepting, f"/v1/simulations/{job_id}")

    direct = Redis.from_url(redis.url)
    filler = RedisTier(redis.url)  # cache entries, written the way every engine writes them
    try:
        for index in range(80):
            await filler.set(f"filler-{index}", b"x" * 100_000)
        assert (await direct.info("stats"))["evicted_keys"] > 0
        cache_prefix = "novel-engine:cache:"
        evicted = [
            job_id for job_id in ids if not await direct.exists(cache_prefix + result_key(job_id))
        ]
        assert evicted, "the memory pressure evicted no job result"
        assert all([await direct.exists(f"{DEFAULT_PREFIX}job:{job_id}") for job_id in ids])
    finally:
        await filler.close()
        await direct.aclose()

    # Another replica answers for every job: from the cache, or recomputed from its record.
    other = await engine_client(aiohttp_client, tmp_path / "b", redis_url=redis.url)
    for job_id in ids:
        response = await other.get(f"/v1/simulations/{job_id}")
        assert response.status == 200
        assert json.loads(await response.read())["id"] == job_id


async def test_an_async_request_refused_with_429_leaves_no_shared_job(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    small = {"queue_limit": 1, "thread_workers": 1, "process_workers": 1, "task_deadline": 120}
    accepting = await engine_client(
        aiohttp_client, tmp_path / "a", redis_url=redis_server.url, **small
    )
    other = await engine_client(aiohttp_client, tmp_path / "b", redis_url=redis_server.url)
    responses = await asyncio.gather(
        *(accepting.post("/v1/simulations", json=heavy(seed)) for seed in range(6))
    )
    refused = [seed for seed, response in enumerate(responses) if response.status == 429]
    assert refused
    for seed in refused:
        simulation_id = sample_input(FULL_CAST, turns=200, seed=seed).simulation_id()
        await problem(await other.get(f"/v1/simulations/{simulation_id}"), 404)


async def test_jobs_running_when_redis_restarts_empty_are_recorded_again(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    accepting, other = await two_replicas(engines, session, redis_server)
    # Enough that the last one is still queued seconds after the restart, many renewals later
    # (one at a time; 32 of them took 1 s on 2 cores, and the last sometimes ended first).
    ids = await accept_jobs(session, accepting, 128)
    await asyncio.to_thread(redis_server.stop)
    await asyncio.to_thread(redis_server.start)  # without persistence: every record is gone

    # The accepting replica records the jobs it runs again at its next renewal; until then,
    # the other replica cannot know the last one (a 503 if its own housekeeping met a
    # connection from before the restart first). Once it does, it follows it to its end.
    answers: list[str] = []
    deadline = time.monotonic() + 120
    while not answers or answers[-1] != "result":
        assert time.monotonic() < deadline, answers
        status, raw = await get(session, other, f"/v1/simulations/{ids[-1]}")
        body = json.loads(raw)
        answer = (
            str(status) if status != 200 else body["status"] if "status_url" in body else "result"
        )
        if not answers or answers[-1] != answer:
            answers.append(answer)
        await asyncio.sleep(0.05)
    assert answers[-2:] == ["queued", "result"], answers
    assert set(answers[:-2]) <= {"404", "503"}, answers
    for job_id in ids:
        await poll(session, other, job_id)
    assert "recorded simulation job" in accepting.log()
    assert "taking over" not in other.log()


async def test_a_job_outlives_a_short_retention_while_its_replica_runs_it(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    shared = (
        "--redis-url", redis_server.url, "--job-lease-seconds", "0.5",
        "--job-retention-seconds", "1",
    )  # fmt: skip
    accepting = engines.start("a", *shared, "--process-workers", "1")
    other = engines.start("b", *shared)
    await asyncio.gather(accepting.ready(session), other.ready(session))
    # Seconds of work one job at a time (about 4 s on 2 cores): the last waits several
    # retention periods.
    ids = await accept_jobs(session, accepting, 128)
    statuses, _ = await poll(session, other, ids[-1])  # a 404 on the way fails the poll
    assert statuses


async def test_after_a_redis_restart_the_pooled_connections_fail_no_request(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    # A long lease: no housekeeping call meets a connection from before the restart first
    # (its failure would make the lookups answer 503 until the next housekeeping).
    client = await engine_client(
        aiohttp_client, tmp_path, redis_url=redis_server.url, job_lease_seconds=300
    )
    unknown = f"/v1/simulations/{'0' * 64}"

    async def lookups() -> list[int]:
        """Concurrent lookups of the shared records: each one holds a pooled connection."""
        responses = await asyncio.gather(*(client.get(unknown) for _ in range(20)))
        return [response.status for response in responses]

    assert await lookups() == [404] * 20
    await asyncio.to_thread(redis_server.stop)
    await asyncio.to_thread(redis_server.start)
    # Redis answers again, but every connection in the pool is to the process that stopped.
    assert await lookups() == [404] * 20


async def test_a_redis_that_answers_but_refuses_writes_is_one_outage_not_a_flapping_one(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    engine = engines.start("a", *shared_engine_args(redis_server))  # a round every third of 1 s
    await engine.ready(session)
    direct = Redis.from_url(redis_server.url)
    try:
        # Full, evicting nothing: PINGs and reads are answered, writes refused.
        await direct.config_set("maxmemory-policy", "noeviction")
        await direct.config_set("maxmemory", 1)
        [job_id] = await accept_jobs(session, engine, 1)  # run here, to be recorded later
        await poll(session, engine, job_id)
        await asyncio.sleep(2)  # rounds that find Redis answering, and the record still refused
        assert engine.log().count("shared job records unavailable") == 1
        assert "shared job records reachable again" not in engine.log()
        unknown = f"/v1/simulations/{'0' * 64}"
        assert (await get(session, engine, unknown))[0] == 503  # another replica's, maybe

        await direct.config_set("maxmemory", 0)
        await until(lambda: "shared job records reachable again" in engine.log())

        async def recorded() -> bool:
            return await direct.hget(f"{DEFAULT_PREFIX}job:{job_id}", "status") == b"succeeded"

        await until(recorded)
        assert (await get(session, engine, unknown))[0] == 404
    finally:
        await direct.aclose()
