"""Runs submitted work by priority with aging, on the loop, in threads or in processes."""

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from novel_engine.metrics import TASK_OUTCOMES, EngineMetrics
from novel_engine.scheduler.queue import AgingQueue
from novel_engine.scheduler.types import (
    DeadlineExceeded,
    ExecutorKind,
    Priority,
    QueueFull,
    SchedulerStopped,
)

if TYPE_CHECKING:  # multiprocessing is imported with the first process task
    from concurrent.futures import ProcessPoolExecutor

_MIN_RETRY_AFTER = 1.0
_MAX_RETRY_AFTER = 60.0
_FIRST_RUN_GUESS = 0.1  # seconds a task of an executor that has run none is assumed to take
_RETRY_BACKOFF = 0.01  # first retry waits 10 ms, doubling per attempt, within the deadline
_clock = time.monotonic  # what the default loop's time() returns, without the method call


# The inline kind as a plain module constant: an Enum member lookup costs about 0.1 us, a
# noticeable share of scheduling a task.
_INLINE = ExecutorKind.INLINE


class _Job:
    __slots__ = (
        "args",
        "cut",
        "deadline",
        "enqueued",
        "executor",
        "fn",
        "future",
        "name",
        "priority",
        "retries",
        "retry_on",
        "worker",
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
        self.worker: asyncio.Task[None] | None = None  # the worker awaiting an inline run
        self.cut = False  # the sweeper cancelled the inline run (deadline or caller gone)

    @property
    def title(self) -> str:
        """The given name, else the function's."""
        return self.name or getattr(self.fn, "__qualname__", repr(self.fn))


class _JobFuture(asyncio.Future[Any]):
    """The future a caller gets; its cancellation tells the sweeper to look at the queue."""

    __slots__ = ("scheduler",)
    scheduler: "Scheduler"

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self.scheduler._abandoned = True
        return True


class _KindInstruments:
    """One executor kind's metric series, bound once. A task's times are appended to the
    histograms' pending lists (by priority); the sweeper and scrapes bucket them."""

    __slots__ = ("ok", "outcome", "record_run", "record_wait", "series")

    def __init__(self, metrics: EngineMetrics, kind: ExecutorKind) -> None:
        seconds = metrics.scheduler_task_seconds
        waits = [seconds.labels(p.label, kind.value, "wait") for p in Priority]
        runs = [seconds.labels(p.label, kind.value, "run") for p in Priority]
        self.series = (*waits, *runs)
        self.record_wait = [series.pending.append for series in waits]  # by priority
        self.record_run = [series.pending.append for series in runs]
        self.outcome = {o: metrics.scheduler_tasks.labels(kind.value, o) for o in TASK_OUTCOMES}
        self.ok = self.outcome["ok"]


class _Instruments:
    """Metric children resolved once per executor kind; queue depth is read when scraped."""

    def __init__(self, metrics: EngineMetrics, depth: list[int]) -> None:
        self.kinds = {kind: _KindInstruments(metrics, kind) for kind in ExecutorKind}
        for priority in Priority:
            gauge = metrics.scheduler_queue_depth.labels(priority.label)
            gauge.set_function(functools.partial(depth.__getitem__, priority))
        self.rejected = {p: metrics.scheduler_rejected.labels(p.label) for p in Priority}

    def fold(self) -> None:
        """Bucket the task times recorded since the last fold (bounds their lists)."""
        for kind in self.kinds.values():
            for series in kind.series:
                series.fold()


class Scheduler:
    """A bounded priority queue in front of three executors.

    Each executor kind has its own workers: `workers` concurrent inline (async) tasks,
    `thread_workers` threads and `process_workers` processes, so slow process work never
    holds up inline work. A task's deadline counts from submission. One sweeper notices
    passed deadlines and abandoned futures every sweep_interval seconds (a timer per task
    would cost more than the rest of the scheduling): the caller then gets DeadlineExceeded;
    an inline run is cancelled; a thread or process run cannot be, so its slot stays busy
    until it returns and its result is dropped. The process pool uses the forkserver start
    method (the engine has threads, so fork is unsafe) and starts with the first process task;
    the parent times every task, workers report nothing, and they exit when the engine ends,
    even by SIGKILL. Starting the pool (the fork server, its preload, a process per worker)
    takes a few hundred milliseconds, so it happens in a thread, once however many process
    tasks arrive meanwhile. Inline tasks that finish without suspending would let the workers
    keep the loop to themselves while the queue is full, so within one loop turn they start
    tasks for at most inline_slice seconds, then yield.
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
        sweep_interval: float = 0.02,
        inline_slice: float = 0.002,
        process_preload: Sequence[str] = (),
    ) -> None:
        if min(queue_limit, workers, thread_workers, process_workers) < 1:
            raise ValueError("queue_limit and worker counts must be at least 1")
        if default_deadline <= 0 or sweep_interval <= 0:
            raise ValueError("default_deadline and sweep_interval must be positive")
        self._queue_limit = queue_limit
        self._slots = {
            ExecutorKind.INLINE: workers,
            ExecutorKind.THREAD: thread_workers,
            ExecutorKind.PROCESS: process_workers,
        }
        self._default_deadline = default_deadline
        self._sweep_interval = sweep_interval
        self._inline_slice = inline_slice
        self._held_since: float | None = None  # first pop in this loop turn, if any
        self._process_preload = list(process_preload)
        self._queues = {kind: AgingQueue[_Job](aging_seconds) for kind in ExecutorKind}
        self._idle: dict[ExecutorKind, deque[asyncio.Future[None]]] = {
            kind: deque() for kind in ExecutorKind
        }
        self._depth = [0] * len(Priority)
        self._queued = 0
        self._active: set[_Job] = set()
        self._all_idle = asyncio.Event()
        self._sweeper_waiting: asyncio.Future[None] | None = None
        # The queue is scanned only when a caller cancelled or a deadline may have passed:
        # a scan per sweep costs a function call per queued task.
        self._abandoned = False
        self._next_deadline = math.inf  # no queued task is due before this (may be earlier)
        # Mean run time per executor (moving average; 0 until its first task ran).
        self._mean_run_seconds = dict.fromkeys(ExecutorKind, 0.0)
        self._instruments = None if metrics is None else _Instruments(metrics, self._depth)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._threads: ThreadPoolExecutor | None = None
        # The pool's start (done or in flight) that process tasks await; None until the first
        # process task, and again after a worker process died.
        self._processes: asyncio.Task[ProcessPoolExecutor] | None = None
        self._processes_ready_at = 0.0  # when the last pool started
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(
            self._slots[ExecutorKind.THREAD], thread_name_prefix="novel-engine-task"
        )
        for kind, count in self._slots.items():
            for number in range(count):
                worker = asyncio.create_task(self._work(kind), name=f"{kind}-worker-{number}")
                self._tasks.append(worker)
        self._tasks.append(asyncio.create_task(self._sweep(), name="scheduler-sweeper"))
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
        constructor). Raises QueueFull or SchedulerStopped at once.

        Retry policy: a task is retried only for errors its caller declares retryable. A
        failure that is an instance of `retry_on` runs fn again, up to `retries` more times,
        after a pause of 10 ms doubling per attempt, and only while the deadline leaves room
        for the pause; any other failure, or the last one, goes to the caller. fn must be safe
        to run more than once. By default (retries=0) nothing is retried.
        """
        loop = self._loop
        if not self._running or loop is None:
            raise SchedulerStopped("the scheduler is not running")
        if self._queued >= self._queue_limit:
            if self._instruments is not None:
                self._instruments.rejected[priority].inc()
            raise QueueFull(self.retry_after(), self._queue_limit)
        now = _clock()
        due = now + (self._default_deadline if deadline is None else deadline)
        if due < self._next_deadline:
            self._next_deadline = due
        future = _JobFuture(loop=loop)
        future.scheduler = self
        self._queues[executor].push(
            _Job(fn, args, priority, executor, name, now, due, retries, retry_on, future)
        )
        self._queued += 1
        self._depth[priority] += 1
        idle = self._idle[executor]
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if self._sweeper_waiting is not None:
            self._sweeper_waiting.set_result(None)
            self._sweeper_waiting = None
        return future

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained.

        Each executor's queue drains only through its own slots, in waves of its mean run time,
        and all of them at once: the slowest decides. (A flood of process-pool work waits for
        the process slots, however many inline and thread slots are idle.)
        """
        estimate = max(
            math.ceil(len(self._queues[kind]) / slots)
            * (self._mean_run_seconds[kind] or _FIRST_RUN_GUESS)
            for kind, slots in self._slots.items()
        )
        return min(_MAX_RETRY_AFTER, max(_MIN_RETRY_AFTER, round(estimate, 1)))

    async def stop(self, timeout: float) -> list[str]:  # noqa: ASYNC109 -- a grace period
        """Stop taking work, fail queued tasks and wait up to `timeout` s for running ones.

        Returns the names of the tasks that did not finish; their futures fail with
        SchedulerStopped. Process-pool workers still running then are killed, so that nothing
        of the pool holds up the interpreter's exit.
        """
        if not self._running:
            return []
        self._running = False
        unfinished: list[str] = []
        for queue in self._queues.values():
            for job in queue.drain():
                self._dequeued(job)
                unfinished.append(job.title)
                self._stopped(job)
        if self._active:
            self._all_idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_idle.wait()
        leftovers = list(self._active)
        for job in leftovers:
            unfinished.append(job.title)
            self._stopped(job)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._active.clear()
        for idle in self._idle.values():
            idle.clear()
        self._sweeper_waiting = None
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._processes is not None:
            await asyncio.wait([self._processes])  # a pool still starting is shut down below
        self._shutdown_processes(
            terminate=any(job.executor is ExecutorKind.PROCESS for job in leftovers)
        )
        return unfinished

    # -- workers -------------------------------------------------------------------------

    async def _work(self, kind: ExecutorKind) -> None:
        queue = self._queues[kind]
        idle = self._idle[kind]
        loop = asyncio.get_running_loop()
        worker = asyncio.current_task()
        assert worker is not None  # a worker is always a task
        recorder = None if self._instruments is None else self._instruments.kinds[kind]
        now = _clock()  # read again only after an await: one read per task boundary
        while True:
            held_since = self._held_since
            if held_since is None:  # the first pop of this loop turn
                self._held_since = now
                loop.call_soon(self._next_turn)
            elif now - held_since >= self._inline_slice:
                await asyncio.sleep(0)  # let the loop poll I/O and run others
                now = _clock()
                continue
            job = queue.pop(now)
            if job is None:
                waiter: asyncio.Future[None] = loop.create_future()
                idle.append(waiter)
                await waiter
                now = _clock()
                continue
            if not self._begin(job, worker, now, recorder):
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                if job.retries or job.executor is not _INLINE:
                    result = await self._attempts(job, loop)
                else:  # the common case, without a coroutine in between
                    result = await job.fn(*job.args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the task's failure, handed to the caller by _end
                error = exc
            now = self._end(job, worker, now, result, error, recorder)

    def _next_turn(self) -> None:
        """Scheduled by the first pop of a loop turn, so it runs early in the next turn."""
        self._held_since = None

    def _begin(
        self,
        job: _Job,
        worker: "asyncio.Task[None]",
        now: float,
        recorder: _KindInstruments | None,
    ) -> bool:
        """Take a popped job on at time `now`; False if its caller abandoned it since the
        last sweep."""
        self._queued -= 1
        self._depth[job.priority] -= 1
        if job.future.done():
            self._count(job, "cancelled")
            return False
        if job.executor is _INLINE:
            job.worker = worker
        self._active.add(job)
        if recorder is not None:
            recorder.record_wait[job.priority](now - job.enqueued)
        return True

    def _end(
        self,
        job: _Job,
        worker: "asyncio.Task[None]",
        started: float,
        result: Any,
        error: BaseException | None,
        recorder: _KindInstruments | None,
    ) -> float:
        """Record the run and hand its result to the caller (raises if the worker stops).

        Returns the time it read, so the worker's next pop needs no clock read of its own."""
        if job.cut:
            worker.uncancel()  # the sweeper's cancellation was meant for the task, not us
        self._active.discard(job)
        if not self._active and not self._running:
            self._all_idle.set()  # stop() waits for this
        now = _clock()
        elapsed = now - started
        expected = elapsed
        if job.executor is ExecutorKind.PROCESS:
            # Not the wait for the pool's start, a cost the next tasks do not pay (and that
            # would lift the retry_after estimate for many tasks to come).
            expected = now - max(started, self._processes_ready_at)
        mean = self._mean_run_seconds[job.executor]
        self._mean_run_seconds[job.executor] = mean + (expected - mean) * 0.1 if mean else expected
        if recorder is not None:
            recorder.record_run[job.priority](elapsed)

        future = job.future
        if error is None:  # the common case first
            if not future.done():
                future.set_result(result)
                if recorder is not None:
                    recorder.ok.inc()
            elif future.cancelled():
                self._count(job, "cancelled")
            return now
        if isinstance(error, asyncio.CancelledError) and worker.cancelling():
            self._stopped(job)
            raise error  # stop() is cancelling this worker
        if future.done():
            if future.cancelled():
                self._count(job, "cancelled")
        elif isinstance(error, asyncio.CancelledError):
            future.cancel()  # the task cancelled itself
            self._count(job, "cancelled")
        else:
            future.set_exception(error)
            self._count(job, "error")
        return now

    async def _attempts(self, job: _Job, loop: asyncio.AbstractEventLoop) -> Any:
        attempt = 0
        while True:
            try:
                return await self._execute(job, loop)
            except job.retry_on:
                remaining = job.deadline - _clock()
                pause = _RETRY_BACKOFF * 2**attempt
                if attempt >= job.retries or job.future.done() or pause >= remaining:
                    raise
                attempt += 1
                await asyncio.sleep(pause)
                if job.future.done():  # deadline or cancellation while pausing
                    raise

    async def _execute(self, job: _Job, loop: asyncio.AbstractEventLoop) -> Any:
        if job.executor is _INLINE:
            return await job.fn(*job.args)
        executor: Executor | None
        starting: asyncio.Task[ProcessPoolExecutor] | None = None
        if job.executor is ExecutorKind.THREAD:
            executor = self._threads
        else:
            starting = self._processes or self._start_processes()
            # Shielded: a worker cancelled by stop() must not abandon a pool being started.
            executor = await asyncio.shield(starting)
        try:
            return await loop.run_in_executor(executor, job.fn, *job.args)
        except BrokenExecutor:  # BrokenProcessPool: a worker process died
            if starting is not None and starting is self._processes:
                self._shutdown_processes(terminate=True)  # the next process task starts a new pool
            raise

    # -- deadlines and abandoned futures -------------------------------------------------

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queued and not self._active:
                self._sweeper_waiting = loop.create_future()
                await self._sweeper_waiting  # the next submit wakes the sweeper
            await asyncio.sleep(self._sweep_interval)
            self._sweep_once(_clock())

    def _sweep_once(self, now: float) -> None:
        if self._instruments is not None:
            self._instruments.fold()
        if self._abandoned or now >= self._next_deadline:
            self._abandoned = False
            for queue in self._queues.values():
                for job in queue.remove_if(lambda job: job.future.done() or job.deadline <= now):
                    self._dequeued(job)
                    if job.future.done():
                        self._count(job, "cancelled")
                    else:
                        self._expire(job)
            queued = (job for queue in self._queues.values() for job in queue)
            self._next_deadline = min((job.deadline for job in queued), default=math.inf)
        for job in list(self._active):
            if job.deadline <= now and not job.future.done():
                self._expire(job)
            if job.future.done() and job.worker is not None and not job.cut:
                job.cut = True
                job.worker.cancel()

    def _expire(self, job: _Job) -> None:
        seconds = job.deadline - job.enqueued
        job.future.set_exception(DeadlineExceeded(f"{job.title}: no result within {seconds:g} s"))
        self._count(job, "deadline")

    def _stopped(self, job: _Job) -> None:
        if not job.future.done():
            job.future.set_exception(SchedulerStopped(f"{job.title}: the scheduler stopped"))
            self._count(job, "stopped")

    def _count(self, job: _Job, outcome: str) -> None:
        if self._instruments is not None:
            self._instruments.kinds[job.executor].outcome[outcome].inc()

    def _dequeued(self, job: _Job) -> None:
        self._queued -= 1
        self._depth[job.priority] -= 1

    # -- process pool --------------------------------------------------------------------

    def _start_processes(self) -> "asyncio.Task[ProcessPoolExecutor]":
        workers = self._slots[ExecutorKind.PROCESS]
        starting = asyncio.create_task(
            asyncio.to_thread(start_process_pool, workers, self._process_preload),
            name="process-pool-start",
        )
        starting.add_done_callback(self._process_pool_started)
        self._processes = starting
        return starting

    def _process_pool_started(self, starting: "asyncio.Task[ProcessPoolExecutor]") -> None:
        failed = starting.cancelled() or starting.exception() is not None
        if not failed:
            self._processes_ready_at = _clock()
        elif starting is self._processes:
            self._processes = None  # its tasks get the error; the next one tries again

    def _shutdown_processes(self, *, terminate: bool) -> None:
        starting, self._processes = self._processes, None
        if starting is None or not starting.done() or starting.cancelled() or starting.exception():
            return  # no pool to shut down
        pool = starting.result()
        if terminate:
            # Work still running would hold interpreter exit; ProcessPoolExecutor offers no
            # public way to end it before Python 3.14 (kill_workers). SIGKILL, because a
            # worker has nothing to clean up and cannot catch or ignore it.
            for process in list((pool._processes or {}).values()):
                process.kill()
            # A worker killed while writing its result leaves half a message in the result
            # pipe, and the pool's manager thread, reading it, would wait for the rest forever
            # (interpreter exit joins that thread). With our copy of the pipe's write end
            # closed, the last copy goes with the killed workers: the thread reads end-of-file,
            # marks the pool broken and ends.
            pool._result_queue._writer.close()  # type: ignore[attr-defined]
        pool.shutdown(wait=False, cancel_futures=True)


def start_process_pool(workers: int, preload: Sequence[str]) -> "ProcessPoolExecutor":
    """A forkserver pool with all its workers running. Blocking: call it off the loop."""
    # Imported here: most engines never start the pool, and the import costs memory.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from novel_engine.pool_worker import end_with_parent

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*preload, end_with_parent.__module__])
    pool = ProcessPoolExecutor(workers, context, initializer=end_with_parent)
    # A pool not started by fork spawns a worker per submit while none is idle: submitting
    # one no-op per worker at once starts them all here, not on the loop at later submits.
    try:
        for warm_up in [pool.submit(int) for _ in range(workers)]:
            warm_up.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    return pool
