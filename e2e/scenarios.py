"""Steps the scenarios share: apply a NovelEngine and wait for it, run a load Job, read the
engines' metrics through the API server."""

from __future__ import annotations

import json
from typing import Any

from cluster import Cluster, condition, wait_for
from manifests import load_job
from prometheus_client.parser import text_string_to_metric_families

from novel_engine.loadgen import LoadPlan
from novel_operator import names

NE = (names.API_VERSION, names.KIND)


def ready_generation(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    """The NovelEngine once Ready=True for its current generation, else None."""
    found = cluster.get(*NE, name, namespace)
    ready = condition(found, names.CONDITION_READY)
    if found is None or ready is None or ready.get("status") != "True":
        return None
    generation = found["metadata"].get("generation")
    return found if found["status"].get("observedGeneration") == generation else None


def wait_ready(cluster: Cluster, name: str, namespace: str, timeout: float = 300) -> dict[str, Any]:
    return wait_for(
        f"NovelEngine {namespace}/{name} Ready",
        lambda: ready_generation(cluster, name, namespace),
        timeout,
    )


def start_load(
    cluster: Cluster, namespace: str, image: str, plan: LoadPlan, name: str = "load"
) -> None:
    """Start a load Job with `plan` (returns at once); see `load_result`."""
    cluster.apply(load_job(name, namespace, image, plan))


def load_result(
    cluster: Cluster, namespace: str, name: str = "load", timeout: float = 600
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait for load Job `name` to finish; its summary line and its interval lines."""

    def finished() -> bool | None:
        job = cluster.get("batch/v1", "Job", name, namespace) or {}
        status = job.get("status") or {}
        return True if status.get("succeeded") or status.get("failed") else None

    wait_for(f"load Job {name} to finish", finished, timeout, every=2)
    lines = [
        json.loads(line)
        for line in cluster.job_output(name, namespace).splitlines()
        if line.startswith("{")
    ]
    summaries = [line for line in lines if line.get("summary")]
    assert summaries, f"load Job {name} printed no summary: {lines}"
    return summaries[-1], [line for line in lines if line.get("interval")]


def engine_pods(cluster: Cluster, instance: str, namespace: str) -> list[dict[str, Any]]:
    selector = names.selector_string(names.engine_selector(instance))
    return cluster.list("v1", "Pod", namespace, selector)


def engine_metric(
    cluster: Cluster, instance: str, namespace: str, sample: str, **labels: str
) -> float:
    """`sample` summed over every running engine pod, read from /metrics through the API
    server's pod proxy."""
    total = 0.0
    for pod in engine_pods(cluster, instance, namespace):
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        text = cluster.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod['metadata']['name']}:{names.ENGINE_PORT}", namespace, "metrics"
        )
        for family in text_string_to_metric_families(text):
            for found in family.samples:
                if found.name == sample and all(
                    found.labels.get(k) == v for k, v in labels.items()
                ):
                    total += found.value
    return total
