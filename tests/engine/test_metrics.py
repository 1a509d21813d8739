"""The engine exports its contract metrics, with every known label set present at 0."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from novel_engine.metrics import (
    IN_FLIGHT_METRIC,
    QUEUE_DEPTH_METRIC,
    CacheStats,
    CacheTier,
    EngineMetrics,
    method_label,
    status_class,
)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_contract_names_exist_at_zero_on_a_fresh_registry() -> None:
    registry = CollectorRegistry()
    EngineMetrics(registry)
    assert sample(registry, IN_FLIGHT_METRIC) == 0
    for priority in ("critical", "high", "normal", "low"):
        assert sample(registry, QUEUE_DEPTH_METRIC, priority=priority) == 0
        for executor in ("inline", "thread", "process"):
            for phase in ("wait", "run"):
                labels = {"priority": priority, "executor": executor, "phase": phase}
                assert sample(registry, "novel_engine_scheduler_task_seconds_count", **labels) == 0
    assert sample(registry, "novel_engine_db_pool_wait_seconds_count") == 0
    assert sample(registry, "process_resident_memory_bytes") is not None


@pytest.mark.parametrize("tiers", [("l1",), ("l1", "l3"), ("l1", "l2", "l3"), ("l2",)])
def test_cache_series_are_those_of_the_tiers_the_engine_has(tiers: tuple[CacheTier, ...]) -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    for tier in tiers:
        metrics.track_cache(CacheStats(tier))
    for tier in ("l1", "l2", "l3"):
        for result in ("hit", "miss", "error"):
            requests = sample(
                registry, "novel_engine_cache_requests_total", tier=tier, result=result
            )
            assert requests == (0 if tier in tiers else None)
        # Redis evicts by itself and tells only its own INFO: no series says "none" for it.
        evictions = sample(registry, "novel_engine_cache_evictions_total", tier=tier)
        assert evictions == (0 if tier in tiers and tier != "l2" else None)


def test_cache_counters_are_read_at_scrape_time_and_summed_per_tier() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    first, second = CacheStats("l1"), CacheStats("l1")
    metrics.track_cache(first)
    metrics.track_cache(second)
    first.hits += 3
    second.hits += 2
    first.misses += 1
    second.evictions += 4
    assert sample(registry, "novel_engine_cache_requests_total", tier="l1", result="hit") == 5
    assert sample(registry, "novel_engine_cache_requests_total", tier="l1", result="miss") == 1
    assert sample(registry, "novel_engine_cache_evictions_total", tier="l1") == 4
    assert sample(registry, "novel_engine_cache_requests_total", tier="l2", result="hit") is None
    exposition = generate_latest(registry).decode()
    assert "# TYPE novel_engine_cache_requests_total counter" in exposition


def test_request_series_exist_before_the_first_request() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    count = "novel_engine_http_request_duration_seconds_count"
    metrics.precreate_routes([("/v1/simulations/{id}", "GET")])
    labels = {"route": "/v1/simulations/{id}", "method": "GET", "status_class": "5xx"}
    assert sample(registry, count, **labels) == 0
    assert sample(registry, count, **{**labels, "status_class": "2xx"}) == 0
    # a client error appears with the first one (test_api_ops)
    assert sample(registry, count, **{**labels, "status_class": "4xx"}) is None


def test_label_helpers() -> None:
    assert [status_class(s) for s in (101, 200, 204, 302, 404, 429, 503)] == [
        "1xx", "2xx", "2xx", "3xx", "4xx", "4xx", "5xx",
    ]  # fmt: skip
    assert status_class(999) == "5xx"
    assert method_label("PATCH") == "PATCH"
    assert method_label("PROPFIND") == "other"


def test_two_apps_can_have_separate_registries() -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    EngineMetrics(one).http_in_flight.inc()
    EngineMetrics(two)
    assert sample(one, IN_FLIGHT_METRIC) == 1
    assert sample(two, IN_FLIGHT_METRIC) == 0


def test_plain_histogram_exports_cumulative_buckets() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    series = metrics.scheduler_task_seconds.labels("low", "inline", "run")
    for seconds in (0.003, 0.005, 500.0):
        series.observe(seconds)
    labels = {"priority": "low", "executor": "inline", "phase": "run"}
    name = "novel_engine_scheduler_task_seconds"
    assert sample(registry, f"{name}_bucket", le="0.001", **labels) == 0
    assert sample(registry, f"{name}_bucket", le="0.005", **labels) == 2  # bounds are inclusive
    assert sample(registry, f"{name}_bucket", le="120.0", **labels) == 2
    assert sample(registry, f"{name}_bucket", le="+Inf", **labels) == 3
    assert sample(registry, f"{name}_count", **labels) == 3
    assert sample(registry, f"{name}_sum", **labels) == pytest.approx(500.008)
    assert f"# TYPE {name} histogram" in generate_latest(registry).decode()
    with pytest.raises(ValueError, match="takes labels"):
        metrics.scheduler_task_seconds.labels("low")


def test_plain_counter_counts() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    metrics.scheduler_tasks.labels("thread", "error").inc()
    metrics.scheduler_tasks.labels("thread", "error").inc(2)
    name = "novel_engine_scheduler_tasks_total"
    assert sample(registry, name, executor="thread", outcome="error") == 3
    assert sample(registry, name, executor="thread", outcome="ok") == 0
