"""The scheduler runs work by priority with aging, within limits, deadlines and retries."""

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import novel_engine.scheduler.scheduler as scheduler_module
from novel_engine.metrics import PRIORITY_LABELS, QUEUE_DEPTH_METRIC, EngineMetrics
from novel_engine.scheduler import (
    AgingQueue,
    DeadlineExceeded,
    ExecutorKind,
    Priority,
    QueueFull,
    Scheduler,
    SchedulerStopped,
)

INLINE, THREAD, PROCESS = ExecutorKind.INLINE, ExecutorKind.THREAD, ExecutorKind.PROCESS


def process_id() -> int:
    """Runs in a worker process."""
    return os.getpid()


def end_worker_process() -> None:
    """Runs in a worker process and ends it the way a crash would."""
    os._exit(1)


def queue_depths(registry: CollectorRegistry) -> list[float | None]:
    """Tasks waiting to start by priority, as /metrics reports them."""
    return [registry.get_sample_value(QUEUE_DEPTH_METRIC, {"priority": p.label}) for p in Priority]


Start = Callable[..., Awaitable[Scheduler]]


def make_scheduler(**overrides: Any) -> Scheduler:
    options: dict[str, Any] = {
        "metrics": None,
        "queue_limit": 100,
        "workers": 1,
        "thread_workers": 1,
        "process_workers": 1,
        "aging_seconds": 100.0,
        "default_deadline": 30.0,
    }
    options.update(overrides)
    return Scheduler(**options)


@pytest.fixture
async def started() -> AsyncIterator[Start]:
    schedulers: list[Scheduler] = []

    async def start(**overrides: Any) -> Scheduler:
        scheduler = make_scheduler(**overrides)
        await scheduler.start()
        schedulers.append(scheduler)
        return scheduler

    yield start
    for scheduler in schedulers:
        await scheduler.stop(timeout=1)


class Gate:
    """An inline task that holds its worker until opened."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.entered = asyncio.Event()
        self.future: asyncio.Future[Any] | None = None

    async def __call__(self) -> str:
        self.entered.set()
        await self.opened.wait()
        return "gate"


async def occupy(scheduler: Scheduler) -> Gate:
    gate = Gate()
    gate.future = scheduler.submit(gate, priority=Priority.CRITICAL, executor=INLINE, name="gate")
    await gate.entered.wait()
    return gate


def test_priority_parse_and_labels() -> None:
    assert Priority.parse(" High ") is Priority.HIGH
    assert [p.label for p in Priority] == list(PRIORITY_LABELS)
    with pytest.raises(ValueError, match="expected one of critical, high, normal, low"):
        Priority.parse("urgent")


async def test_higher_priority_runs_first(started: Start) -> None:
    registry = CollectorRegistry()
    scheduler = await started(metrics=EngineMetrics(registry))
    gate = await occupy(scheduler)
    order: list[str] = []

    async def record(label: str) -> None:
        order.append(label)

    futures = [
        scheduler.submit(record, p.label, priority=p, executor=INLINE)
        for p in (Priority.LOW, Priority.NORMAL, Priority.LOW, Priority.HIGH, Priority.CRITICAL)
    ]
    assert queue_depths(registry) == [1, 1, 1, 2]
    gate.opened.set()
    await asyncio.gather(*futures)
    assert order == ["critical", "high", "normal", "low", "low"]
    assert queue_depths(registry) == [0, 0, 0, 0]


class Item:
    def __init__(self, priority: Priority, enqueued: float) -> None:
        self.priority = priority
        self.enqueued = enqueued


def test_aging_lets_low_priority_through_a_stream_of_high() -> None:
    queue: AgingQueue[Item] = AgingQueue(aging_seconds=1.0)
    low = Item(Priority.LOW, 0.0)
    queue.push(low)
    popped: list[Item] = []
    for tick in range(10):  # HIGH work arrives twice as fast as it is served
        queue.push(Item(Priority.HIGH, float(tick)))
        queue.push(Item(Priority.HIGH, float(tick)))
        item = queue.pop(now=float(tick))
        assert item is not None
        popped.append(item)
    # after 3 s LOW has aged to the top rank and, having waited longest, goes first
    assert popped.index(low) == 3
    assert len(queue) == 1 + 20 - 10


def test_aging_never_beats_equal_rank_by_priority_alone() -> None:
    queue: AgingQueue[Item] = AgingQueue(aging_seconds=1.0)
    queue.push(Item(Priority.LOW, 0.0))
    critical = Item(Priority.CRITICAL, 0.5)
    queue.push(critical)
    assert queue.pop(now=1.0) is critical  # LOW has only aged to NORMAL
    assert queue.pop(now=1.0) is not None
    assert queue.pop(now=1.0) is None


async def test_aging_in_the_scheduler(started: Start) -> None:
    scheduler = await started(aging_seconds=0.02)
    gate = await occupy(scheduler)
    order: list[str] = []

    async def record(label: str) -> None:
        order.append(label)

    low = scheduler.submit(record, "low", priority=Priority.LOW, executor=INLINE)
    await asyncio.sleep(0.1)  # five aging periods: LOW now ranks as CRITICAL, and is older
    critical = scheduler.submit(record, "critical", priority=Priority.CRITICAL, executor=INLINE)
    gate.opened.set()
    await asyncio.gather(low, critical)
    assert order == ["low", "critical"]


async def test_queue_full_at_the_limit(started: Start) -> None:
    registry = CollectorRegistry()
    scheduler = await started(queue_limit=3, metrics=EngineMetrics(registry))
    gate = await occupy(scheduler)

    async def noop() -> None:
        return None

    queued = [scheduler.submit(noop, priority=Priority.NORMAL, executor=INLINE) for _ in range(3)]
    with pytest.raises(QueueFull) as caught:
        scheduler.submit(noop, priority=Priority.HIGH, executor=INLINE)
    assert 1.0 <= caught.value.retry_after <= 60.0
    assert "full" in str(caught.value)
    sample = registry.get_sample_value
    assert sample("novel_engine_scheduler_rejected_total", {"priority": "high"}) == 1
    assert sample("novel_engine_scheduler_queue_depth", {"priority": "normal"}) == 3
    gate.opened.set()
    await asyncio.gather(*queued)
    assert sample("novel_engine_scheduler_queue_depth", {"priority": "normal"}) == 0
    scheduler.submit(noop, priority=Priority.HIGH, executor=INLINE)  # room again


async def test_inline_workers_take_turns_with_the_loop(started: Start) -> None:
    scheduler = await started(inline_slice=0.0)
    events: list[str] = []

    async def quick() -> None:  # finishes without ever suspending
        events.append("task")

    async def bystander() -> None:
        events.append("bystander")

    futures = [scheduler.submit(quick, priority=Priority.LOW, executor=INLINE) for _ in range(50)]
    other = asyncio.create_task(bystander())
    await asyncio.gather(*futures, other)
    assert events.index("bystander") < len(events) - 1


async def test_deadline_cuts_an_inline_task_and_frees_its_worker(
    started: Start,
) -> None:
    scheduler = await started()
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quick() -> str:
        return "quick"

    with pytest.raises(DeadlineExceeded, match="slow"):
        await scheduler.submit(slow, priority=Priority.NORMAL, executor=INLINE, deadline=0.05)
    await asyncio.wait_for(cancelled.wait(), 5)
    assert await scheduler.submit(quick, priority=Priority.NORMAL, executor=INLINE) == "quick"


async def test_deadline_while_queued_means_it_never_runs(started: Start) -> None:
    registry = CollectorRegistry()
    scheduler = await started(metrics=EngineMetrics(registry))
    gate = await occupy(scheduler)
    ran = False

    async def late() -> None:
        nonlocal ran
        ran = True

    future = scheduler.submit(late, priority=Priority.LOW, executor=INLINE, deadline=0.02)
    with pytest.raises(DeadlineExceeded):
        await future
    assert queue_depths(registry) == [0, 0, 0, 0]
    gate.opened.set()
    await asyncio.sleep(0.02)
    assert not ran


async def test_deadline_of_a_thread_task(started: Start) -> None:
    scheduler = await started()
    release = threading.Event()
    future = scheduler.submit(
        release.wait, 10, priority=Priority.NORMAL, executor=THREAD, deadline=0.05
    )
    with pytest.raises(DeadlineExceeded):
        await future
    release.set()  # the thread itself cannot be interrupted; let it end


class Flaky:
    def __init__(self, failures: int, error: type[Exception]) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"attempt {self.calls}")
        return "done"


async def test_retry_only_for_retryable_errors(started: Start) -> None:
    scheduler = await started()

    def submit(flaky: Flaky, retries: int) -> "asyncio.Future[Any]":
        return scheduler.submit(
            flaky,
            priority=Priority.NORMAL,
            executor=INLINE,
            retries=retries,
            retry_on=(ConnectionError,),
        )

    recovers = Flaky(2, ConnectionError)
    assert await submit(recovers, retries=3) == "done"
    assert recovers.calls == 3

    wrong_kind = Flaky(1, ValueError)
    with pytest.raises(ValueError, match="attempt 1"):
        await submit(wrong_kind, retries=3)
    assert wrong_kind.calls == 1

    exhausted = Flaky(5, ConnectionError)
    with pytest.raises(ConnectionError, match="attempt 3"):
        await submit(exhausted, retries=2)
    assert exhausted.calls == 3


async def test_thread_and_process_executors_run_elsewhere(started: Start) -> None:
    registry = CollectorRegistry()
    scheduler = await started(metrics=EngineMetrics(registry))
    thread_id = await scheduler.submit(threading.get_ident, priority=Priority.HIGH, executor=THREAD)
    assert thread_id != threading.get_ident()
    pid = await scheduler.submit(process_id, priority=Priority.HIGH, executor=PROCESS)
    assert pid != os.getpid()
    labels = {"priority": "high", "executor": "process", "phase": "run"}
    assert registry.get_sample_value("novel_engine_scheduler_task_seconds_count", labels) == 1
    ok = {"executor": "process", "outcome": "ok"}
    assert registry.get_sample_value("novel_engine_scheduler_tasks_total", ok) == 1


async def test_process_pool_starts_once_off_the_loop_and_again_after_a_crash(
    started: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    starting_threads: list[int] = []
    start_process_pool = scheduler_module.start_process_pool

    def recording_start(workers: int, preload: Sequence[str]) -> ProcessPoolExecutor:
        starting_threads.append(threading.get_ident())
        return start_process_pool(workers, preload)

    monkeypatch.setattr(scheduler_module, "start_process_pool", recording_start)
    loop_thread = threading.get_ident()
    scheduler = await started(process_workers=2)

    first = [scheduler.submit(process_id, priority=Priority.LOW, executor=PROCESS) for _ in "abc"]
    assert os.getpid() not in await asyncio.gather(*first)
    assert len(starting_threads) == 1  # concurrent first tasks share one start

    with pytest.raises(BrokenProcessPool):
        await scheduler.submit(end_worker_process, priority=Priority.NORMAL, executor=PROCESS)
    pid = await scheduler.submit(process_id, priority=Priority.NORMAL, executor=PROCESS)
    assert pid != os.getpid()
    assert len(starting_threads) == 2
    assert loop_thread not in starting_threads


async def test_task_errors_reach_the_caller(started: Start) -> None:
    scheduler = await started()
    with pytest.raises(ZeroDivisionError):
        await scheduler.submit(divmod, 1, 0, priority=Priority.NORMAL, executor=THREAD)

    async def gives_up() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await scheduler.submit(gives_up, priority=Priority.NORMAL, executor=INLINE)
    assert await scheduler.submit(asyncio.sleep, 0, "alive", priority=Priority.LOW, executor=INLINE)


async def test_cancelled_caller_frees_the_queue_slot(started: Start) -> None:
    registry = CollectorRegistry()
    scheduler = await started(queue_limit=1, metrics=EngineMetrics(registry))
    gate = await occupy(scheduler)
    future = scheduler.submit(asyncio.sleep, 0, priority=Priority.LOW, executor=INLINE)
    future.cancel()
    for _ in range(500):  # the sweeper notices within its interval
        if queue_depths(registry)[Priority.LOW] == 0:
            break
        await asyncio.sleep(0.01)
    assert queue_depths(registry)[Priority.LOW] == 0
    second = scheduler.submit(asyncio.sleep, 0, "second", priority=Priority.LOW, executor=INLINE)
    gate.opened.set()
    assert await second == "second"


async def test_stop_fails_queued_and_overdue_tasks_and_names_them() -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    gate = await occupy(scheduler)
    queued = [
        scheduler.submit(asyncio.sleep, 0, priority=Priority.LOW, executor=INLINE, name=name)
        for name in ("first", "second")
    ]
    unfinished = await scheduler.stop(timeout=0.05)
    assert sorted(unfinished) == ["first", "gate", "second"]
    assert gate.future is not None
    for future in [*queued, gate.future]:
        with pytest.raises(SchedulerStopped):
            await future
    assert not scheduler.running
    with pytest.raises(SchedulerStopped):
        scheduler.submit(asyncio.sleep, 0, priority=Priority.LOW, executor=INLINE)
    assert not gate.opened.is_set()


async def test_stop_lets_running_work_finish_within_the_timeout() -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    began = asyncio.Event()

    async def brief() -> str:
        began.set()
        await asyncio.sleep(0.05)
        return "finished"

    running = scheduler.submit(brief, priority=Priority.LOW, executor=INLINE)
    await began.wait()
    assert await scheduler.stop(timeout=5) == []
    assert await running == "finished"


async def test_metrics_after_a_burst_of_tasks(started: Start) -> None:
    registry = CollectorRegistry()
    scheduler = await started(metrics=EngineMetrics(registry), workers=4, queue_limit=2000)

    async def fail() -> None:
        raise ValueError("no")

    gate = await occupy(scheduler)  # holds a worker while the burst queues up
    assert gate.future is not None
    futures = [
        scheduler.submit(asyncio.sleep, 0, priority=Priority.LOW, executor=INLINE)
        for _ in range(700)
    ] + [scheduler.submit(fail, priority=Priority.HIGH, executor=INLINE) for _ in range(300)]
    depth = {"priority": "low"}
    assert registry.get_sample_value("novel_engine_scheduler_queue_depth", depth) == 700
    gate.opened.set()
    results = await asyncio.gather(gate.future, *futures, return_exceptions=True)
    assert sum(isinstance(result, ValueError) for result in results) == 300

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    seconds = "novel_engine_scheduler_task_seconds"
    for priority, count in (("low", 700), ("high", 300)):
        for phase in ("wait", "run"):
            labels = {"priority": priority, "executor": "inline", "phase": phase}
            assert value(f"{seconds}_count", **labels) == count
            assert value(f"{seconds}_bucket", le="+Inf", **labels) == count
            buckets = [
                sample.value
                for metric in registry.collect()
                if metric.name == seconds
                for sample in metric.samples
                if sample.name.endswith("_bucket")
                and {k: v for k, v in sample.labels.items() if k != "le"} == labels
            ]
            assert buckets == sorted(buckets)  # cumulative
            assert (value(f"{seconds}_sum", **labels) or 0) > 0
        assert value("novel_engine_scheduler_queue_depth", priority=priority) == 0
    tasks = "novel_engine_scheduler_tasks_total"
    assert value(tasks, executor="inline", outcome="ok") == 701  # the gate too
    assert value(tasks, executor="inline", outcome="error") == 300


async def test_retry_after_leaves_out_the_wait_for_the_process_pool_to_start(
    started: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_process_pool = scheduler_module.start_process_pool

    def slow_start(workers: int, preload: Sequence[str]) -> ProcessPoolExecutor:
        time.sleep(3.0)  # a pool that takes 3 s to start (its workers' imports, a busy node)
        return start_process_pool(workers, preload)

    monkeypatch.setattr(scheduler_module, "start_process_pool", slow_start)
    scheduler = await started(queue_limit=2, process_workers=1)
    await scheduler.submit(process_id, priority=Priority.NORMAL, executor=PROCESS)
    submitted: list[asyncio.Future[int]] = []
    with pytest.raises(QueueFull) as caught:  # noqa: PT012 -- the queue fills as it takes them
        for _ in range(4):
            submitted.append(
                scheduler.submit(process_id, priority=Priority.NORMAL, executor=PROCESS)
            )
    # Two queued tasks of a few milliseconds each: not two runs of the 3 s the first one waited.
    assert caught.value.retry_after < 3.0
    await asyncio.gather(*submitted)


async def test_retry_after_counts_the_slots_the_queued_work_can_use(started: Start) -> None:
    # 8 inline and 2 process slots stay idle: the queued thread tasks drain through one thread.
    scheduler = await started(queue_limit=4, workers=8, thread_workers=1, process_workers=2)
    await scheduler.submit(time.sleep, 0.3, priority=Priority.NORMAL, executor=THREAD)
    submitted: list[asyncio.Future[None]] = []

    def submit() -> None:
        submitted.append(
            scheduler.submit(time.sleep, 0.3, priority=Priority.NORMAL, executor=THREAD)
        )

    with pytest.raises(QueueFull) as caught:  # noqa: PT012 -- the queue fills as it takes them
        for _ in range(6):
            submit()
    assert caught.value.retry_after >= 4 * 0.3  # four queued runs of 0.3 s, one at a time
    await asyncio.gather(*submitted)
