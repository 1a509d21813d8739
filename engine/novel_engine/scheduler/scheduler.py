"""Runs submitted work by priority with aging, on the loop, in threads or in processes."""

import asyncio
import contextlib
import functools
import multiprocessing
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from enum import Enum
from typing import Any

from prometheus_client import Counter, Histogram

from novel_engine.metrics import EngineMetrics
from novel_engine.scheduler.queue import AgingQueue
from novel_engine.scheduler.types import (
    DeadlineExceeded,
    ExecutorKind,
    Priority,
    QueueFull,
    SchedulerStopped,
)

_MIN_RETRY_AFTER = 1.0
_MAX_RETRY_AFTER = 60.0
_RETRY_BACKOFF = 0.01  # first retry waits 10 ms, doubling per attempt, within the deadline


class _State(Enum):
    QUEUED = 1
    RUNNING = 2
    FINISHED = 3


class _Job:
    __slots__ = (
        "args",
        "deadline",
        "enqueued",
        "executor",
        "fn",
        "future",
        "name",
        "priority",
        "retries",
        "retry_on",
        "scope",
        "state",
        "timer",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        priority: Priority,
        executor: ExecutorKind,
        name: str,
        enqueued: float,
        deadline: float,
        retries: int,
        retry_on: tuple[type[BaseException], ...],
        future: "asyncio.Future[Any]",
    ) -> None:
        self.fn = fn
        self.args = args
        self.priority = priority
        self.executor = executor
        self.name = name
        self.enqueued = enqueued
        self.deadline = deadline
        self.retries = retries
        self.retry_on = retry_on
        self.future = future
        self.state = _State.QUEUED
        self.timer: asyncio.TimerHandle | None = None
        self.scope: asyncio.Timeout | None = None  # lets an inline run be cut short


class _Instruments:
    """Metric children resolved once, so a task costs a few dict lookups to record."""

    def __init__(self, metrics: EngineMetrics, depth: list[int]) -> None:
        seconds = metrics.scheduler_task_seconds
        self.wait: dict[tuple[Priority, ExecutorKind], Histogram] = {}
        self.run: dict[tuple[Priority, ExecutorKind], Histogram] = {}
        for priority in Priority:
            for kind in ExecutorKind:
                self.wait[priority, kind] = seconds.labels(priority.label, kind.value, "wait")
                self.run[priority, kind] = seconds.labels(priority.label, kind.value, "run")
            gauge = metrics.scheduler_queue_depth.labels(priority.label)
            gauge.set_function(functools.partial(depth.__getitem__, priority))
        self.outcome: dict[tuple[ExecutorKind, str], Counter] = {}
        for kind in ExecutorKind:
            for outcome in ("ok", "error", "deadline", "cancelled", "stopped"):
                self.outcome[kind, outcome] = metrics.scheduler_tasks.labels(kind.value, outcome)
        self.rejected = {p: metrics.scheduler_rejected.labels(p.label) for p in Priority}


class Scheduler:
    """A bounded priority queue in front of three executors.

    Each executor kind has its own workers: `workers` concurrent inline (async) tasks,
    `thread_workers` threads and `process_workers` processes, so slow process work never
    holds up inline work. A task's deadline counts from submission; when it passes, the
    caller gets DeadlineExceeded at once. An inline task is cancelled then; a thread or
    process task cannot be, so its slot stays busy until it returns (its result is dropped).
    The process pool uses the forkserver start method (the engine has threads, so fork is
    unsafe) and starts with the first process task; the parent times every task, workers
    report nothing.
    """

    def __init__(
        self,
        *,
        metrics: EngineMetrics | None,
        queue_limit: int,
        workers: int,
        thread_workers: int,
        process_workers: int,
        aging_seconds: float,
        default_deadline: float,
        process_preload: Sequence[str] = (),
    ) -> None:
        if min(queue_limit, workers, thread_workers, process_workers) < 1:
            raise ValueError("queue_limit and worker counts must be at least 1")
        if default_deadline <= 0:
            raise ValueError("default_deadline must be positive")
        self._queue_limit = queue_limit
        self._slots = {
            ExecutorKind.INLINE: workers,
            ExecutorKind.THREAD: thread_workers,
            ExecutorKind.PROCESS: process_workers,
        }
        self._default_deadline = default_deadline
        self._process_preload = list(process_preload)
        self._queues = {kind: AgingQueue[_Job](aging_seconds) for kind in ExecutorKind}
        self._idle: dict[ExecutorKind, deque[asyncio.Future[None]]] = {
            kind: deque() for kind in ExecutorKind
        }
        self._depth = [0] * len(Priority)
        self._queued = 0
        self._active: set[_Job] = set()
        self._idle_event = asyncio.Event()
        self._mean_run_seconds = 0.1
        self._instruments = None if metrics is None else _Instruments(metrics, self._depth)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def depth(self, priority: Priority) -> int:
        """Tasks of this priority waiting to start."""
        return self._depth[priority]

    async def start(self) -> None:
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(
            self._slots[ExecutorKind.THREAD], thread_name_prefix="novel-engine-task"
        )
        for kind, count in self._slots.items():
            for number in range(count):
                worker = self._work(kind)
                self._workers.append(asyncio.create_task(worker, name=f"{kind}-worker-{number}"))
        self._running = True

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        priority: Priority,
        executor: ExecutorKind,
        name: str = "",
        deadline: float | None = None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (),
    ) -> "asyncio.Future[Any]":
        """Queue fn(*args); the future gets its result or exception.

        INLINE: fn is an async function, awaited by a worker. THREAD: a blocking function.
        PROCESS: a picklable top-level function. deadline: seconds from now (default from the
        constructor). A failure that is an instance of retry_on is retried up to `retries`
        times while the deadline allows. Raises QueueFull or SchedulerStopped at once.
        """
        loop = self._loop
        if not self._running or loop is None:
            raise SchedulerStopped("the scheduler is not running")
        if self._queued >= self._queue_limit:
            if self._instruments is not None:
                self._instruments.rejected[priority].inc()
            raise QueueFull(self.retry_after(), self._queue_limit)
        now = loop.time()
        future: asyncio.Future[Any] = loop.create_future()
        job = _Job(
            fn,
            args,
            priority,
            executor,
            name or getattr(fn, "__qualname__", repr(fn)),
            now,
            now + (self._default_deadline if deadline is None else deadline),
            retries,
            retry_on,
            future,
        )
        job.timer = loop.call_at(job.deadline, self._expire, job)
        future.add_done_callback(functools.partial(self._resolved, job))
        self._queues[executor].push(job)
        self._queued += 1
        self._depth[priority] += 1
        idle = self._idle[executor]
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return future

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained, from the mean task run time."""
        estimate = self._queued * self._mean_run_seconds / sum(self._slots.values())
        return min(_MAX_RETRY_AFTER, max(_MIN_RETRY_AFTER, round(estimate, 1)))

    async def stop(self, timeout: float) -> list[str]:  # noqa: ASYNC109 -- a grace period
        """Stop taking work, fail queued tasks and wait up to `timeout` s for running ones.

        Returns the names of the tasks that did not finish; their futures fail with
        SchedulerStopped.
        """
        if not self._running:
            return []
        self._running = False
        unfinished: list[str] = []
        for queue in self._queues.values():
            for job in queue.drain():
                self._dequeued(job)
                unfinished.append(job.name)
                self._fail(job, SchedulerStopped(f"{job.name}: the scheduler stopped"), "stopped")
        if self._active:
            self._idle_event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle_event.wait()
        leftovers = list(self._active)
        for job in leftovers:
            unfinished.append(job.name)
            self._fail(job, SchedulerStopped(f"{job.name}: the scheduler stopped"), "stopped")
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self._active.clear()
        for idle in self._idle.values():
            idle.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._processes is not None:
            self._shutdown_processes(
                terminate=any(job.executor is ExecutorKind.PROCESS for job in leftovers)
            )
        return unfinished

    # -- workers -------------------------------------------------------------------------

    async def _work(self, kind: ExecutorKind) -> None:
        queue = self._queues[kind]
        idle = self._idle[kind]
        loop = asyncio.get_running_loop()
        while True:
            job = queue.pop(loop.time())
            if job is None:
                waiter: asyncio.Future[None] = loop.create_future()
                idle.append(waiter)
                await waiter
                continue
            self._dequeued(job)
            if job.future.done():  # deadline or cancellation raced with this pick
                continue
            await self._run(job, loop)

    async def _run(self, job: _Job, loop: asyncio.AbstractEventLoop) -> None:
        job.state = _State.RUNNING
        self._active.add(job)
        started = loop.time()
        instruments = self._instruments
        if instruments is not None:
            instruments.wait[job.priority, job.executor].observe(started - job.enqueued)
        try:
            result = await self._attempts(job, loop)
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                self._fail(job, SchedulerStopped(f"{job.name}: the scheduler stopped"), "stopped")
                raise  # this worker is being stopped
            self._finish(job, loop, started)
            job.future.cancel()  # the task cancelled itself; _resolved counts it
        except BaseException as exc:  # the task's own failure, handed to the caller
            self._finish(job, loop, started)
            self._fail(job, exc, "error")
        else:
            self._finish(job, loop, started)
            if not job.future.done():
                job.future.set_result(result)
                self._count(job, "ok")

    async def _attempts(self, job: _Job, loop: asyncio.AbstractEventLoop) -> Any:
        attempt = 0
        while True:
            try:
                return await self._execute(job, loop)
            except job.retry_on:
                remaining = job.deadline - loop.time()
                pause = _RETRY_BACKOFF * 2**attempt
                if attempt >= job.retries or job.future.done() or pause >= remaining:
                    raise
                attempt += 1
                await asyncio.sleep(pause)
                if job.future.done():  # deadline or cancellation while pausing
                    raise

    async def _execute(self, job: _Job, loop: asyncio.AbstractEventLoop) -> Any:
        if job.executor is ExecutorKind.INLINE:
            try:
                async with asyncio.timeout(None) as scope:
                    job.scope = scope
                    return await job.fn(*job.args)
            finally:
                job.scope = None
        executor: Executor | None
        if job.executor is ExecutorKind.THREAD:
            executor = self._threads
        else:
            executor = self._processes or self._start_processes()
        try:
            return await loop.run_in_executor(executor, job.fn, *job.args)
        except BrokenProcessPool:
            self._shutdown_processes(terminate=True)  # the next process task starts a new pool
            raise

    def _finish(self, job: _Job, loop: asyncio.AbstractEventLoop, started: float) -> None:
        job.state = _State.FINISHED
        self._active.discard(job)
        if not self._active:
            self._idle_event.set()
        if job.timer is not None:
            job.timer.cancel()
        elapsed = loop.time() - started
        self._mean_run_seconds += (elapsed - self._mean_run_seconds) * 0.1
        if self._instruments is not None:
            self._instruments.run[job.priority, job.executor].observe(elapsed)

    # -- resolution ----------------------------------------------------------------------

    def _expire(self, job: _Job) -> None:
        seconds = job.deadline - job.enqueued
        self._fail(job, DeadlineExceeded(f"{job.name}: no result within {seconds:g} s"), "deadline")

    def _fail(self, job: _Job, exc: BaseException, outcome: str) -> None:
        if not job.future.done():
            job.future.set_exception(exc)
            self._count(job, outcome)

    def _count(self, job: _Job, outcome: str) -> None:
        if self._instruments is not None:
            self._instruments.outcome[job.executor, outcome].inc()

    def _resolved(self, job: _Job, future: "asyncio.Future[Any]") -> None:
        """The caller's future is done: release whatever the job still holds."""
        if future.cancelled():
            self._count(job, "cancelled")
        if job.state is _State.QUEUED:
            self._queues[job.executor].remove(job)
            self._dequeued(job)
        elif job.state is _State.RUNNING and job.scope is not None:
            job.scope.reschedule(-1)  # cut the inline run short
        if job.timer is not None:
            job.timer.cancel()

    def _dequeued(self, job: _Job) -> None:
        self._queued -= 1
        self._depth[job.priority] -= 1
        if job.state is _State.QUEUED:
            job.state = _State.FINISHED

    # -- process pool --------------------------------------------------------------------

    def _start_processes(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        if self._process_preload:
            context.set_forkserver_preload(self._process_preload)
        self._processes = ProcessPoolExecutor(self._slots[ExecutorKind.PROCESS], context)
        return self._processes

    def _shutdown_processes(self, *, terminate: bool) -> None:
        pool, self._processes = self._processes, None
        if pool is None:
            return
        if terminate:
            # Work still running would hold interpreter exit; ProcessPoolExecutor offers no
            # public way to end it before Python 3.14 (terminate_workers).
            for process in list((pool._processes or {}).values()):
                process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
