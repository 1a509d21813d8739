"""Replica decisions of the engine-metric autoscaler: the HPA v2 algorithm, pure.

No I/O and no clock: the caller passes the pods' readings, the time (seconds) and the
`History` of past recommendations and changes, which it keeps between syncs. The rules are the
Kubernetes HPA controller's (pkg/controller/podautoscaler: replica_calculator.go
`calcPlainMetricReplicas`, horizontal.go `stabilizeRecommendationWithBehaviors` and
`convertDesiredReplicasWithBehaviorRate`), applied to per-pod averages of engine metrics:

- per metric, `ceil(pods * average / target)`, no change while `|average / target - 1| <= 0.1`;
- ready pods whose scrape failed ("missing") count as the target on a scale-down and as 0 on a
  scale-up; pods that are not ready count as 0 on a scale-up and are ignored otherwise; the
  ratio is then recomputed, and nothing moves if it falls within the tolerance or flips
  direction (so missing data never scales down, and never drives a scale-up);
- the largest proposal over the metrics wins;
- stabilisation: the highest recommendation within the scale-down window, the lowest within
  the scale-up window (HPA defaults 300 s and 0 s);
- the behavior policies (`Pods` / `Percent` per period, `selectPolicy` Max / Min / Disabled)
  limit the change against the replicas at the start of each period, counted over the history
  of past changes (HPA defaults: up, the larger of 4 pods and 100% per 15 s; down, 100% per
  15 s);
- the result lies within [minReplicas, maxReplicas]. A count outside them goes straight to the
  nearest bound, as the HPA does.

Exact fractions, not floats, so the rounding is the HPA's and never an artefact.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Literal, Self

from novel_operator import names
from novel_operator.model import (
    AutoscalingSpec,
    AutoscalingStatus,
    Condition,
    NovelEngineSpec,
    ScalingPolicy,
    ScalingRules,
)

TOLERANCE = Fraction(1, 10)
DEFAULT_SCALE_UP_WINDOW = 0
DEFAULT_SCALE_DOWN_WINDOW = 300
DEFAULT_SCALE_UP_POLICIES = (
    ScalingPolicy(type="Pods", value=4, period_seconds=15),
    ScalingPolicy(type="Percent", value=100, period_seconds=15),
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy(type="Percent", value=100, period_seconds=15),)
SelectPolicy = Literal["Max", "Min", "Disabled"]


class EngineMetric(StrEnum):
    """An engine metric the autoscaler averages per pod (values name the spec/status fields)."""

    IN_FLIGHT = "inFlightPerPod"
    QUEUE_DEPTH = "queueDepthPerPod"

    def describe(self) -> str:
        return "in-flight requests" if self is EngineMetric.IN_FLIGHT else "queued tasks"


class ScaleTarget(StrEnum):
    """What a scale decision set: the workload's replicas, or the HPA's minReplicas."""

    REPLICAS = "replicas"
    FLOOR = "floor"


class SyncResult(StrEnum):
    """How one autoscaler sync of a NovelEngine ended (the label of the sync counter)."""

    OK = "ok"
    NO_METRICS = "no_metrics"  # no ready pod to scrape
    SCRAPE_FAILED = "scrape_failed"  # no ready pod answered with the metrics
    ERROR = "error"  # the Kubernetes API failed; retried at the next sync


class ScaleReason(StrEnum):
    """Why replicas or the floor changed (the label of the scale-decision counter)."""

    BELOW_MIN_REPLICAS = "below_min_replicas"
    ABOVE_MAX_REPLICAS = "above_max_replicas"
    IN_FLIGHT = "in_flight_per_pod"
    QUEUE_DEPTH = "queue_depth_per_pod"

    @classmethod
    def of(cls, metric: EngineMetric) -> "ScaleReason":
        return cls.IN_FLIGHT if metric is EngineMetric.IN_FLIGHT else cls.QUEUE_DEPTH


@dataclass(frozen=True)
class ScaleDecision:
    """Set the workload's replicas from `current` to `target`, for `reason`."""

    current: int
    target: int
    reason: ScaleReason

    def describe(self) -> str:
        return f"from {self.current} to {self.target} replicas: {self.explain()}"

    def explain(self) -> str:
        if self.reason is ScaleReason.BELOW_MIN_REPLICAS:
            return f"below minReplicas {self.target}"
        return f"above maxReplicas {self.target}"


def clamp_replicas(current: int, spec: NovelEngineSpec) -> ScaleDecision | None:
    """The change that brings `current` replicas within the autoscaling bounds, or None when
    they are within or are not the operator's to bound. The operator's scaler bounds them
    always; under an HPA only 0 is lifted, to minReplicas: the HPA turns its own scaling off
    for a workload at 0 (for instance one handed over from `replicas: 0`), so it would stay
    there, and it moves any other count into its bounds itself."""
    if spec.replicas_writer == "spec" or (spec.replicas_writer == "hpa" and current != 0):
        return None
    bound = _bound(current, spec.autoscaling)
    return None if bound is None else ScaleDecision(current, bound[0], bound[1])


def _bound(current: int, autoscaling: AutoscalingSpec) -> tuple[int, ScaleReason] | None:
    if current < autoscaling.min_replicas:
        return autoscaling.min_replicas, ScaleReason.BELOW_MIN_REPLICAS
    if current > autoscaling.max_replicas:
        return autoscaling.max_replicas, ScaleReason.ABOVE_MAX_REPLICAS
    return None


# --- Proposals from metrics ---------------------------------------------------------------------


@dataclass(frozen=True)
class PodReadings:
    """What one scrape round found for one metric or for all: `values` of the ready pods that
    answered, `missing` ready pods whose scrape failed, `unready` pods not ready yet (not
    scraped). Terminating pods are left out by the caller, as the HPA ignores them."""

    values: Mapping[EngineMetric, Sequence[float]]
    missing: int = 0
    unready: int = 0


def metric_proposal(
    replicas: int, values: Sequence[float], missing: int, unready: int, target: int
) -> int | None:
    """The replicas one metric calls for (`calcPlainMetricReplicas`); None without a value."""
    if not values:
        return None
    ratio = _mean(values) / target
    scale_up_with_unready = unready > 0 and ratio > 1
    if not scale_up_with_unready and missing == 0:
        if abs(1 - ratio) <= TOLERANCE:
            return replicas
        return math.ceil(ratio * len(values))
    filled = [Fraction(value) for value in values]
    # Missing pods count as the target on a scale-down (the HPA: ratio < 1; at exactly 1 too,
    # so that missing data can never start a scale-down) and as 0 on a scale-up.
    filled += [Fraction(target) if ratio <= 1 else Fraction(0)] * missing
    if scale_up_with_unready:
        filled += [Fraction(0)] * unready
    new_ratio = _mean(filled) / target
    if abs(1 - new_ratio) <= TOLERANCE or (ratio < 1 < new_ratio) or (new_ratio < 1 < ratio):
        return replicas
    proposal = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1 and proposal > replicas) or (new_ratio > 1 and proposal < replicas):
        return replicas
    return proposal


def _mean(values: Sequence[float | Fraction]) -> Fraction:
    return sum((Fraction(value) for value in values), Fraction(0)) / len(values)


def targets(autoscaling: AutoscalingSpec) -> dict[EngineMetric, int]:
    """The engine targets the spec sets, by metric."""
    found = {
        EngineMetric.IN_FLIGHT: autoscaling.engine.in_flight_per_pod,
        EngineMetric.QUEUE_DEPTH: autoscaling.engine.queue_depth_per_pod,
    }
    return {metric: target for metric, target in found.items() if target is not None}


def averages(readings: PodReadings, metrics: Iterable[EngineMetric]) -> dict[EngineMetric, float]:
    """Average of each metric over the ready pods that answered (what the status reports)."""
    return {
        metric: float(_mean(readings.values[metric]))
        for metric in metrics
        if readings.values.get(metric)
    }


# --- History and behavior -----------------------------------------------------------------------


@dataclass
class History:
    """What one NovelEngine's scaler remembers between syncs: recommendations (for the
    stabilisation windows) and past changes (for the rate policies), as (seconds, replicas)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)
    scale_downs: list[tuple[float, int]] = field(default_factory=list)

    def record_change(self, now: float, before: int, after: int) -> None:
        if after > before:
            self.scale_ups.append((now, after - before))
        elif after < before:
            self.scale_downs.append((now, before - after))

    def forget_before(self, cutoff: float) -> None:
        """Drop what no window or policy period can reach any more."""
        for entries in (self.recommendations, self.scale_ups, self.scale_downs):
            entries[:] = [entry for entry in entries if entry[0] > cutoff]


@dataclass(frozen=True)
class Rules:
    """One direction's behavior with the HPA's defaults filled in."""

    window: int
    select: SelectPolicy
    policies: tuple[ScalingPolicy, ...]


def rules_of(autoscaling: AutoscalingSpec) -> tuple[Rules, Rules]:
    """(scale-up, scale-down) rules: the spec's behavior, unset fields from the HPA defaults."""
    behavior = autoscaling.behavior
    return (
        _rules(behavior.scale_up, DEFAULT_SCALE_UP_WINDOW, DEFAULT_SCALE_UP_POLICIES),
        _rules(behavior.scale_down, DEFAULT_SCALE_DOWN_WINDOW, DEFAULT_SCALE_DOWN_POLICIES),
    )


def _rules(given: ScalingRules | None, window: int, policies: tuple[ScalingPolicy, ...]) -> Rules:
    if given is None:
        return Rules(window, "Max", policies)
    return Rules(
        window
        if given.stabilization_window_seconds is None
        else given.stabilization_window_seconds,
        given.select_policy or "Max",
        policies if given.policies is None else tuple(given.policies),
    )


def _change_within(period: int, events: Iterable[tuple[float, int]], now: float) -> int:
    cutoff = now - period
    return sum(change for at, change in events if at > cutoff)


def _period_start(current: int, history: History, policy: ScalingPolicy, now: float) -> int:
    """The replicas before the changes made within the policy's period."""
    return (
        current
        - _change_within(policy.period_seconds, history.scale_ups, now)
        + _change_within(policy.period_seconds, history.scale_downs, now)
    )


def policy_limit(
    direction: Literal["up", "down"], current: int, history: History, rules: Rules, now: float
) -> int:
    """Most (up) or fewest (down) replicas the policies allow now: the HPA's
    `calculateScaleUpLimitWithScalingRules` and `calculateScaleDownLimitWithBehaviors`."""
    if rules.select == "Disabled" or not rules.policies:
        return current
    up = direction == "up"
    limits = []
    for policy in rules.policies:
        start = _period_start(current, history, policy, now)
        if policy.type == "Pods":
            limits.append(start + policy.value if up else start - policy.value)
        elif up:  # rounded up, or a small percentage would never add a pod
            limits.append(math.ceil(start * (1 + Fraction(policy.value, 100))))
        else:
            limits.append(math.floor(start * (1 - Fraction(policy.value, 100))))
    largest_change = max if up else min
    smallest_change = min if up else max
    return largest_change(limits) if rules.select == "Max" else smallest_change(limits)


# --- The decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """One sync's outcome. `desired` is where the scaled value (replicas, or the HPA's floor)
    goes now; `proposal` what the metrics alone call for (None: no metric could be read) and
    `metric` the one that won; `averages` per metric over the pods that answered."""

    current: int
    desired: int
    proposal: int | None
    metric: EngineMetric | None
    averages: dict[EngineMetric, float]
    bound: ScaleReason | None = None  # set when `current` was outside [min, max]

    @property
    def reason(self) -> ScaleReason | None:
        """Why `desired` differs from `current` (None when it does not)."""
        if self.desired == self.current:
            return None
        if self.bound is not None:
            return self.bound
        return ScaleReason.of(self.metric) if self.metric is not None else None

    def explain(self, autoscaling: AutoscalingSpec) -> str:
        """`in-flight requests 25 per pod, target 8`: the metric behind the change, in words."""
        if self.bound is ScaleReason.BELOW_MIN_REPLICAS:
            return f"below minReplicas {autoscaling.min_replicas}"
        if self.bound is ScaleReason.ABOVE_MAX_REPLICAS:
            return f"above maxReplicas {autoscaling.max_replicas}"
        if self.metric is None:
            return "no metrics"
        target = targets(autoscaling)[self.metric]
        average = self.averages.get(self.metric, 0.0)
        return f"{self.metric.describe()} {average:g} per pod, target {target}"


def recommend(
    autoscaling: AutoscalingSpec,
    *,
    replicas: int,
    current: int,
    readings: PodReadings,
    history: History,
    now: float,
) -> Recommendation:
    """What the scaled value should be now.

    `replicas` is the workload's replica count (the base of the metric proposals, as the HPA
    computes them); `current` the value this scaler sets: the same replicas in engine-only
    mode, the HPA's floor in HPA mode. The metric proposal is recorded in `history` (the caller
    records the change it makes with `History.record_change`)."""
    wanted = targets(autoscaling)
    seen = averages(readings, wanted)
    if replicas == 0:  # the HPA does not scale a workload parked at zero either
        return Recommendation(current, current, None, None, seen)
    bound = _bound(current, autoscaling)
    if bound is not None:
        return Recommendation(current, bound[0], None, None, seen, bound[1])
    proposals = {
        metric: proposal
        for metric, target in wanted.items()
        if (
            proposal := metric_proposal(
                replicas,
                readings.values.get(metric, ()),
                readings.missing,
                readings.unready,
                target,
            )
        )
        is not None
    }
    if not proposals:
        return Recommendation(current, current, None, None, seen)
    metric = max(proposals, key=lambda name: proposals[name])
    proposal = proposals[metric]
    up, down = rules_of(autoscaling)
    if not history.recommendations:
        # As the HPA after a restart: the scale-down window starts full of the current value.
        history.recommendations.append((now, current))
    stabilized = _stabilize(history, proposal, current, now, up.window, down.window)
    history.recommendations.append((now, proposal))
    desired = _within_policies(stabilized, current, history, up, down, autoscaling, now)
    longest = max(
        [up.window, down.window, *(p.period_seconds for p in (*up.policies, *down.policies))]
    )
    history.forget_before(now - longest)
    return Recommendation(current, desired, proposal, metric, seen)


def _stabilize(
    history: History, proposal: int, current: int, now: float, up_window: int, down_window: int
) -> int:
    up_floor = proposal
    down_ceiling = proposal
    for at, recommended in history.recommendations:
        if at > now - up_window:
            up_floor = min(up_floor, recommended)
        if at > now - down_window:
            down_ceiling = max(down_ceiling, recommended)
    return min(max(current, up_floor), down_ceiling)


def _within_policies(
    desired: int,
    current: int,
    history: History,
    up: Rules,
    down: Rules,
    autoscaling: AutoscalingSpec,
    now: float,
) -> int:
    if desired > current:
        limit = max(policy_limit("up", current, history, up, now), current)
        return min(desired, autoscaling.max_replicas, limit)
    if desired < current:
        limit = min(policy_limit("down", current, history, down, now), current)
        return max(desired, autoscaling.min_replicas, limit)
    return desired


# --- What the status reports ------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionVerdict:
    """A condition the scrape loop decides: its status, reason and message (the status code
    adds the times)."""

    status: Literal["True", "False"]
    reason: str
    message: str

    @classmethod
    def of(cls, condition: Condition | None) -> Self | None:
        """What a condition of the stored status said (after an operator restart)."""
        if condition is None or condition.status == "Unknown":
            return None
        return cls(condition.status, condition.reason, condition.message)


#: Failed pods a ScalingActive message names (a condition message is one line to read).
_LISTED_PODS = 5


class ScalingVerdict(ConditionVerdict):
    """The ScalingActive condition: can the operator read the metrics it scales on."""


def scraped_verdict(ready: int, failures: Mapping[str, str]) -> ScalingVerdict:
    """ScalingActive after a scrape round: `ready` pods were scraped, `failures` maps the pods
    whose scrape failed to how (timeout, error, invalid, unresolved)."""
    if ready == 0:
        return ScalingVerdict("False", names.REASON_NO_METRICS, "no ready engine pod to scrape")
    listed = ", ".join(f"{pod} ({how})" for pod, how in sorted(failures.items())[:_LISTED_PODS])
    if len(failures) > _LISTED_PODS:
        listed += f", and {len(failures) - _LISTED_PODS} more"
    if len(failures) == ready:
        return ScalingVerdict(
            "False",
            names.REASON_SCRAPE_FAILED,
            f"no engine metrics from any of the {ready} ready pods: {listed}",
        )
    message = f"engine metrics read from {ready - len(failures)} of {ready} ready pods"
    if failures:
        message += f"; failed: {listed}"
    return ScalingVerdict("True", names.REASON_METRICS_READ, message)


def reported_average(before: float | None, seen: float | None, target: int | None) -> float | None:
    """The average the status shows: the one it showed until the new one is more than the
    tolerance (of the target) away, so a steady load writes no status."""
    if seen is None or target is None:
        return None
    if before is not None and abs(Fraction(seen) - Fraction(before)) <= TOLERANCE * target:
        return before
    return round(seen, 2)


Key = tuple[str, str]


class ScalingMemory:
    """The autoscaler's in-memory state per NovelEngine (namespace, name): the `History` of the
    decisions, and what status.autoscaling and ScalingActive report. Written by the autoscaler
    and by the reconcile's bounds check, read by the reconcile. Lost on an operator restart:
    the report is seeded again from the status, the history starts afresh."""

    def __init__(self) -> None:
        # Per NovelEngine: whether the history is of the HPA's floor (else of the replicas).
        self._histories: dict[Key, tuple[bool, History]] = {}
        self._reports: dict[Key, AutoscalingStatus] = {}
        self._verdicts: dict[Key, ScalingVerdict] = {}

    def history(self, key: Key, *, floor: bool) -> History:
        """The changes the rate policies count: of the HPA's minReplicas floor (``floor``),
        else of the replicas. A switch between the two starts afresh, as after a restart: the
        replicas' changes do not hold back the floor's, nor the other way round."""
        kept = self._histories.get(key)
        if kept is None or kept[0] != floor:
            kept = self._histories[key] = (floor, History())
        return kept[1]

    def report(self, key: Key) -> AutoscalingStatus | None:
        return self._reports.get(key)

    def verdict(self, key: Key) -> ScalingVerdict | None:
        return self._verdicts.get(key)

    def seed(
        self, key: Key, report: AutoscalingStatus | None, verdict: ScalingVerdict | None
    ) -> None:
        """Start from what the status showed (after a restart), unless already known."""
        if report is not None:
            self._reports.setdefault(key, report)
        if verdict is not None:
            self._verdicts.setdefault(key, verdict)

    def update(self, key: Key, report: AutoscalingStatus, verdict: ScalingVerdict | None) -> bool:
        """Store a new report (and verdict, if given); True if either changed."""
        changed = self._reports.get(key) != report
        self._reports[key] = report
        if verdict is not None:
            changed = changed or self._verdicts.get(key) != verdict
            self._verdicts[key] = verdict
        return changed

    def forget(self, key: Key) -> None:
        self._histories.pop(key, None)
        self._reports.pop(key, None)
        self._verdicts.pop(key, None)
