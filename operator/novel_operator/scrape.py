"""Reading the engine pods' `/metrics`: the only place the operator talks to engine pods.

One aiohttp session for the whole operator, with a bounded connector (at most
`connections` sockets at once, whatever the number of NovelEngines) and a short total timeout
per scrape. A pod is reached at the address its `AddressResolver` gives: the pod IP and the
engine port in a cluster, or an address from a file (tests point scrapes at engine processes
on 127.0.0.1; a pod the file does not name is not scraped at all and counts as failed).
"""

import asyncio
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from novel_engine.metrics import IN_FLIGHT_METRIC, L2_STATE_METRIC, QUEUE_DEPTH_METRIC
from novel_operator import names
from novel_operator.scaling import EngineMetric

log = logging.getLogger(__name__)

#: Engine metric -> its name on /metrics (queue depth is one series per priority: summed).
METRIC_NAMES: Mapping[EngineMetric, str] = {
    EngineMetric.IN_FLIGHT: IN_FLIGHT_METRIC,
    EngineMetric.QUEUE_DEPTH: QUEUE_DEPTH_METRIC,
}
#: Asks for those families and the L2 tier's state (CacheDegraded) only (the exposition format's
#: `name[]` filter, which prometheus-client honours): the engine then collects and sends a few
#: hundred bytes instead of every histogram, which keeps a scrape cheap for a busy engine's
#: event loop.
METRICS_QUERY = urllib.parse.urlencode(
    [("name[]", name) for name in (*METRIC_NAMES.values(), L2_STATE_METRIC)]
)
DEFAULT_TIMEOUT_SECONDS = 2.0
DEFAULT_CONNECTIONS = 64


class ScrapeResult(StrEnum):
    """How one pod's scrape ended (the label of the scrape counter)."""

    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"  # refused, reset, or an HTTP status other than 200
    INVALID = "invalid"  # not Prometheus text, or without the engine's metrics
    UNRESOLVED = "unresolved"  # no address for the pod


@dataclass(frozen=True)
class PodScrape:
    pod: str
    result: ScrapeResult
    values: Mapping[EngineMetric, float]  # empty unless OK
    seconds: float  # how long the request took (0 when none was sent)
    l2_state: str | None = None  # the engine's L2 tier state, if OK and it has an L2 tier


class AddressResolver(Protocol):
    """Where a pod's /metrics is served: `host:port`, or None (the pod is not scraped)."""

    async def refresh(self) -> None:
        """Called before each round of scrapes (may read files, off the event loop)."""

    def address(self, pod: Mapping[str, Any]) -> str | None: ...


class PodIPResolver:
    """The pod's IP (status.podIP) and the engine container port: how it works in a cluster."""

    def __init__(self, port: int = names.ENGINE_PORT) -> None:
        self._port = port

    async def refresh(self) -> None:
        return None

    def address(self, pod: Mapping[str, Any]) -> str | None:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            return None
        return f"[{ip}]:{self._port}" if ":" in ip else f"{ip}:{self._port}"


class AddressMapFile:
    """Addresses from a JSON file `{"namespace/pod": "127.0.0.1:port", ...}`, re-read when it
    changes. Pods it does not name get no address (their scrape fails without a connection)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._addresses: dict[str, str] = {}

    async def refresh(self) -> None:
        self._addresses, self._stamp = await asyncio.to_thread(self._load)

    def _load(self) -> tuple[dict[str, str], tuple[int, int] | None]:
        stamp = self._stamp
        try:
            stat = self._path.stat()
            if (stat.st_mtime_ns, stat.st_size) == self._stamp:
                return self._addresses, self._stamp
            stamp = (stat.st_mtime_ns, stat.st_size)
            found = json.loads(self._path.read_text())
            if not isinstance(found, dict):
                raise ValueError(f"a JSON {type(found).__name__}, not an object")
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError) as error:  # caught mid-write, or not a JSON object
            # Keep what was known; with the stamp of what was read, warned once per change.
            log.warning("address map %s unreadable: %s", self._path, error)
            return self._addresses, stamp
        return {str(key): str(value) for key, value in found.items()}, stamp

    def address(self, pod: Mapping[str, Any]) -> str | None:
        meta = pod["metadata"]
        return self._addresses.get(f"{meta['namespace']}/{meta['name']}")


def parse_engine_metrics(text: str) -> dict[EngineMetric, float]:
    """The engine metrics in a /metrics body: in-flight requests, and the queue depth summed
    over priorities. Only the lines of those two families are parsed (should a server ignore
    the `name[]` filter, the rest is histograms the scaler does not read). ValueError if either
    is absent or malformed, or is not a finite count of zero or more (a NaN would stop every
    average it joins, a negative count would pull one down)."""
    wanted = tuple(METRIC_NAMES.values())
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(wanted) or (line.startswith("#") and any(n in line for n in wanted))
    ]
    found: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            if sample.name in wanted:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    values = {}
    for metric, name in METRIC_NAMES.items():
        if name not in found:
            raise ValueError(f"{name} is missing")
        if not math.isfinite(found[name]) or found[name] < 0:
            raise ValueError(f"{name} is {found[name]}, not a count")
        values[metric] = found[name]
    return values


def parse_l2_state(text: str) -> str | None:
    """The state whose `novel_engine_cache_l2_state{state}` series is 1 in a /metrics body;
    None when the engine has no L2 tier (it then serves no such series)."""
    lines = [line for line in text.splitlines() if line.startswith(L2_STATE_METRIC + "{")]
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            if sample.value == 1 and "state" in sample.labels:
                return sample.labels["state"]
    return None


class Scraper:
    """Scrapes engine pods through one shared session; open with `async with`."""

    def __init__(
        self,
        resolver: AddressResolver,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._connections = connections
        # A scrape waits for one of the connections first, and only then is timed: under load,
        # with many pods to scrape, a slow queue must not count as slow pods.
        self._slots = asyncio.Semaphore(connections)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Scraper":
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def refresh(self) -> None:
        await self._resolver.refresh()

    async def scrape(self, pods: Sequence[Mapping[str, Any]]) -> list[PodScrape]:
        """Scrape every pod concurrently; one result per pod, in order."""
        return list(await asyncio.gather(*(self._scrape(pod) for pod in pods)))

    async def _scrape(self, pod: Mapping[str, Any]) -> PodScrape:
        name = str(pod["metadata"]["name"])
        address = self._resolver.address(pod)
        if address is None:
            return self._done(name, ScrapeResult.UNRESOLVED, {}, 0.0)
        assert self._session is not None, "Scraper used outside `async with`"
        async with self._slots:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._timeout):
                    text = await self._get_metrics(address)
            except TimeoutError:
                return self._done(name, ScrapeResult.TIMEOUT, {}, started)
            except (aiohttp.ClientError, OSError):
                return self._done(name, ScrapeResult.ERROR, {}, started)
        if text is None:
            return self._done(name, ScrapeResult.ERROR, {}, started)
        try:
            values = parse_engine_metrics(text)
            l2_state = parse_l2_state(text)
        except ValueError:
            return self._done(name, ScrapeResult.INVALID, {}, started)
        return self._done(name, ScrapeResult.OK, values, started, l2_state)

    async def _get_metrics(self, address: str) -> str | None:
        """The pod's /metrics text, None for a status other than 200."""
        assert self._session is not None
        async with self._session.get(f"http://{address}/metrics?{METRICS_QUERY}") as response:
            if response.status != 200:
                return None
            return await response.text(errors="replace")

    @staticmethod
    def _done(
        pod: str,
        result: ScrapeResult,
        values: Mapping[EngineMetric, float],
        started: float,
        l2_state: str | None = None,
    ) -> PodScrape:
        seconds = time.perf_counter() - started if started else 0.0
        return PodScrape(pod, result, values, seconds, l2_state)
