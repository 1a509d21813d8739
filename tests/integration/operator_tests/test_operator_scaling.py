"""Autoscaling on engine targets only (no HPA): the operator keeps the workload's replicas
within [minReplicas, maxReplicas] through the scale subresource, and leaves counts within the
bounds alone."""

from __future__ import annotations

from typing import Any

import pytest
from harness import OPERATOR_USER, Cluster, OperatorProcess, StartOperator, wait_reconciles
from testbed import Testbed

pytestmark = pytest.mark.integration

DEPLOYMENT = ("apps/v1", "Deployment")
SPEC = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 5,
        "engine": {"inFlightPerPod": 8, "queueDepthPerPod": 20},
    }
}


def wait_replicas(cluster: Cluster, namespace: str, name: str, replicas: int) -> None:
    """Wait for the Deployment to ask for `replicas` and have that many ready pods."""

    def check() -> str | None:
        deployment = cluster.get(*DEPLOYMENT, namespace, name)
        if deployment is None:
            return "no Deployment"
        wanted = deployment["spec"]["replicas"]
        ready = (deployment.get("status") or {}).get("readyReplicas", 0)
        return None if wanted == ready == replicas else f"replicas {wanted}, ready {ready}"

    cluster.wait(f"Deployment {namespace}/{name} at {replicas} ready replicas", check, 60)


def scaled_messages(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [
        str(event["message"])
        for event in cluster.events(namespace, name)
        if event["reason"] == "Scaled"
    ]


def scale_decisions(operator: OperatorProcess) -> dict[str, float]:
    prefix = "novel_operator_scale_decisions_total{"
    return {key: value for key, value in operator.metrics().items() if key.startswith(prefix)}


def autoscaling_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.novelengine(namespace, name)
    assert obj is not None
    return dict((obj.get("status") or {}).get("autoscaling") or {})


def test_replicas_are_kept_within_the_bounds_and_left_alone_inside_them(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "bounded"
    operator = start_operator("--namespace", ns, resync_seconds=0.5)
    cluster.create_novelengine(ns, name, SPEC)

    wait_replicas(cluster, ns, name, 3)
    obj = cluster.wait_ready(ns, name)
    assert cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", ns, name) is None
    assert obj["status"]["desiredReplicas"] == 3
    started = autoscaling_status(cluster, ns, name)
    assert started["recommendedReplicas"] == 3
    assert "lastScaleTime" in started
    assert "floor" not in started
    cluster.wait(
        "the Scaled Event",
        lambda: None if scaled_messages(cluster, ns, name) else "no Scaled Event",
        timeout=10,
    )
    assert scaled_messages(cluster, ns, name) == [
        f"Scaled Deployment/{name} from 1 to 3 replicas: below minReplicas 3"
    ]

    cluster.scale(*DEPLOYMENT, ns, name, 9)
    wait_replicas(cluster, ns, name, 5)
    cluster.wait_ready(ns, name)
    assert autoscaling_status(cluster, ns, name)["recommendedReplicas"] == 5
    cluster.wait(
        "the second Scaled Event",
        lambda: None if len(scaled_messages(cluster, ns, name)) == 2 else "one Scaled Event",
        timeout=10,
    )
    assert scaled_messages(cluster, ns, name)[1] == (
        f"Scaled Deployment/{name} from 9 to 5 replicas: above maxReplicas 5"
    )

    mark = testbed.audit_mark()
    cluster.scale(*DEPLOYMENT, ns, name, 4)
    wait_replicas(cluster, ns, name, 4)
    cluster.wait_ready(ns, name)
    wait_reconciles(cluster, operator, 3)
    deployment = cluster.get(*DEPLOYMENT, ns, name)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 4
    writes = testbed.audit_events(since=mark, user=OPERATOR_USER, resource="deployments")
    assert writes == [], [(w.verb, w.subresource, w.name) for w in writes]
    assert autoscaling_status(cluster, ns, name)["recommendedReplicas"] == 4
    assert scale_decisions(operator) == {
        'novel_operator_scale_decisions_total{reason="below_min_replicas"}': 1.0,
        'novel_operator_scale_decisions_total{reason="above_max_replicas"}': 1.0,
    }
    assert (
        operator.metrics()[
            'novel_operator_api_writes_total{resource="deployments/scale",verb="patch"}'
        ]
        == 2
    )
