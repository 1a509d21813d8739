"""Simulation cost: CPU time per uncached simulation, and which executor suits which size.

1. CPU time (time.process_time) per uncached 4 characters x 20 turns simulation, each run with
   its own seed, against the goal of 5 ms: the best and the median of REPEATS passes over RUNS
   seeds (a shared machine slows some passes down); the largest request (8 x 200) for scale.
2. The real simulation, sized by cost = characters x turns ("agent-turns"), run as a batch on
   the scheduler's inline, thread and process executors (bench_scheduler.time_batch), with the
   longest event-loop stall seen meanwhile. This is the measurement behind SimulationService's
   INLINE_COST_LIMIT and the process_cost_threshold default.

Run: `python -m bench.bench_simulation` (or `make bench` for every benchmark).
"""

import asyncio
import statistics
import time
from functools import cache

from bench.bench_scheduler import BatchTiming, new_scheduler, time_batch
from novel_engine.content.loader import sample_content
from novel_engine.content.models import Campaign, Character
from novel_engine.scheduler import ExecutorKind, Priority
from novel_engine.simulation import SimulationInput, run_simulation

GOAL_MS = 5.0
RUNS = 200
REPEATS = 5
COSTS = (10, 40, 80, 200, 400, 800, 1600)  # 2x5, 4x10, 4x20, 8x25, 8x50, 8x100, 8x200
BATCH_AGENT_TURNS = 8000  # work per batch, so cheap simulations run in larger batches


@cache
def library() -> tuple[list[Character], Campaign]:
    files = sample_content()
    characters = [
        Character.model_validate({**doc.spec_dict(), "id": doc.id, "version": 1}, strict=False)
        for file in files
        for doc in file.characters
    ]
    campaign = next(
        Campaign.model_validate({**doc.spec_dict(), "id": doc.id, "version": 1}, strict=False)
        for file in files
        for doc in file.campaigns
    )
    return characters, campaign


def simulation(characters: int, turns: int, seed: int) -> SimulationInput:
    cast, campaign = library()
    return SimulationInput(
        characters=tuple(cast[:characters]), campaign=campaign, turns=turns, seed=seed
    )


def simulate_cost(cost: int) -> int:
    """One simulation of about ``cost`` agent-turns (picklable, for the process executor)."""
    characters = 2 if cost < 40 else 4 if cost < 200 else 8
    return len(run_simulation(simulation(characters, max(1, cost // characters), seed=cost)))


def cpu_ms_per_simulation(characters: int, turns: int, runs: int) -> tuple[float, float]:
    """(best, median) over REPEATS passes of the mean CPU ms per simulation."""
    inputs = [simulation(characters, turns, seed) for seed in range(runs)]
    passes = []
    for _ in range(REPEATS):
        started = time.process_time()
        for simulation_input in inputs:
            run_simulation(simulation_input)
        passes.append((time.process_time() - started) / runs * 1000)
    return min(passes), statistics.median(passes)


async def executor_rows() -> list[tuple[int, int, dict[ExecutorKind, BatchTiming]]]:
    scheduler = new_scheduler(None)
    await scheduler.start()
    warm_up = [
        scheduler.submit(simulate_cost, 10, priority=Priority.NORMAL, executor=ExecutorKind.PROCESS)
        for _ in range(4)
    ]
    await asyncio.gather(*warm_up)
    rows = []
    for cost in COSTS:
        jobs = max(8, BATCH_AGENT_TURNS // cost)
        timings = {
            kind: await time_batch(scheduler, simulate_cost, cost, jobs, kind)
            for kind in ExecutorKind
        }
        rows.append((cost, jobs, timings))
    await scheduler.stop(timeout=5)
    return rows


def executor_table() -> None:
    print(
        f"  {'agent-turns':>11} {'jobs':>5}  ms per simulation (inline/thread/process)"
        "  process vs inline  max loop stall ms (inline/thread/process)"
    )
    for cost, jobs, timings in asyncio.run(executor_rows()):
        inline, thread, process = (timings[kind] for kind in ExecutorKind)
        per_job = "/".join(f"{t.seconds / jobs * 1000:.2f}" for t in (inline, thread, process))
        stalls = "/".join(f"{t.max_loop_stall * 1000:.1f}" for t in (inline, thread, process))
        speedup = inline.seconds / process.seconds
        print(f"  {cost:>11} {jobs:>5}  {per_job:>40}  {speedup:>16.2f}x  {stalls:>44}")


def main() -> None:
    print(
        f"bench_simulation: CPU time per uncached simulation (mean over {RUNS} seeds,"
        f" best and median of {REPEATS} passes)"
    )
    best, median = cpu_ms_per_simulation(4, 20, RUNS)
    verdict = "meets" if best <= GOAL_MS else "misses"
    print(
        f"  4 characters x  20 turns: {best:6.2f} ms (median {median:.2f})"
        f"  {verdict} the {GOAL_MS:g} ms goal"
    )
    best, median = cpu_ms_per_simulation(8, 200, RUNS // 20)
    print(f"  8 characters x 200 turns: {best:6.2f} ms (median {median:.2f})  the largest request")
    print("bench_simulation: the simulation per executor, by cost")
    executor_table()


if __name__ == "__main__":
    main()
