"""Every engine metric: names, help texts, label sets and buckets, built on a given registry."""

from abc import abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, Generic, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# The operator scrapes these two by name, asking for them alone (`/metrics?name[]=...`, which
# prometheus-client's handler serves by collecting only those): keep them plain collectors
# registered under these names.
IN_FLIGHT_METRIC: Final = "novel_engine_http_requests_in_flight"
QUEUE_DEPTH_METRIC: Final = "novel_engine_scheduler_queue_depth"
# The operator's CacheDegraded condition reads these two (served only when L2 is configured):
# whether the shared tier answers, and if not, why (one series per state, 1 for the current one).
L2_UP_METRIC: Final = "novel_engine_cache_l2_up"
L2_STATE_METRIC: Final = "novel_engine_cache_l2_state"

CacheTier = Literal["l1", "l2", "l3"]
CACHE_TIERS: Final[tuple[CacheTier, ...]] = ("l1", "l2", "l3")
# The tiers that drop entries themselves and count it; Redis counts its own (INFO evicted_keys).
EVICTING_TIERS: Final[frozenset[CacheTier]] = frozenset({"l1", "l3"})
CACHE_RESULTS: Final = ("hit", "miss", "error")
L2State = Literal["ok", "unreachable", "auth_failed"]
L2_STATES: Final[tuple[L2State, ...]] = ("ok", "unreachable", "auth_failed")
PRIORITY_LABELS: Final = ("critical", "high", "normal", "low")
EXECUTOR_LABELS: Final = ("inline", "thread", "process")
TASK_PHASES: Final = ("wait", "run")
TASK_OUTCOMES: Final = ("ok", "error", "deadline", "cancelled", "stopped")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
PRECREATED_STATUS_CLASSES: Final = ("2xx", "5xx")
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE: Final = "none"
HISTOGRAM_BATCH: Final = 128  # pending observations per series before they are bucketed
S = TypeVar("S")  # a series type
F = TypeVar("F", bound=Metric)  # the metric family it is exported as

_HTTP_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_POOL_WAIT_BUCKETS: Final = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_TASK_BUCKETS: Final = (
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0,
)  # fmt: skip


def status_class(status: int) -> str:
    """`2xx`-style label for an HTTP status code (anything outside 100..599 counts as 5xx)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


def method_label(method: str) -> str:
    """The request method as a label value from a closed set (unusual methods become `other`)."""
    return method if method in HTTP_METHODS else "other"


class CacheStats:
    """Plain counters one cache tier increments; exported at scrape time by EngineMetrics.

    hits/misses count lookups; errors count failed operations of any kind (tier unavailable);
    evictions count entries the tier dropped by itself (capacity or expiry), not deletes.
    """

    __slots__ = ("errors", "evictions", "hits", "misses", "tier")

    def __init__(self, tier: CacheTier) -> None:
        self.tier: CacheTier = tier
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.evictions = 0


class L2Health:
    """What the L2 tier last saw: `ok`, `unreachable` (refused, reset, timed out) or
    `auth_failed` (Redis refused the credentials). Exported at scrape time by EngineMetrics."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: L2State = "ok"


class _L2Collector(Collector):
    """novel_engine_cache_l2_up (1/0) and the state set novel_engine_cache_l2_state{state}."""

    def __init__(self, health: L2Health) -> None:
        self._health = health

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        current = self._health.state
        up = GaugeMetricFamily(
            L2_UP_METRIC, "Whether the shared L2 cache tier answers (1) or not (0)."
        )
        up.add_metric([], 1.0 if current == "ok" else 0.0)
        state = GaugeMetricFamily(
            L2_STATE_METRIC,
            "State of the shared L2 cache tier: 1 for the current state, 0 for the others.",
            labels=["state"],
        )
        for name in L2_STATES:
            state.add_metric([name], 1.0 if name == current else 0.0)
        return [up, state]


class _CacheCollector(Collector):
    """Reads the tiers' CacheStats when scraped, so counting costs one int increment."""

    def __init__(self) -> None:
        self.tracked: list[CacheStats] = []

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self.tracked)

    @staticmethod
    def _families(tracked: Iterable[CacheStats] = ()) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "novel_engine_cache_requests",
            "Cache requests by tier and result: hit and miss count lookups, error counts"
            " lookups and writes that failed (the tier was unavailable).",
            labels=["tier", "result"],
        )
        evictions = CounterMetricFamily(
            "novel_engine_cache_evictions",
            "Entries the in-process (l1) or SQLite (l3) cache tier dropped by itself (capacity"
            " or expiry).",
            labels=["tier"],
        )
        # Only the tiers this engine has: a series of a tier it lacks would read as a healthy 0.
        present = {stats.tier for stats in tracked}
        totals = {tier: [0, 0, 0, 0] for tier in CACHE_TIERS if tier in present}
        for stats in tracked:
            total = totals[stats.tier]
            total[0] += stats.hits
            total[1] += stats.misses
            total[2] += stats.errors
            total[3] += stats.evictions
        for tier, (hits, misses, errors, evicted) in totals.items():
            for result, value in zip(CACHE_RESULTS, (hits, misses, errors), strict=True):
                requests.add_metric([tier, result], value)
            if tier in EVICTING_TIERS:
                evictions.add_metric([tier], evicted)
        yield requests
        yield evictions


class PlainHistogramSeries:
    """One label set of a PlainHistogram: cumulative bucket counts, a count and a sum.

    Observations are appended to `pending` and sorted into the buckets in batches (a C sort,
    then a bisect per bound), which costs less than a bisect per observation. observe()
    folds every HISTOGRAM_BATCH observations; a hot path may instead bind `pending.append`
    and call fold() now and then to bound the list. Reads fold first.
    """

    __slots__ = ("_bounds", "_count", "_cumulative", "_total", "pending")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._cumulative = [0] * len(bounds)  # observations <= each bound
        self._count = 0
        self._total = 0.0
        self.pending: list[float] = []  # appended to, never replaced

    def observe(self, amount: float) -> None:
        pending = self.pending
        pending.append(amount)
        if len(pending) >= HISTOGRAM_BATCH:
            self.fold()

    def read(self) -> tuple[list[int], int, float]:
        """(cumulative counts per bound, count, sum), pending observations included."""
        self.fold()
        return self._cumulative, self._count, self._total

    def fold(self) -> None:
        """Bucket the pending observations."""
        pending = self.pending
        if not pending:
            return
        pending.sort()
        self._cumulative = [
            below + bisect_right(pending, bound)
            for below, bound in zip(self._cumulative, self._bounds, strict=True)
        ]
        self._count += len(pending)
        self._total += sum(pending)
        pending.clear()


class PlainCounterSeries:
    """One label set of a PlainCounter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _PlainMetric(Collector, Generic[S, F]):
    """Labelled series of plain numbers for hot paths, exported at scrape time.

    Recording is an attribute update; prometheus_client's metrics take a lock per call, which
    costs more than the scheduling they would measure. Written and scraped on the event loop
    only (the engine serves /metrics there), so there is no lock.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        new_series: Callable[[], S],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._new_series = new_series
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    def labels(self, *values: str) -> S:
        """The series of these label values, created (at 0) on first use."""
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}")
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = self._new_series()
        return series

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for values, series in self._series.items():
            self._add(family, list(values), series)
        return [family]

    @abstractmethod
    def _family(self) -> F: ...

    @abstractmethod
    def _add(self, family: F, values: list[str], series: S) -> None: ...


class PlainHistogram(_PlainMetric[PlainHistogramSeries, HistogramMetricFamily]):
    """A labelled histogram with fixed buckets; an observation is a bisect and two additions."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(buckets)
        self._les = [repr(bound) for bound in bounds]
        super().__init__(
            name, documentation, labelnames, registry, lambda: PlainHistogramSeries(bounds)
        )

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def _add(
        self, family: HistogramMetricFamily, values: list[str], series: PlainHistogramSeries
    ) -> None:
        cumulative, count, total = series.read()
        buckets = [*zip(self._les, cumulative, strict=True), ("+Inf", count)]
        family.add_metric(values, buckets, total)


class PlainCounter(_PlainMetric[PlainCounterSeries, CounterMetricFamily]):
    """A labelled counter; an increment is one addition."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames, registry, PlainCounterSeries)

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def _add(
        self, family: CounterMetricFamily, values: list[str], series: PlainCounterSeries
    ) -> None:
        family.add_metric(values, series.value)


class EngineMetrics:
    """The engine's metrics on one registry; every known label set exists from the start at 0
    (for request latency: each route's 2xx and 5xx, see precreate_routes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_in_flight = Gauge(
            IN_FLIGHT_METRIC,
            "HTTP requests being served, excluding /metrics and probes.",
            registry=registry,
        )
        self.http_request_duration = PlainHistogram(
            "novel_engine_http_request_duration_seconds",
            "HTTP request latency by route template, method and status class.",
            ["route", "method", "status_class"],
            _HTTP_BUCKETS,
            registry,
        )
        self.db_pool_wait = Histogram(
            "novel_engine_db_pool_wait_seconds",
            "Time spent waiting for a database connection from the pool.",
            buckets=_POOL_WAIT_BUCKETS,
            registry=registry,
        )
        self.db_pool_timeouts = Counter(
            "novel_engine_db_pool_timeouts",
            "Database connection requests that gave up waiting (answered 503).",
            registry=registry,
        )
        self.scheduler_queue_depth = Gauge(
            QUEUE_DEPTH_METRIC,
            "Tasks waiting in the scheduler queue by priority.",
            ["priority"],
            registry=registry,
        )
        self.scheduler_task_seconds = PlainHistogram(
            "novel_engine_scheduler_task_seconds",
            "Scheduler task time by priority, executor and phase (wait: queued, run: executing).",
            ["priority", "executor", "phase"],
            _TASK_BUCKETS,
            registry,
        )
        self.scheduler_tasks = PlainCounter(
            "novel_engine_scheduler_tasks",
            "Finished scheduler tasks by executor and outcome.",
            ["executor", "outcome"],
            registry,
        )
        self.scheduler_rejected = Counter(
            "novel_engine_scheduler_rejected",
            "Tasks refused because the scheduler queue was full (answered 429).",
            ["priority"],
            registry=registry,
        )
        self._cache = _CacheCollector()
        registry.register(self._cache)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends

        for priority in PRIORITY_LABELS:
            self.scheduler_queue_depth.labels(priority)
            self.scheduler_rejected.labels(priority)
            for executor in EXECUTOR_LABELS:
                for phase in TASK_PHASES:
                    self.scheduler_task_seconds.labels(priority, executor, phase)
        for executor in EXECUTOR_LABELS:
            for outcome in TASK_OUTCOMES:
                self.scheduler_tasks.labels(executor, outcome)

    def track_cache(self, stats: CacheStats) -> None:
        """Export a tier's counters (summed with any other stats of the same tier)."""
        self._cache.tracked.append(stats)

    def track_l2(self, health: L2Health) -> None:
        """Export the L2 tier's state (engines without L2 serve neither L2 family)."""
        self.registry.register(_L2Collector(health))

    def precreate_routes(self, routes: Iterable[tuple[str, str]]) -> None:
        """Create the 2xx and 5xx latency series of known (route template, method) pairs at 0.

        2xx lists every route from the start; 5xx lets an error-rate query see 0 rather than
        nothing. Other classes appear with their first request: pre-creating 4xx as well made
        the idle exposition 27% larger (152 kB rather than 120 kB; a series is 17 lines), and
        every scrape pays for its size in time on the event loop and in memory.
        """
        for route, method in routes:
            for status in PRECREATED_STATUS_CLASSES:
                self.http_request_duration.labels(route, method_label(method), status)
