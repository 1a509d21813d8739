"""The PodDisruptionBudget: never over a single replica, where it would block node drains."""

from typing import Any

import pytest
from operator_samples import OWNER, spec_of

from novel_operator.builders.pdb import build_pdb

TARGET = {"engine": {"inFlightPerPod": 5}}


@pytest.mark.parametrize(
    ("data", "exists"),
    [
        ({"replicas": 0}, False),
        ({"replicas": 1}, False),
        ({"replicas": 2}, True),
        ({"replicas": 5, "disruptionBudget": {"enabled": False}}, False),
        # Autoscaling decides by its minimum, whatever spec.replicas says.
        ({"replicas": 5, "autoscaling": {"enabled": True, "minReplicas": 1, **TARGET}}, False),
        ({"replicas": 1, "autoscaling": {"enabled": True, "minReplicas": 2, **TARGET}}, True),
    ],
    ids=["zero", "one", "two", "disabled", "autoscaled-min-1", "autoscaled-min-2"],
)
def test_a_budget_only_from_two_replicas(data: dict[str, Any], exists: bool) -> None:
    assert (build_pdb(OWNER, spec_of(data)) is not None) is exists


@pytest.mark.parametrize("max_unavailable", [1, 2, "25%"])
def test_the_budget_selects_the_engine_pods(max_unavailable: int | str) -> None:
    budget = build_pdb(
        OWNER, spec_of({"replicas": 3, "disruptionBudget": {"maxUnavailable": max_unavailable}})
    )

    assert budget is not None
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"] == {
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "novel-engine",
                "app.kubernetes.io/instance": "demo",
            }
        },
        "maxUnavailable": max_unavailable,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
