"""Runs simulations for the API: resolves content, picks an executor, caches the result bytes.

The rest of simulation/ is pure; this module is where it meets the scheduler and the cache.
"""

import asyncio

from novel_engine.cache import TieredCache
from novel_engine.content.library import ContentLibrary
from novel_engine.scheduler import ExecutorKind, Priority, Scheduler
from novel_engine.simulation.request import SimulationInput, SimulationRequest
from novel_engine.simulation.runner import run_simulation

# Simulations up to this cost (about 3 ms) run inline on the event loop: cheaper than a pool
# hand-off, and too short to hold other requests up. Measured with bench/bench_simulation.py.
INLINE_COST_LIMIT = 40


def result_key(simulation_id: str) -> str:
    return f"sim:{simulation_id}"


def estimated_cost(simulation: SimulationInput) -> int:
    """Agent-turns: the work grows with characters x turns (x characters for targets)."""
    return len(simulation.characters) * simulation.turns


async def run_simulation_inline(simulation: SimulationInput) -> bytes:
    """run_simulation as a coroutine, for the scheduler's inline executor."""
    return run_simulation(simulation)


class SimulationService:
    def __init__(
        self,
        library: ContentLibrary,
        cache: TieredCache,
        scheduler: Scheduler,
        *,
        process_cost_threshold: int,
        inline_cost_limit: int,
    ) -> None:
        self._library = library
        self._cache = cache
        self._scheduler = scheduler
        self._process_cost_threshold = process_cost_threshold
        self._inline_cost_limit = inline_cost_limit

    async def prepare(self, request: SimulationRequest) -> SimulationInput:
        """Resolve the request's content; unknown ids raise UnknownReferenceError."""
        characters, campaign = await self._library.cast(request.character_ids, request.campaign_id)
        return SimulationInput(
            characters=characters, campaign=campaign, turns=request.turns, seed=request.seed
        )

    def executor_for(self, simulation: SimulationInput) -> ExecutorKind:
        cost = estimated_cost(simulation)
        if cost > self._process_cost_threshold:
            return ExecutorKind.PROCESS
        if cost <= self._inline_cost_limit:
            return ExecutorKind.INLINE
        return ExecutorKind.THREAD

    def submit(self, simulation: SimulationInput, priority: Priority) -> asyncio.Future[bytes]:
        """Queue the computation (no cache involved); raises QueueFull at once when full."""
        executor = self.executor_for(simulation)
        function = run_simulation_inline if executor is ExecutorKind.INLINE else run_simulation
        future: asyncio.Future[bytes] = self._scheduler.submit(
            function,
            simulation,
            priority=priority,
            executor=executor,
            name=f"simulation {simulation.simulation_id()}",
        )
        return future

    async def run(self, simulation: SimulationInput, priority: Priority) -> bytes:
        """The result bytes: from the cache, or computed once however many ask at the same time."""
        return await self._cache.get_or_compute(
            result_key(simulation.simulation_id()), lambda: self.submit(simulation, priority)
        )

    async def cached(self, simulation_id: str) -> bytes | None:
        return await self._cache.get(result_key(simulation_id))
