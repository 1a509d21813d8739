"""Real engine processes behind a NovelEngine's kwok pods, and load against them.

kwok pods run nothing and their IPs must never be contacted: `PodsToEngines` gives each engine
pod, as it appears, an engine process on 127.0.0.1 through the operator's address map, and the
operator scrapes that process for the pod. `Load` keeps sync simulations in flight against one
engine process, which saturates its process pool (the CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

import aiohttp
from harness import AddressMap, Cluster

from novel_operator import names

_TESTS = Path(__file__).resolve().parents[2]


def _engine_tests_module(name: str) -> ModuleType:
    """A module of tests/engine (a package of its own, found from tests/)."""
    if str(_TESTS) not in sys.path:
        sys.path.append(str(_TESTS))
    return importlib.import_module(f"engine.{name}")


_processes = _engine_tests_module("processes")
EngineProcess = _processes.EngineProcess
EngineProcesses = _processes.EngineProcesses
#: Eight characters for 200 turns: a simulation heavy enough for the process pool.
HEAVY_SIMULATION = {
    "character_ids": _engine_tests_module("api").FULL_CAST,
    "campaign_id": "siege-of-emberfall",
    "turns": 200,
}


_redis = _engine_tests_module("conftest")
REDIS_BINARY: str | None = _redis.REDIS_BINARY
RedisServer = _redis.RedisServer


@contextlib.contextmanager
def running_engines(
    directory: Path, count: int, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[list[Any]]:
    """`count` engine processes (started with `args` and `env`), ready; stopped (by PID) on
    exit."""
    engines = EngineProcesses(directory)
    try:
        started = [engines.start(f"engine-{index}", *args, env=env) for index in range(count)]

        async def all_ready() -> None:
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(engine.ready(session) for engine in started))

        asyncio.run(all_ready())
        yield started
    finally:
        engines.close()


class _InBackground:
    """A thread running `_run` from entering the context until it exits (`_stop` is set)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


class PodsToEngines(_InBackground):
    """Maps each engine pod of one NovelEngine to a free engine process as the pod appears (the
    oldest pods first), and frees the process when the pod goes; in a background thread."""

    def __init__(
        self,
        cluster: Cluster,
        addresses: AddressMap,
        namespace: str,
        instance: str,
        engines: Sequence[Any],
    ) -> None:
        self._cluster = cluster
        self._addresses = addresses
        self._namespace = namespace
        self._selector = names.selector_string(names.engine_selector(instance))
        self._engines = list(engines)
        self._assigned: dict[str, Any] = {}
        super().__init__()

    def engine_of(self, pod: str) -> Any:
        return self._assigned[pod]

    def maps(self, pod: str) -> bool:
        return pod in self._assigned

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            pods = self._cluster.list("v1", "Pod", self._namespace, self._selector)
            pods.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
            alive = {
                p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
            }
            changed = False
            for gone in set(self._assigned) - alive:
                del self._assigned[gone]
                changed = True
            for pod in (p["metadata"]["name"] for p in pods):
                free = [e for e in self._engines if e not in self._assigned.values()]
                if pod in alive and pod not in self._assigned and free:
                    self._assigned[pod] = free[0]
                    changed = True
            if changed:
                self._addresses.write(
                    {
                        f"{self._namespace}/{pod}": f"127.0.0.1:{engine.port}"
                        for pod, engine in self._assigned.items()
                    }
                )


class Load(_InBackground):
    """`concurrency` sync simulations kept in flight against one engine process (fresh seeds,
    so none is answered from a cache) until the context exits."""

    def __init__(self, url: str, concurrency: int) -> None:
        self._url = url
        self._concurrency = concurrency
        self._seeds = itertools.count(1)
        self.answered = 0
        super().__init__()

    def _run(self) -> None:
        asyncio.run(self._drive())

    async def _drive(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(self._worker(session) for _ in range(self._concurrency)))

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            body = {**HEAVY_SIMULATION, "seed": next(self._seeds)}
            try:
                async with session.post(f"{self._url}/v1/simulations", json=body) as response:
                    await response.read()
                    if response.status == 200:
                        self.answered += 1
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
