"""A spec change and a content edit roll the engine pods while clients see no failed request."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cluster import Cluster, wait_for
from manifests import content_config_map, novel_engine, service_url
from options import E2EOptions
from scenarios import engine_pods, load_result, start_load, wait_ready
from test_10_install import engine_image

from novel_engine.loadgen import LoadPlan

CHARACTER = {"name": "Ada Quill", "faction": "Free Companies", "archetype": "engineer"}


def rolled(
    cluster: Cluster, name: str, namespace: str, before: set[str]
) -> Callable[[], bool | None]:
    """True once no pod from `before` is left and the NovelEngine is Ready again."""

    def check() -> bool | None:
        now = {pod["metadata"]["uid"] for pod in engine_pods(cluster, name, namespace)}
        return True if now and not now & before else None

    return check


def roll_under_load(
    cluster: Cluster, namespace: str, options: E2EOptions, change: Callable[[], None]
) -> None:
    name = "rolling"
    cluster.apply(content_config_map("rolling-content", namespace, [CHARACTER]))
    spec = {
        "replicas": 2,
        "content": {"configMapName": "rolling-content"},
        "cache": {"l2": {"mode": "managed"}},
    } | ({"image": options.engine_image} if options.engine_image else {})
    cluster.apply(novel_engine(name, namespace, spec))
    wait_ready(cluster, name, namespace)
    before = {pod["metadata"]["uid"] for pod in engine_pods(cluster, name, namespace)}
    start_load(
        cluster, namespace, engine_image(options),
        LoadPlan(
            url=service_url(name, namespace),
            duration_seconds=90, concurrency=4, simulation_share=0.3, distinct=20,
        ),
    )  # fmt: skip
    change()
    wait_for(
        "the pods to be replaced", rolled(cluster, name, namespace, before), timeout=300, every=2
    )
    wait_ready(cluster, name, namespace)
    summary, _ = load_result(cluster, namespace)
    print(f"\nload during the roll: {summary}")
    assert summary["requests"] > 0
    assert summary["failures"] == 0, summary


@pytest.mark.real_pods
def test_a_spec_change_rolls_without_failed_requests(
    cluster: Cluster, namespace: str, options: E2EOptions
) -> None:
    def change() -> None:
        cluster.patch_merge(
            "novelengine.io/v1alpha1", "NovelEngine", "rolling", namespace,
            {"spec": {"engine": {"logLevel": "DEBUG"}}},
        )  # fmt: skip

    roll_under_load(cluster, namespace, options, change)


@pytest.mark.real_pods
def test_a_content_edit_rolls_without_failed_requests(
    cluster: Cluster, namespace: str, options: E2EOptions
) -> None:
    def change() -> None:
        edited = CHARACTER | {"description": "Edited while the engine serves."}
        cluster.apply(content_config_map("rolling-content", namespace, [edited]))

    roll_under_load(cluster, namespace, options, change)
