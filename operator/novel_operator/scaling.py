"""Replica decisions of the operator's own scaler (engine targets only, no HPA): pure.

Without engine metrics the scaler keeps the workload's replicas within
[minReplicas, maxReplicas]; any count inside the bounds is left as it is.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from novel_operator.model import AutoscalingStatus, NovelEngineSpec


class ScaleReason(StrEnum):
    """Why the scaler changed replicas (the label of the scale-decision counter)."""

    BELOW_MIN_REPLICAS = "below_min_replicas"
    ABOVE_MAX_REPLICAS = "above_max_replicas"

    def describe(self, bound: int) -> str:
        """`below minReplicas 3`, as Events say it."""
        if self is ScaleReason.BELOW_MIN_REPLICAS:
            return f"below minReplicas {bound}"
        return f"above maxReplicas {bound}"


@dataclass(frozen=True)
class ScaleDecision:
    """Set the workload's replicas from `current` to `target`, for `reason`."""

    current: int
    target: int
    reason: ScaleReason

    def describe(self) -> str:
        return f"from {self.current} to {self.target} replicas: {self.reason.describe(self.target)}"


def clamp_replicas(current: int, spec: NovelEngineSpec) -> ScaleDecision | None:
    """The change that brings `current` replicas within the autoscaling bounds, or None when the
    operator does not own replicas (`replicas_writer` is not `operator`) or they are within."""
    if spec.replicas_writer != "operator":
        return None
    autoscaling = spec.autoscaling
    if current < autoscaling.min_replicas:
        return ScaleDecision(current, autoscaling.min_replicas, ScaleReason.BELOW_MIN_REPLICAS)
    if current > autoscaling.max_replicas:
        return ScaleDecision(current, autoscaling.max_replicas, ScaleReason.ABOVE_MAX_REPLICAS)
    return None


def bounds_status(
    current: int,
    decision: ScaleDecision | None,
    previous: AutoscalingStatus | None,
    now: datetime,
) -> AutoscalingStatus:
    """status.autoscaling while only the bounds are enforced: the recommendation is the clamped
    replica count, `lastScaleTime` moves only when the scaler changed replicas. There are no
    metric averages yet, and no floor (that is the HPA's minReplicas, in HPA mode only)."""
    if decision is None:
        last_scale_time = previous.last_scale_time if previous is not None else None
        return AutoscalingStatus(recommended_replicas=current, last_scale_time=last_scale_time)
    return AutoscalingStatus(
        recommended_replicas=decision.target,
        last_scale_time=now.replace(microsecond=0),  # Kubernetes times have second precision
    )
