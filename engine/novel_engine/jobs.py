"""Asynchronous simulation jobs: their status persisted in SQLite, their results in the cache.

A job is queued, then succeeded or failed; it is never silently lost. Jobs still queued when the
engine stops are recorded as failed with a reason, and so are jobs a crashed process left behind.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from novel_engine.cache import TieredCache
from novel_engine.db import Database, Migration
from novel_engine.scheduler import DeadlineExceeded, SchedulerStopped
from novel_engine.simulation.request import SimulationInput
from novel_engine.simulation.service import result_key

MIGRATIONS: tuple[Migration, ...] = (
    (
        "jobs_0001",
        "CREATE TABLE jobs ("
        " id TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT,"
        " input TEXT NOT NULL, updated_at REAL NOT NULL);",
    ),
)
SHUTDOWN_REASON = "engine shut down before the job ran"
CRASH_REASON = "engine stopped before the job finished"
DEADLINE_REASON = "the simulation did not finish within its deadline"
FAILURE_REASON = "the simulation failed unexpectedly; the error has been logged"

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    error: str | None
    input: SimulationInput


class JobStore:
    """The jobs table."""

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
            (simulation.simulation_id(), status, simulation.model_dump_json(), time.time()),
        )

    async def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        await self._write(
            "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?",
            (status, error, time.time(), job_id),
        )

    async def fail_unfinished(self, reason: str) -> int:
        """Mark every queued job failed; returns how many there were."""
        return await self._write(
            "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE status = ?",
            (JobStatus.FAILED, reason, time.time(), JobStatus.QUEUED),
        )

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
        return Job(
            job_id, JobStatus(status), error, SimulationInput.model_validate_json(stored_input)
        )


class JobRunner:
    """Records jobs and how each one ends; identical requests at the same time share one job."""

    def __init__(self, store: JobStore, cache: TieredCache) -> None:
        self.store = store
        self._cache = cache
        # Per job in this process: how it was accepted (queued or succeeded), or why not.
        self._accepted: dict[str, asyncio.Future[JobStatus]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self, simulation: SimulationInput, submit: Callable[[], asyncio.Future[bytes]]
    ) -> JobStatus:
        """Accept the simulation as a job: succeeded at once if its result is cached, else
        queued and handed to ``submit``. A request for a job already here joins it; all of
        them get the same answer, or the same error (QueueFull: the job was not accepted)."""
        job_id = simulation.simulation_id()
        accepted = self._accepted.get(job_id)
        if accepted is None:
            # Reserved before any await, so a duplicate arriving meanwhile finds it.
            accepted = asyncio.get_running_loop().create_future()
            self._accepted[job_id] = accepted
            task = asyncio.create_task(
                self._run(simulation, submit, accepted), name=f"job {job_id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Shielded: one request going away must not cancel the job the others joined.
        return await asyncio.shield(accepted)

    async def _run(
        self,
        simulation: SimulationInput,
        submit: Callable[[], asyncio.Future[bytes]],
        accepted: asyncio.Future[JobStatus],
    ) -> None:
        job_id = simulation.simulation_id()
        try:
            try:
                future = None
                if await self._cache.get(result_key(job_id)) is None:
                    future = submit()
                # Succeeded jobs get a row too: the input recomputes the result if the cache
                # lets it go before the client polls.
                status = JobStatus.SUCCEEDED if future is None else JobStatus.QUEUED
                await self.store.record(simulation, status)
            except Exception as error:
                accepted.set_exception(error)
                return
            accepted.set_result(status)
            if future is not None:
                await self._watch(job_id, future)
        finally:
            if not accepted.done():
                accepted.cancel()
            # A later job under the same id has its own entry; leave that one alone.
            if self._accepted.get(job_id) is accepted:
                del self._accepted[job_id]

    async def _watch(self, job_id: str, future: asyncio.Future[bytes]) -> None:
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
        try:
            # The row first: once it says succeeded, a GET finds the result in the cache or
            # recomputes it from the stored input; it never sees "queued" after the result.
            await self.store.finish(job_id, status, error)
        except Exception:
            # The row stays queued; the next start records it failed (CRASH_REASON).
            log.exception("could not record the end of simulation job %s", job_id)
        if result is not None:
            await self._cache.set(result_key(job_id), result)

    async def close(self) -> None:
        """Wait for the watchers (the scheduler has stopped), then fail anything left queued."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.fail_unfinished(SHUTDOWN_REASON)
