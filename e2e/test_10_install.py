"""Install the chart, apply the sample NovelEngine, and use it through its Service."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import Cluster
from manifests import novel_engine, sample_spec, service_url
from options import E2EOptions
from providers import default_images
from scenarios import engine_metric, load_result, start_load, wait_ready

from novel_engine.loadgen import LoadPlan

SAMPLE = Path(__file__).resolve().parent.parent / "crds" / "examples" / "novelengine.yaml"


def engine_image(options: E2EOptions) -> str:
    return options.engine_image or default_images()[0]


def apply_sample(cluster: Cluster, namespace: str, options: E2EOptions) -> str:
    spec = sample_spec(SAMPLE.read_text(), options.engine_image)
    cluster.apply(novel_engine("demo", namespace, spec))
    return "demo"


def test_the_sample_becomes_ready(cluster: Cluster, namespace: str, options: E2EOptions) -> None:
    name = apply_sample(cluster, namespace, options)
    engine = wait_ready(cluster, name, namespace)
    status = engine["status"]
    assert status["readyReplicas"] == status["desiredReplicas"] >= 2
    assert status["endpoint"] == f"{name}.{namespace}.svc:8080"


@pytest.mark.real_pods
def test_simulations_through_the_service_share_the_redis_tier(
    cluster: Cluster, namespace: str, options: E2EOptions
) -> None:
    name = apply_sample(cluster, namespace, options)
    wait_ready(cluster, name, namespace)
    # One simulation asked 40 times on fresh connections: the Service spreads them over both
    # replicas, and the replica that did not compute it finds it in Redis.
    load = LoadPlan(
        url=service_url(name, namespace),
        duration_seconds=60,
        max_requests=40,
        concurrency=2,
        simulation_share=1.0,
        distinct=1,
    )
    start_load(cluster, namespace, engine_image(options), load)
    summary, _ = load_result(cluster, namespace)
    assert summary["failures"] == 0, summary
    assert summary["requests"] == 40
    l2_hits = engine_metric(
        cluster, name, namespace, "novel_engine_cache_requests_total", tier="l2", result="hit"
    )
    assert l2_hits >= 1
