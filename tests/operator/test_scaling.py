"""The operator's scaler without metrics: replicas kept within [minReplicas, maxReplicas]."""

from datetime import UTC, datetime

import pytest
from operator_samples import spec_of

from novel_operator.model import AutoscalingStatus
from novel_operator.scaling import ScaleDecision, ScaleReason, bounds_status, clamp_replicas

ENGINE_TARGETS_ONLY = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 5,
        "engine": {"inFlightPerPod": 8},
    }
}
NOW = datetime(2026, 5, 1, 12, 0, 30, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (0, ScaleDecision(0, 3, ScaleReason.BELOW_MIN_REPLICAS)),
        (1, ScaleDecision(1, 3, ScaleReason.BELOW_MIN_REPLICAS)),
        (3, None),
        (4, None),
        (5, None),
        (9, ScaleDecision(9, 5, ScaleReason.ABOVE_MAX_REPLICAS)),
    ],
)
def test_replicas_outside_the_bounds_go_to_the_nearest_bound(
    current: int, expected: ScaleDecision | None
) -> None:
    assert clamp_replicas(current, spec_of(ENGINE_TARGETS_ONLY)) == expected


@pytest.mark.parametrize(
    "spec",
    [
        {"replicas": 1},  # replicas follow spec.replicas
        {  # an HPA owns replicas
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "targetCPUUtilizationPercentage": 70,
                "engine": {"inFlightPerPod": 8},
            }
        },
    ],
    ids=["spec", "hpa"],
)
def test_nothing_is_decided_while_the_operator_does_not_own_replicas(
    spec: dict[str, object],
) -> None:
    assert clamp_replicas(1, spec_of(spec)) is None


def test_a_decision_says_why_in_words() -> None:
    assert (
        ScaleDecision(1, 3, ScaleReason.BELOW_MIN_REPLICAS).describe()
        == "from 1 to 3 replicas: below minReplicas 3"
    )
    assert (
        ScaleDecision(9, 5, ScaleReason.ABOVE_MAX_REPLICAS).describe()
        == "from 9 to 5 replicas: above maxReplicas 5"
    )


def test_a_scale_sets_the_recommendation_and_the_time_to_the_second() -> None:
    decision = ScaleDecision(9, 5, ScaleReason.ABOVE_MAX_REPLICAS)

    status = bounds_status(9, decision, None, NOW)

    assert status == AutoscalingStatus(
        recommended_replicas=5, last_scale_time=datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
    )
    assert status.floor is None  # the floor is the HPA's minReplicas: HPA mode only


def test_within_the_bounds_the_count_is_recommended_and_the_last_scale_time_kept() -> None:
    previous = bounds_status(1, ScaleDecision(1, 3, ScaleReason.BELOW_MIN_REPLICAS), None, NOW)

    status = bounds_status(4, None, previous, datetime(2026, 5, 2, tzinfo=UTC))

    assert status == AutoscalingStatus(
        recommended_replicas=4, last_scale_time=previous.last_scale_time
    )
    assert bounds_status(4, None, status, NOW) == status  # a steady state writes no status
    assert bounds_status(3, None, None, NOW).last_scale_time is None
