"""Scheduler overhead and executor choice.

1. No-op tasks per second through the Scheduler compared with a bare asyncio.PriorityQueue
   worker loop doing the same thing (a future per task, the same number of workers), timed
   back to back in each repeat. Goal: >= 0.5x the bare loop. On a shared machine the best
   repeat is the least disturbed one, so the ratio of best rates is the headline figure;
   the median of the per-repeat ratios is printed beside it.
2. Where the process pool pays off: a CPU-bound function of tunable cost run as a batch on
   the inline, thread and process executors, with the longest event-loop stall seen while
   the batch ran. `executor_table(fn, costs)` takes any picklable top-level `fn(cost)`, so
   the simulation benchmark can reuse it with the real simulation.
"""

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from novel_engine.metrics import EngineMetrics
from novel_engine.scheduler import ExecutorKind, Priority, Scheduler

TASKS = 20_000
WORKERS = 8
REPEATS = 7
GOAL_RATIO = 0.5
COSTS = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
WORK_PER_COST = 3_000_000  # iterations per batch, so cheap costs run more jobs


async def noop() -> None:
    return None


async def bare_queue_rate(tasks: int) -> float:
    """The baseline: a PriorityQueue and worker coroutines resolving one future per task."""
    loop = asyncio.get_running_loop()
    queue: asyncio.PriorityQueue[tuple[int, int, Any, asyncio.Future[Any]]]
    queue = asyncio.PriorityQueue()

    async def work() -> None:
        while True:
            _, _, fn, future = await queue.get()
            future.set_result(await fn())

    workers = [asyncio.create_task(work()) for _ in range(WORKERS)]
    started = time.perf_counter()
    futures = []
    for sequence in range(tasks):
        future = loop.create_future()
        queue.put_nowait((Priority.NORMAL, sequence, noop, future))
        futures.append(future)
    for future in futures:
        await future
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return tasks / elapsed


def new_scheduler(metrics: EngineMetrics | None, process_workers: int = 2) -> Scheduler:
    return Scheduler(
        metrics=metrics,
        queue_limit=TASKS,
        workers=WORKERS,
        thread_workers=4,
        process_workers=process_workers,
        aging_seconds=2.0,
        default_deadline=60.0,
    )


async def scheduler_rate(tasks: int, metrics: EngineMetrics | None) -> float:
    scheduler = new_scheduler(metrics)
    await scheduler.start()
    started = time.perf_counter()
    futures = [
        scheduler.submit(noop, priority=Priority.NORMAL, executor=ExecutorKind.INLINE)
        for _ in range(tasks)
    ]
    for future in futures:
        await future
    elapsed = time.perf_counter() - started
    await scheduler.stop(timeout=1)
    return tasks / elapsed


async def overhead() -> dict[str, tuple[float, float, float]]:
    """name -> (best tasks/s, ratio of best rates, median per-repeat ratio) vs the bare queue."""
    rates: dict[str, list[float]] = {"bare PriorityQueue": [], "Scheduler": [], "+ metrics": []}
    for _ in range(REPEATS):
        rates["bare PriorityQueue"].append(await bare_queue_rate(TASKS))
        rates["Scheduler"].append(await scheduler_rate(TASKS, None))
        rates["+ metrics"].append(await scheduler_rate(TASKS, EngineMetrics(CollectorRegistry())))
    bare = rates["bare PriorityQueue"]
    return {
        name: (
            max(measured),
            max(measured) / max(bare),
            statistics.median(m / b for m, b in zip(measured, bare, strict=True)),
        )
        for name, measured in rates.items()
    }


def burn(iterations: int) -> int:
    """CPU-bound work proportional to `iterations` (about 0.1 us each)."""
    total = 0
    for number in range(iterations):
        total += number * number % 7
    return total


async def call_inline(fn: Callable[[int], object], cost: int) -> object:
    return fn(cost)


@dataclass
class BatchTiming:
    executor: ExecutorKind
    seconds: float
    max_loop_stall: float


async def time_batch(
    scheduler: Scheduler, fn: Callable[[int], object], cost: int, jobs: int, kind: ExecutorKind
) -> BatchTiming:
    """Run `jobs` calls of fn(cost) on one executor; watch how long the loop goes unserved."""
    loop = asyncio.get_running_loop()
    stall = 0.0
    done = False

    async def watch() -> None:
        nonlocal stall
        while not done:
            before = loop.time()
            await asyncio.sleep(0.001)
            stall = max(stall, loop.time() - before - 0.001)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    started = time.perf_counter()
    if kind is ExecutorKind.INLINE:
        futures = [
            scheduler.submit(call_inline, fn, cost, priority=Priority.NORMAL, executor=kind)
            for _ in range(jobs)
        ]
    else:
        futures = [
            scheduler.submit(fn, cost, priority=Priority.NORMAL, executor=kind) for _ in range(jobs)
        ]
    for future in futures:
        await future
    seconds = time.perf_counter() - started
    done = True
    await watcher
    return BatchTiming(kind, seconds, stall)


async def executor_rows(
    fn: Callable[[int], object], costs: Sequence[int], process_workers: int
) -> tuple[float, list[tuple[int, int, dict[ExecutorKind, BatchTiming]]]]:
    scheduler = new_scheduler(None, process_workers)
    await scheduler.start()
    started = time.perf_counter()
    warm_up = [
        scheduler.submit(fn, 0, priority=Priority.NORMAL, executor=ExecutorKind.PROCESS)
        for _ in range(process_workers * 2)
    ]
    await asyncio.gather(*warm_up)
    pool_start = time.perf_counter() - started
    rows = []
    for cost in costs:
        jobs = max(8, min(1000, WORK_PER_COST // max(cost, 1)))
        timings = {kind: await time_batch(scheduler, fn, cost, jobs, kind) for kind in ExecutorKind}
        rows.append((cost, jobs, timings))
    await scheduler.stop(timeout=5)
    return pool_start, rows


def executor_table(
    fn: Callable[[int], object] = burn,
    costs: Sequence[int] = COSTS,
    process_workers: int = 2,
    unit: str = "iterations",
) -> None:
    """Print batch times per executor for fn(cost) at each cost, and the crossover."""
    pool_start, rows = asyncio.run(executor_rows(fn, costs, process_workers))
    print(f"  process pool start (forkserver, {process_workers} workers): {pool_start:.3f} s")
    print(
        f"  {'cost (' + unit + ')':>20} {'jobs':>5} {'ms/job':>7}  {'inline s':>9} {'thread s':>9}"
        f" {'process s':>9}  {'process/inline':>14}  max loop stall ms (i/t/p)"
    )
    speedups = []
    for cost, jobs, timings in rows:
        inline, thread, process = (timings[kind] for kind in ExecutorKind)
        speedups.append((cost, inline.seconds / process.seconds))
        stalls = "/".join(f"{t.max_loop_stall * 1000:.1f}" for t in (inline, thread, process))
        print(
            f"  {cost:>20} {jobs:>5} {inline.seconds / jobs * 1000:>7.2f}  {inline.seconds:>9.3f}"
            f" {thread.seconds:>9.3f} {process.seconds:>9.3f}  {speedups[-1][1]:>13.2f}x  {stalls}"
        )
    # the smallest cost from which the pool wins at every larger cost too
    crossover = None
    for cost, speedup in reversed(speedups):
        if speedup <= 1.0:
            break
        crossover = cost
    if crossover is None:
        print("  the process pool does not beat inline execution at the largest cost")
    else:
        print(f"  the process pool beats inline execution from {crossover} {unit} on")


def main() -> None:
    results = asyncio.run(overhead())
    print(f"bench_scheduler: no-op tasks per second (best of {REPEATS}) against the bare queue")
    for name, (best, ratio, median) in results.items():
        print(f"  {name:<20} {best / 1e3:8.1f} k/s   {ratio:5.2f}x (median {median:4.2f}x)")
    verdict = "meets" if results["+ metrics"][1] >= GOAL_RATIO else "misses"
    print(f"  the scheduler with metrics {verdict} the {GOAL_RATIO}x goal")
    print("bench_scheduler: CPU-bound batch per executor")
    executor_table()


if __name__ == "__main__":
    main()
