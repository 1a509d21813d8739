"""Asynchronous simulation jobs: their status persisted in SQLite, their results in the cache.

A job is queued, then succeeded or failed; it is never silently lost. Jobs still queued when the
engine stops are recorded as failed with a reason, and so are jobs a crashed process left behind.
Records are pruned by age and count; a record keeps its input (compressed) only while the job may
need it: to run, or to recompute a succeeded job's result that the cache let go.

With the shared L2 tier, every job also has a shared record (novel_engine.shared_jobs) that any
replica reads, and a lease its replica renews; a replica takes over the jobs whose lease ran out.
This replica's SQLite rows then cover only the jobs it runs, and answer while L2 is down.
"""

import asyncio
import functools
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from novel_engine.cache import TieredCache
from novel_engine.db import Database, Migration, Squash
from novel_engine.scheduler import DeadlineExceeded, Priority, SchedulerStopped
from novel_engine.simulation.request import SimulationInput
from novel_engine.simulation.service import result_key
from novel_engine.throttled_log import ThrottledLog

if TYPE_CHECKING:  # redis is imported only when an L2 URL is configured
    from novel_engine.shared_jobs import SharedJobStore

MIGRATIONS: tuple[Migration, ...] = (
    (
        "jobs_0001",
        "CREATE TABLE jobs ("
        " id TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT,"
        " input TEXT NOT NULL, updated_at REAL NOT NULL);",
    ),
    (
        # The input becomes optional (a failed job drops it) and compressed; pruning by age
        # reads updated_at. Rows from before keep their JSON text input.
        "jobs_0002",
        "CREATE TABLE jobs_new ("
        " id TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT,"
        " input BLOB, updated_at REAL NOT NULL);"
        "INSERT INTO jobs_new SELECT id, status, error,"
        " CASE WHEN status = 'failed' THEN NULL ELSE input END, updated_at FROM jobs;"
        "DROP TABLE jobs;"
        "ALTER TABLE jobs_new RENAME TO jobs;"
        "CREATE INDEX jobs_updated_at ON jobs (updated_at);",
    ),
)
# A fresh database gets the jobs table as the migrations above leave it, in one step.
SQUASHES: tuple[Squash, ...] = (
    Squash(
        ("jobs_0001", "jobs_0002"),
        "CREATE TABLE jobs ("
        " id TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT,"
        " input BLOB, updated_at REAL NOT NULL);"
        "CREATE INDEX jobs_updated_at ON jobs (updated_at);",
    ),
)
SHUTDOWN_REASON = "engine shut down before the job ran"
CRASH_REASON = "engine stopped before the job finished"
DEADLINE_REASON = "the simulation did not finish within its deadline"
FAILURE_REASON = "the simulation failed unexpectedly; the error has been logged"
#: Longest pause between two prunings of the job records.
PRUNE_INTERVAL_SECONDS = 60.0
#: Abandoned jobs one replica takes over per look (it looks every third of a lease).
TAKEOVER_BATCH = 8
#: Job records restored in Redis per call, after it lost them.
RESTORE_BATCH = 100
#: Longest wait, as the engine stops, to record in the shared store the jobs of an outage.
LAST_TRY_SECONDS = 5.0

log = logging.getLogger(__name__)

T = TypeVar("T")
Submit = Callable[[SimulationInput, Priority], asyncio.Future[bytes]]


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    error: str | None
    # Read for a succeeded job only: it recomputes the result if the cache let it go.
    input: SimulationInput | None


@dataclass(frozen=True)
class SucceededJob:
    """A succeeded job's record as stored: what records it again in the shared store."""

    id: str
    stored_input: bytes | str  # (see decode_input)
    ended_at: float  # epoch seconds


class SharedJobsUnavailable(Exception):  # noqa: N818 -- the name other modules map to 503
    """The shared job records (L2) could not be read or written."""


def job_record(
    job_id: str, status: JobStatus, error: str | None, stored_input: bytes | str | None
) -> Job:
    """A stored job; its input is decoded only when the job succeeded (see Job.input)."""
    if status is not JobStatus.SUCCEEDED or stored_input is None:
        return Job(job_id, status, error, None)
    return Job(job_id, status, error, decode_input(stored_input))


def encode_input(simulation: SimulationInput) -> bytes:
    return zlib.compress(simulation.model_dump_json().encode())


def decode_input(stored: bytes | str) -> SimulationInput:
    # str: a row written before inputs were compressed (migration jobs_0002).
    text = stored if isinstance(stored, str) else zlib.decompress(stored)
    return SimulationInput.model_validate_json(text)


class JobStore:
    """The jobs table of this replica."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _write(self, sql: str, parameters: tuple[Any, ...]) -> int:
        async with self._db.acquire() as connection:
            cursor = await connection.execute(sql, parameters)
            await connection.commit()
        return cursor.rowcount

    async def record(self, simulation: SimulationInput, status: JobStatus) -> None:
        await self._write(
            "INSERT OR REPLACE INTO jobs (id, status, error, input, updated_at)"
            " VALUES (?, ?, NULL, ?, ?)",
            (simulation.simulation_id(), status, encode_input(simulation), time.time()),
        )

    async def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        """Record how the job ended; a failed job's input is dropped (nothing recomputes it)."""
        await self._write(
            "UPDATE jobs SET status = ?, error = ?, updated_at = ?,"
            " input = CASE WHEN ? = 'failed' THEN NULL ELSE input END WHERE id = ?",
            (status, error, time.time(), status, job_id),
        )

    async def fail_unfinished(self, reason: str) -> int:
        """Mark every queued job failed; returns how many there were."""
        return await self._write(
            "UPDATE jobs SET status = ?, error = ?, updated_at = ?, input = NULL WHERE status = ?",
            (JobStatus.FAILED, reason, time.time(), JobStatus.QUEUED),
        )

    async def succeeded_since(self, since: float, limit: int) -> list[SucceededJob]:
        """The jobs that succeeded at `since` (epoch seconds) or later, the latest first, at
        most `limit`; their inputs as stored."""
        async with self._db.acquire() as connection:
            rows = await connection.execute_fetchall(
                "SELECT id, input, updated_at FROM jobs"
                " WHERE status = ? AND updated_at >= ? AND input IS NOT NULL"
                " ORDER BY updated_at DESC LIMIT ?",
                (JobStatus.SUCCEEDED, since, limit),
            )
        return [SucceededJob(row[0], row[1], row[2]) for row in rows]

    async def prune(self, retention_seconds: float, max_records: int) -> int:
        """Delete finished jobs unchanged for retention_seconds, then the oldest finished ones
        beyond max_records; returns how many went. Queued jobs stay: they are still running."""
        async with self._db.acquire() as connection:
            aged = await connection.execute(
                "DELETE FROM jobs WHERE updated_at < ? AND status != ?",
                (time.time() - retention_seconds, JobStatus.QUEUED),
            )
            surplus = await connection.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status != ?"
                " ORDER BY updated_at DESC LIMIT -1 OFFSET ?)",
                (JobStatus.QUEUED, max_records),
            )
            await connection.commit()
        return max(0, aged.rowcount) + max(0, surplus.rowcount)

    async def get(self, job_id: str) -> Job | None:
        async with self._db.acquire() as connection:
            rows = list(
                await connection.execute_fetchall(
                    "SELECT status, error, input FROM jobs WHERE id = ?", (job_id,)
                )
            )
        if not rows:
            return None
        status, error, stored_input = rows[0]
        return job_record(job_id, JobStatus(status), error, stored_input)


class JobRunner:
    """Records jobs and how each one ends; identical requests at the same time share one job.

    With a shared store: a job runs on one replica at a time (the holder of its lease), the
    leases of the jobs running here are renewed every third of a lease, and jobs a stopping
    replica did not run are handed over rather than failed.
    """

    def __init__(
        self,
        store: JobStore,
        cache: TieredCache,
        shared: "SharedJobStore | None" = None,
        *,
        retention_seconds: float = 86_400.0,
        max_records: int = 10_000,
    ) -> None:
        self.store = store
        self.shared = shared
        self._cache = cache
        self._retention_seconds = retention_seconds
        self._max_records = max_records
        # Per job in this process: how it was accepted (queued or succeeded), or why not.
        self._accepted: dict[str, asyncio.Future[JobStatus]] = {}
        # Jobs run here whose result is cached while their rows are still being written: a
        # request for one is told it succeeded, as a GET of it already finds the result.
        self._computed: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Jobs running here under a lease in the shared store, with what records them again.
        self._leased: dict[str, tuple[SimulationInput, Priority]] = {}
        # Jobs accepted, or leased jobs that succeeded, while the shared store was down: to
        # record there once it is back.
        self._unshared: dict[str, tuple[SimulationInput, Priority]] = {}
        # Jobs that ended here but whose end the database could not record (a full disk):
        # told as they ended, and written down by housekeeping once the database takes it.
        self._unrecorded: dict[str, Job] = {}
        self._unrecorded_log = ThrottledLog(log)  # (a full disk fails every job's end)
        # Set by a failed shared call: requests then skip the shared store (no wait on a silent
        # Redis per request). Cleared only by the recovery round, once the store takes a write:
        # a Redis that answers but refuses writes (full, or read-only) would otherwise seem
        # back at every read.
        self._shared_failing = False
        # Set while the jobs that ended here are to be recorded again in the shared store.
        self._restoring = False
        self._housekeeping: list[asyncio.Task[None]] = []

    def begin_housekeeping(self) -> None:
        """Prune the records periodically (and renew leases, with a shared store)."""
        prune_every = min(PRUNE_INTERVAL_SECONDS, self._retention_seconds / 4)
        self._housekeeping.append(_every(prune_every, self._prune, "prune job records"))
        if self.shared is not None:
            renew_every = self.shared.lease_seconds / 3
            self._housekeeping.append(_every(renew_every, self._renew, "renew job leases"))
            self._housekeeping.append(
                _every(renew_every, self._recover_shared, "recover from a shared store outage")
            )

    async def start(
        self, simulation: SimulationInput, priority: Priority, submit: Submit
    ) -> JobStatus:
        """Accept the simulation as a job: succeeded at once if its result is cached, else
        queued and handed to ``submit`` (unless another replica runs it already). A request
        for a job already here joins it; all of them get the same answer, or the same error
        (QueueFull: the job was not accepted), except that a job whose result is cached
        meanwhile is said to have succeeded."""
        job_id = simulation.simulation_id()
        accepted = self._accepted.get(job_id)
        if accepted is None:
            accepted = self._launch(simulation, priority, submit, claimed=False)
        # Shielded: one request going away must not cancel the job the others joined.
        status = await asyncio.shield(accepted)
        return JobStatus.SUCCEEDED if job_id in self._computed else status

    async def lookup(self, job_id: str) -> Job | None:
        """The job as the shared store knows it, else as this replica does. Raises
        SharedJobsUnavailable when the shared store is down (or was at the last try, until
        housekeeping gets a write through) and this replica does not know the job, or knows only
        that it gave the job up when it stopped."""
        if self.shared is not None:
            shared = self.shared
            try:
                job = await self._shared_call(lambda: shared.get(job_id), skip_in_outage=True)
            except SharedJobsUnavailable:
                job = await self._local(job_id)
                # A job this replica gave up as it stopped or died lives on in another one
                # (handed or taken over): only the shared record says how it ended.
                if job is None or job.error in (CRASH_REASON, SHUTDOWN_REASON):
                    raise
                return job
            if job is not None:
                return job
        return await self._local(job_id)

    async def _local(self, job_id: str) -> Job | None:
        """The job as this replica knows it: how it ended, if the database could not take
        that yet, else as its record says."""
        return self._unrecorded.get(job_id) or await self.store.get(job_id)

    def begin_takeover(self, submit: Submit, accepting: Callable[[], bool]) -> None:
        """With a shared store: every third of a lease, claim jobs whose replica stopped
        renewing their lease (it died) and run them here, while ``accepting()`` says this
        replica takes work."""
        if self.shared is not None:
            every = self.shared.lease_seconds / 3
            takeover = functools.partial(self._take_over, submit, accepting)
            self._housekeeping.append(_every(every, takeover, "take over abandoned jobs"))

    async def _take_over(self, submit: Submit, accepting: Callable[[], bool]) -> None:
        assert self.shared is not None
        if not accepting():
            return
        shared = self.shared
        claimed = await self._best_effort(lambda: shared.claim_abandoned(TAKEOVER_BATCH))
        for simulation, priority in claimed or ():
            job_id = simulation.simulation_id()
            if job_id in self._accepted:
                # Running here already; its lease lapsed while L2 was away.
                self._leased[job_id] = (simulation, priority)
                continue
            log.info("taking over simulation job %s", job_id)
            self._launch(simulation, priority, submit, claimed=True)

    def _launch(
        self, simulation: SimulationInput, priority: Priority, submit: Submit, *, claimed: bool
    ) -> asyncio.Future[JobStatus]:
        job_id = simulation.simulation_id()
        self._unrecorded.pop(job_id, None)  # an earlier run's end: this run's record replaces it
        # Reserved before any await, so a duplicate arriving meanwhile finds it.
        accepted: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()
        # Requests that joined receive its error; nobody else should log it.
        accepted.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._accepted[job_id] = accepted
        task = asyncio.create_task(
            self._run(simulation, priority, submit, accepted, claimed), name=f"job {job_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return accepted

    async def _run(
        self,
        simulation: SimulationInput,
        priority: Priority,
        submit: Submit,
        accepted: asyncio.Future[JobStatus],
        claimed: bool,
    ) -> None:
        job_id = simulation.simulation_id()
        try:
            try:
                status, future = await self._accept(simulation, priority, submit, claimed)
            except Exception as error:
                if claimed:
                    log.warning("could not take over simulation job %s: %s", job_id, error)
                accepted.set_exception(error)
                return
            accepted.set_result(status)
            if future is not None:
                await self._watch(simulation, future)
        finally:
            self._leased.pop(job_id, None)
            self._computed.discard(job_id)
            if not accepted.done():
                accepted.cancel()
            # A later job under the same id has its own entry; leave that one alone.
            if self._accepted.get(job_id) is accepted:
                del self._accepted[job_id]

    async def _accept(
        self, simulation: SimulationInput, priority: Priority, submit: Submit, claimed: bool
    ) -> tuple[JobStatus, asyncio.Future[bytes] | None]:
        """Record the job and submit it, unless its result is cached or another replica runs
        it; its status, and the future of the computation when it runs here."""
        job_id = simulation.simulation_id()
        cached = await self._cache.get(result_key(job_id)) is not None
        runs_here = not cached
        if self.shared is not None:
            runs_here = await self._share(simulation, priority, cached=cached, claimed=claimed)
        if not runs_here:
            if not cached:
                return JobStatus.QUEUED, None  # another replica runs it
            # Succeeded jobs get a row too: the input recomputes the result if the cache
            # lets it go before the client polls.
            await self.store.record(simulation, JobStatus.SUCCEEDED)
            return JobStatus.SUCCEEDED, None
        future: asyncio.Future[bytes] | None = None
        try:
            future = submit(simulation, priority)
            await self.store.record(simulation, JobStatus.QUEUED)
        except BaseException:
            # Not accepted (a full queue's 429, a busy database's 503): nothing may run unseen,
            # and no shared record may outlive this answer.
            if future is not None:
                future.cancel()
            await (self._hand_over(job_id) if claimed else self._withdraw(job_id))
            raise
        return JobStatus.QUEUED, future

    async def _share(
        self, simulation: SimulationInput, priority: Priority, *, cached: bool, claimed: bool
    ) -> bool:
        """Record the job in the shared store; whether this replica is to run it."""
        shared = self.shared
        assert shared is not None
        job_id = simulation.simulation_id()
        try:
            if claimed:
                if cached:  # its replica computed it, then died before saying so
                    await self._shared_call(lambda: shared.finish(job_id, JobStatus.SUCCEEDED))
                leased = True
            else:
                status = JobStatus.SUCCEEDED if cached else JobStatus.QUEUED
                leased = await self._shared_call(
                    lambda: shared.put(simulation, priority, status), skip_in_outage=True
                )
        except SharedJobsUnavailable:
            # Run it here; other replicas answer 503 for it until L2 is back and it is shared.
            self._keep(self._unshared, job_id, (simulation, priority))
            return not cached
        if cached or not leased:
            return False
        self._leased[job_id] = (simulation, priority)
        return True

    async def _watch(self, simulation: SimulationInput, future: asyncio.Future[bytes]) -> None:
        job_id = simulation.simulation_id()
        result: bytes | None = None
        error: str | None = None
        try:
            result = await future
        except SchedulerStopped:
            error = SHUTDOWN_REASON
        except DeadlineExceeded:
            error = DEADLINE_REASON
        except Exception:
            log.exception("simulation job %s failed", job_id)
            error = FAILURE_REASON
        status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
        if result is not None:
            # The result before the rows: a GET looks in the cache first, so once any replica
            # reads "succeeded" the result is there to serve; the stored input recomputes it
            # only after the cache let it go.
            await self._cache.set(result_key(job_id), result)
            self._computed.add(job_id)
        try:
            await self.store.finish(job_id, status, error)
        except Exception as failure:
            self._unrecorded_log.warning(
                "end", "could not record the end of simulation job %s yet: %s", job_id, failure
            )
            kept = simulation if status is JobStatus.SUCCEEDED else None  # (see Job.input)
            self._keep(self._unrecorded, job_id, Job(job_id, status, error, kept))
        if error == SHUTDOWN_REASON:
            await self._hand_over(job_id)  # another replica runs it; this one is stopping
        elif self.shared is not None and (leased := self._leased.get(job_id)) is not None:
            shared = self.shared
            try:
                if status is JobStatus.SUCCEEDED:
                    # With its input, replacing any record: a Redis that restarted empty may
                    # have lost the record before a renewal could record it again.
                    await self._shared_call(lambda: shared.put(*leased, JobStatus.SUCCEEDED))
                else:
                    await self._shared_call(lambda: shared.finish(job_id, status, error))
            except SharedJobsUnavailable:
                # A success is recorded, with its input, once the store is back; a failure is
                # not (its lease runs out and another replica runs the job again).
                if status is JobStatus.SUCCEEDED:
                    self._keep(self._unshared, job_id, leased)

    def _keep(self, pending: dict[str, T], job_id: str, entry: T) -> None:
        """Keep an entry until housekeeping writes it down; beyond the records limit, the
        oldest go, as pruning would delete their records."""
        pending.pop(job_id, None)  # the newest now
        pending[job_id] = entry
        while len(pending) > self._max_records:
            del pending[next(iter(pending))]

    async def _hand_over(self, job_id: str) -> None:
        if self.shared is not None and job_id in self._leased:
            shared = self.shared
            await self._best_effort(lambda: shared.release(job_id))  # or its lease runs out

    async def _withdraw(self, job_id: str) -> None:
        if self.shared is not None and job_id in self._leased:
            # If this fails, its lease runs out and the replica that claims it runs it.
            shared = self.shared
            await self._best_effort(lambda: shared.withdraw(job_id))

    async def _record_ends(self) -> None:
        """Write down the ends the database could not take when the jobs ended."""
        for job_id, job in list(self._unrecorded.items()):
            await self.store.finish(job_id, job.status, job.error)
            if self._unrecorded.get(job_id) is job:  # (not replaced by a new run meanwhile)
                del self._unrecorded[job_id]

    async def _prune(self) -> None:
        try:
            await self._record_ends()
        except Exception as error:  # still no room; pruning may make some
            self._unrecorded_log.warning(
                "end", "could not record the end of simulation jobs yet: %s", error
            )
        pruned = await self.store.prune(self._retention_seconds, self._max_records)
        if self.shared is not None:
            pruned += await self._best_effort(self.shared.prune) or 0
        if pruned:
            log.debug("pruned %d job records", pruned)

    async def _renew(self) -> None:
        """Extend the leases of the jobs running here, and record again those whose record
        Redis lost (restarted without persistence): other replicas would answer 404 for them."""
        if not self._leased:
            return
        shared = self.shared
        assert shared is not None
        leased = sorted(self._leased)
        for job_id in await self._best_effort(lambda: shared.renew(leased)) or ():
            job = self._leased.get(job_id)
            if job is None:  # ended meanwhile
                continue
            put = functools.partial(shared.put, *job, JobStatus.QUEUED, only_if_absent=True)
            recorded = await self._best_effort(put)
            if recorded is False:  # another replica recorded it since, and runs it
                self._leased.pop(job_id, None)
            elif recorded:
                log.info("recorded simulation job %s again: the shared store had lost it", job_id)

    async def _recover_shared(self) -> None:
        """After a failed shared call: look whether the store answers again (requests skip it
        until then). If Redis has lost this replica's records, record its succeeded jobs there
        again. Then record the jobs accepted, or that succeeded, during the outage there: any
        replica then answers for them (for a finished one, from its input, by computing the
        result again). Requests use the store again once it takes a write."""
        shared = self.shared
        assert shared is not None
        if self._shared_failing and not await self._best_effort(shared.ping):
            return
        # Writing the marker also tells whether Redis takes writes again: a full or read-only
        # Redis answers PINGs and reads, and its outage must not seem over at each round.
        lost = await self._best_effort(shared.lost_records)
        if lost is not None and self._shared_failing:
            log.info("shared job records reachable again")
            self._shared_failing = False
        if lost or self._restoring:
            self._restoring = True  # (stays so if the restore raises: the next round retries)
            self._restoring = not await self._restore_succeeded()
        for job_id, (simulation, priority) in list(self._unshared.items()):
            try:
                await self._share_later(job_id, simulation, priority)
            except SharedJobsUnavailable:
                return  # still away: the next round tries again
            self._unshared.pop(job_id, None)

    async def _restore_succeeded(self) -> bool:
        """Record again in Redis the jobs that succeeded here within the retention, which a
        Redis that restarted empty has forgotten: any replica then answers for them again, from
        their inputs. Each keeps the expiry it had; none replaces a record Redis has. (A failed
        job is not recorded again: another replica may run it by now, and a success says the
        same whoever says it, a failure not.) The running jobs are recorded again by the
        renewal of their leases. Whether it got through (else the next round tries again)."""
        shared = self.shared
        assert shared is not None
        since = time.time() - self._retention_seconds
        succeeded = await self.store.succeeded_since(since, self._max_records)
        restored = 0
        for start in range(0, len(succeeded), RESTORE_BATCH):
            batch = succeeded[start : start + RESTORE_BATCH]
            count = await self._best_effort(functools.partial(shared.restore, batch))
            if count is None:
                return False
            restored += count
        if restored:
            log.info("recorded %d succeeded simulation jobs again in the shared store", restored)
        return True

    async def _share_later(
        self, job_id: str, simulation: SimulationInput, priority: Priority
    ) -> None:
        """One job of an outage, as it stands now. A success replaces any record (it says the
        same whoever computed it, and carries the input that computes the result again). A
        job queued or failed is recorded unless a replica has recorded it since: one that still
        runs here is leased to this replica, which records its end."""
        shared = self.shared
        assert shared is not None
        job = await self._local(job_id)
        if job is None:  # pruned meanwhile
            return
        if job.status is JobStatus.SUCCEEDED:
            await self._shared_call(lambda: shared.put(simulation, priority, JobStatus.SUCCEEDED))
            return
        # Queued, or failed: the lease first, then how it ended.
        leased = await self._shared_call(
            lambda: shared.put(simulation, priority, JobStatus.QUEUED, only_if_absent=True)
        )
        if not leased:
            return  # recorded by another replica since
        if job_id in self._accepted:
            self._leased[job_id] = (simulation, priority)
            return
        ended = await self._local(job_id)  # it ended, maybe while the put was under way
        if ended is None or ended.status is JobStatus.QUEUED:
            return
        if ended.error == SHUTDOWN_REASON:  # given up as this replica stops: another one runs it
            await self._shared_call(lambda: shared.release(job_id))
        else:
            await self._shared_call(lambda: shared.finish(job_id, ended.status, ended.error))

    async def _shared_call(
        self, call: Callable[[], Awaitable[T]], *, skip_in_outage: bool = False
    ) -> T:
        """Run a shared-store call, logging once when the calls start failing (the recovery
        round logs their end). ``skip_in_outage``: while they fail, raise SharedJobsUnavailable
        at once (for requests; housekeeping calls find out when the store answers again)."""
        if skip_in_outage and self._shared_failing:
            raise SharedJobsUnavailable("unavailable at the last try")
        try:
            return await call()
        except SharedJobsUnavailable as error:
            if not self._shared_failing:
                log.warning("shared job records unavailable, jobs stay on this replica: %s", error)
                self._shared_failing = True
            raise

    async def _best_effort(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """A shared-store call whose failure is only logged (None)."""
        try:
            return await self._shared_call(call)
        except SharedJobsUnavailable:
            return None

    async def close(self) -> None:
        """Stop housekeeping, wait for the watchers (the scheduler has stopped), then fail
        anything left queued."""
        for task in self._housekeeping:
            task.cancel()
        await asyncio.gather(*self._housekeeping, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._record_ends()
            await self.store.fail_unfinished(SHUTDOWN_REASON)
        except Exception as error:  # a full disk, say: the engine still stops
            log.warning(
                "could not record how the jobs here ended (the next start records those still"
                " queued failed): %s",
                error,
            )
        if self.shared is not None:
            # A last try at what the shared store has not heard yet (it may have come back
            # since the last round): no other replica knows the jobs accepted here in its outage.
            try:
                async with asyncio.timeout(LAST_TRY_SECONDS):
                    await self._recover_shared()
            except TimeoutError:
                pass  # what is left is counted below
            except Exception:
                log.exception("could not record the jobs of the shared store's outage")
            if self._unshared:
                log.warning(
                    "stopping with %d jobs of an outage not recorded in the shared job records:"
                    " the other replicas do not know them, or only as queued (and run them again)",
                    len(self._unshared),
                )
            await self.shared.close()


def _every(seconds: float, action: Callable[[], Awaitable[None]], what: str) -> asyncio.Task[None]:
    async def loop() -> None:
        task = asyncio.current_task()
        assert task is not None  # a loop is always a task
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:
                log.exception("could not %s", what)
            if task.cancelling():
                # Cancelled during the action, which turned the cancellation into an error
                # (redis-py can, as a timeout): stop all the same, or close() waits forever.
                raise asyncio.CancelledError

    return asyncio.create_task(loop(), name=what)
