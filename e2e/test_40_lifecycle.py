"""The operator killed mid-way converges; a deleted NovelEngine takes every child with it."""

from __future__ import annotations

from cluster import Cluster, wait_for
from conftest import Operator
from manifests import novel_engine
from scenarios import NE, wait_ready

from novel_operator import names
from novel_operator.builders import child_refs


def children(cluster: Cluster, name: str, namespace: str) -> list[str]:
    """Every child of NovelEngine `name` that exists, as Kind/name."""
    return [
        f"{ref.kind}/{ref.name}"
        for ref in child_refs(name)
        if cluster.get(ref.api_version, ref.kind, ref.name, namespace) is not None
    ]


def test_the_operator_killed_mid_way_converges(
    cluster: Cluster, namespace: str, release: Operator
) -> None:
    spec = {"replicas": 2, "cache": {"l2": {"mode": "managed"}}}
    cluster.apply(novel_engine("restart", namespace, spec))
    release.restart()  # right after the apply: it may die during the first reconcile
    engine = wait_ready(cluster, "restart", namespace)
    assert engine["status"]["readyReplicas"] == 2
    # A change made while it was down is picked up too.
    cluster.patch_merge(*NE, "restart", namespace, {"spec": {"replicas": 3}})
    release.restart()
    engine = wait_ready(cluster, "restart", namespace)
    assert engine["status"]["readyReplicas"] == 3
    deployments = cluster.list("apps/v1", "Deployment", namespace)
    assert sorted(d["metadata"]["name"] for d in deployments) == ["restart", "restart-redis"]


def test_deleting_a_novelengine_removes_every_child(cluster: Cluster, namespace: str) -> None:
    spec = {
        "replicas": 2,
        "cache": {"l2": {"mode": "managed"}},
        "networkPolicy": {"enabled": True},
    }
    cluster.apply(novel_engine("doomed", namespace, spec))
    wait_ready(cluster, "doomed", namespace)
    assert len(children(cluster, "doomed", namespace)) >= 7
    cluster.delete(*NE, "doomed", namespace)

    def all_gone() -> bool | None:
        return True if not children(cluster, "doomed", namespace) else None

    wait_for("every child of doomed to be deleted", all_gone, timeout=120)
    selector = f"{names.LABEL_INSTANCE}=doomed"
    assert cluster.list("v1", "Pod", namespace, selector) == []
