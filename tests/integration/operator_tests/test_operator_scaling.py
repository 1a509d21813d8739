"""Autoscaling on engine targets only (no HPA), without any engine metric (no engine answers
the scrapes): the operator keeps the workload's replicas within [minReplicas, maxReplicas]
through the scale subresource, and leaves counts within the bounds alone."""

from __future__ import annotations

import pytest
from harness import (
    DEPLOYMENT,
    OPERATOR_USER,
    Cluster,
    StartOperator,
    autoscaling_status,
    scale_decisions,
    scaled_messages,
    wait_reconciles,
    wait_replicas,
)
from testbed import Testbed

pytestmark = pytest.mark.integration

SPEC = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 5,
        "engine": {"inFlightPerPod": 8, "queueDepthPerPod": 20},
        "syncPeriodSeconds": 1,
    }
}


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
    cluster.wait(
        "the recommendation at 4",
        lambda: (
            None
            if autoscaling_status(cluster, ns, name)["recommendedReplicas"] == 4
            else str(autoscaling_status(cluster, ns, name))
        ),
        timeout=10,
    )
    assert {key: value for key, value in scale_decisions(operator).items() if value} == {
        'novel_operator_scale_decisions_total{reason="below_min_replicas",target="replicas"}': 1.0,
        'novel_operator_scale_decisions_total{reason="above_max_replicas",target="replicas"}': 1.0,
    }
    assert (
        operator.metrics()[
            'novel_operator_api_writes_total{resource="deployments/scale",verb="patch"}'
        ]
        == 2
    )
