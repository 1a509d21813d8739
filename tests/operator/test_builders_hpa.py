"""The HPA: only for CPU/memory targets, on the workload, with the spec's behavior and the floor."""

from typing import Any

import pytest
from operator_samples import OWNER, spec_of

from novel_operator.builders.hpa import build_hpa

CPU = {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70}


def hpa(autoscaling: dict[str, Any], floor: int | None = None, **spec: Any) -> Any:
    return build_hpa(OWNER, spec_of({"autoscaling": autoscaling, **spec}), floor=floor)


@pytest.mark.parametrize(
    "autoscaling",
    [
        {},
        {"targetCPUUtilizationPercentage": 70},  # targets, but autoscaling disabled
        {"enabled": True, "engine": {"inFlightPerPod": 10}},  # the operator scales itself
        {"enabled": True, "engine": {"queueDepthPerPod": 10}},
    ],
    ids=["disabled", "disabled-with-target", "in-flight-only", "queue-only"],
)
def test_no_hpa_without_an_enabled_cpu_or_memory_target(autoscaling: dict[str, Any]) -> None:
    assert hpa(autoscaling) is None


def test_cpu_and_memory_targets_become_resource_metrics() -> None:
    built = hpa({**CPU, "targetMemoryUtilizationPercentage": 80})

    assert built["apiVersion"] == "autoscaling/v2"
    assert built["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        },
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        },
    ]
    assert (built["spec"]["minReplicas"], built["spec"]["maxReplicas"]) == (2, 6)
    assert "behavior" not in built["spec"]


@pytest.mark.parametrize(
    ("l3", "kind"), [({}, "Deployment"), ({"persistence": "pvc"}, "StatefulSet")]
)
def test_the_hpa_targets_the_engine_workload(l3: dict[str, Any], kind: str) -> None:
    built = hpa(CPU, cache={"l3": l3})

    assert built["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": "demo",
    }


def test_behavior_is_passed_through() -> None:
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max"},
        "scaleDown": {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
    }

    assert hpa({**CPU, "behavior": behavior})["spec"]["behavior"] == behavior


@pytest.mark.parametrize(
    ("floor", "min_replicas"),
    [(None, 2), (1, 2), (4, 4), (9, 6)],
    ids=["no-floor", "below-spec-minimum", "raises", "capped-at-max"],
)
def test_the_engine_metric_floor_raises_min_replicas(floor: int | None, min_replicas: int) -> None:
    assert hpa(CPU, floor=floor)["spec"]["minReplicas"] == min_replicas
