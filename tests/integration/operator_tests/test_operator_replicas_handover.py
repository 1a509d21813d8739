"""Switching a NovelEngine from spec.replicas to an autoscaler keeps the running replicas: the
operator's apply stops setting them, and they must not fall back to the API default of 1."""

from __future__ import annotations

from typing import Any

import pytest
from harness import OPERATOR_USER, Cluster, StartOperator, wait_events, wait_reconciles
from testbed import Testbed

from novel_operator import names

pytestmark = pytest.mark.integration

ENGINE_TARGETS_ONLY = {"engine": {"inFlightPerPod": 8}}
CPU_TARGET = {"targetCPUUtilizationPercentage": 70}
VOLUME_PER_REPLICA = {"cache": {"l3": {"enabled": True, "persistence": "pvc"}}}


def workload(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    found = cluster.get("apps/v1", kind, namespace, name)
    assert found is not None, f"no {kind} {namespace}/{name}"
    return found


def replicas_since(
    cluster: Cluster, kind: str, namespace: str, name: str, resource_version: str
) -> list[int]:
    """spec.replicas of every version of the workload written after `resource_version`, replayed
    by a watch from there (none is missed, however briefly it lasted)."""
    resource = cluster.dynamic.resources.get(api_version="apps/v1", kind=kind)
    events = cluster.dynamic.watch(
        resource,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout=2,
    )
    return [int(event["raw_object"]["spec"]["replicas"]) for event in events]


def replicas_owners(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(manager, operation) of every managedFields entry that owns spec.replicas."""
    return {
        (entry["manager"], entry["operation"])
        for entry in obj["metadata"]["managedFields"]
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


def wait_observed(cluster: Cluster, namespace: str, name: str) -> None:
    """Wait until the operator has acted on the NovelEngine's current generation."""

    def check() -> str | None:
        obj = cluster.novelengine(namespace, name)
        assert obj is not None
        observed = (obj.get("status") or {}).get("observedGeneration")
        generation = obj["metadata"]["generation"]
        return None if observed == generation else f"observedGeneration {observed}"

    cluster.wait(f"NovelEngine {namespace}/{name} observed", check, 30)


@pytest.mark.parametrize(
    ("kind", "extra_spec", "targets"),
    [
        ("Deployment", {}, ENGINE_TARGETS_ONLY),
        ("Deployment", {}, CPU_TARGET),
        ("StatefulSet", VOLUME_PER_REPLICA, ENGINE_TARGETS_ONLY),
    ],
    ids=["deployment-engine-targets", "deployment-hpa", "statefulset-engine-targets"],
)
def test_enabling_autoscaling_keeps_the_running_replicas(
    testbed: Testbed,
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    kind: str,
    extra_spec: dict[str, Any],
    targets: dict[str, Any],
) -> None:
    ns, name = testbed_namespace, "handover"
    operator = start_operator("--namespace", ns, resync_seconds=0.5)
    cluster.create_novelengine(ns, name, {"replicas": 4, **extra_spec})
    if kind == "Deployment":
        # Pods of a StatefulSet wait for their volumes, which nothing provisions here.
        cluster.wait_ready(ns, name)
    else:
        wait_observed(cluster, ns, name)
    before = workload(cluster, kind, ns, name)
    assert before["spec"]["replicas"] == 4
    assert (names.FIELD_MANAGER, "Apply") in replicas_owners(before)

    autoscaling = {"enabled": True, "minReplicas": 2, "maxReplicas": 6, **targets}
    cluster.patch_novelengine(ns, name, {"spec": {"autoscaling": autoscaling}})
    wait_observed(cluster, ns, name)
    wait_reconciles(cluster, operator, 3)

    history = replicas_since(cluster, kind, ns, name, before["metadata"]["resourceVersion"])
    assert history, "the workload was not written at all"
    assert min(history) == 4, history
    after = workload(cluster, kind, ns, name)
    assert after["spec"]["replicas"] == 4
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    owners = replicas_owners(after)
    assert (names.FIELD_MANAGER, "Apply") not in owners
    assert (names.REPLICAS_HANDOVER_FIELD_MANAGER, "Apply") in owners
    has_hpa = cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", ns, name) is not None
    assert has_hpa is (targets is CPU_TARGET)

    # Converged in the new mode: resyncs write nothing (no handover again, no apply).
    mark = testbed.audit_mark()
    wait_reconciles(cluster, operator, 3)
    writes = testbed.audit_events(since=mark, user=OPERATOR_USER)
    assert writes == [], [(w.verb, w.resource, w.subresource, w.name) for w in writes]

    # Back to spec.replicas: the operator's apply owns and sets them again.
    disabled = {"replicas": 3, "autoscaling": {"enabled": False}}
    cluster.patch_novelengine(ns, name, {"spec": disabled})
    cluster.wait(
        f"{kind} back at spec.replicas 3",
        lambda: (
            None
            if (replicas := workload(cluster, kind, ns, name)["spec"]["replicas"]) == 3
            else f"replicas {replicas}"
        ),
        timeout=30,
    )
    owners = replicas_owners(workload(cluster, kind, ns, name))
    assert owners == {(names.FIELD_MANAGER, "Apply")}, owners


def test_a_parked_engine_given_an_hpa_starts_its_minimum_replicas(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    # The HPA never scales a workload at 0, so the replicas handed over from `replicas: 0`
    # would keep the engine parked under autoscaling for good.
    ns, name = testbed_namespace, "parked"
    start_operator("--namespace", ns, resync_seconds=0.5)
    cluster.create_novelengine(ns, name, {"replicas": 0})
    parked = cluster.wait_ready(ns, name)
    assert parked["status"]["replicas"] == 0

    autoscaling = {"enabled": True, "minReplicas": 2, "maxReplicas": 6, **CPU_TARGET}
    cluster.patch_novelengine(ns, name, {"spec": {"autoscaling": autoscaling}})
    started = cluster.wait_ready(ns, name)

    assert started["status"]["readyReplicas"] == 2
    assert workload(cluster, "Deployment", ns, name)["spec"]["replicas"] == 2
    scaled = f"Scaled Deployment/{name} from 0 to 2 replicas: below minReplicas 2"
    wait_events(cluster, ns, name, "Scaled", {scaled})
