"""The operator's replica decisions: the autoscaling bounds, and the HPA v2 algorithm on engine
metrics (examples from the HPA documentation, then the documented rules as properties)."""

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from operator_samples import spec_of

from novel_operator.model import AutoscalingSpec
from novel_operator.scaling import (
    EngineMetric,
    History,
    PodReadings,
    Recommendation,
    ScaleDecision,
    ScaleReason,
    ScalingMemory,
    clamp_replicas,
    metric_proposal,
    recommend,
    reported_average,
    scraped_verdict,
)

IN_FLIGHT = EngineMetric.IN_FLIGHT
QUEUE_DEPTH = EngineMetric.QUEUE_DEPTH
ENGINE_TARGETS_ONLY = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 5,
        "engine": {"inFlightPerPod": 8},
    }
}


def autoscaling(
    *,
    minimum: int = 1,
    maximum: int = 100,
    in_flight: int | None = 10,
    queue_depth: int | None = None,
    behavior: dict[str, Any] | None = None,
) -> AutoscalingSpec:
    engine = {"inFlightPerPod": in_flight, "queueDepthPerPod": queue_depth}
    return spec_of(
        {
            "autoscaling": {
                "enabled": True,
                "minReplicas": minimum,
                "maxReplicas": maximum,
                "engine": {k: v for k, v in engine.items() if v is not None},
                "behavior": behavior or {},
            }
        }
    ).autoscaling


def readings(
    in_flight: list[float], *, missing: int = 0, unready: int = 0, queue: list[float] | None = None
) -> PodReadings:
    return PodReadings(
        {IN_FLIGHT: in_flight, QUEUE_DEPTH: queue if queue is not None else [0.0] * len(in_flight)},
        missing=missing,
        unready=unready,
    )


def decide(
    spec: AutoscalingSpec,
    current: int,
    pods: PodReadings,
    history: History | None = None,
    now: float = 1000.0,
) -> Recommendation:
    return recommend(
        spec,
        replicas=current,
        current=current,
        readings=pods,
        history=history if history is not None else History(),
        now=now,
    )


NO_WINDOWS = {"scaleDown": {"stabilizationWindowSeconds": 0}}


# --- Bounds ------------------------------------------------------------------------------------


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
def test_no_bound_is_enforced_while_the_operator_does_not_own_replicas(
    spec: dict[str, object],
) -> None:
    assert clamp_replicas(1, spec_of(spec)) is None


def test_under_an_hpa_only_zero_replicas_are_lifted_to_the_minimum() -> None:
    # The HPA never scales a workload at 0: left there, autoscaling would never start it.
    hpa = spec_of(
        {"autoscaling": {"enabled": True, "minReplicas": 3, "targetCPUUtilizationPercentage": 70}}
    )
    assert clamp_replicas(0, hpa) == ScaleDecision(0, 3, ScaleReason.BELOW_MIN_REPLICAS)
    assert clamp_replicas(0, spec_of({"replicas": 0})) is None


def test_a_decision_says_why_in_words() -> None:
    assert (
        ScaleDecision(1, 3, ScaleReason.BELOW_MIN_REPLICAS).describe()
        == "from 1 to 3 replicas: below minReplicas 3"
    )
    assert (
        ScaleDecision(9, 5, ScaleReason.ABOVE_MAX_REPLICAS).describe()
        == "from 9 to 5 replicas: above maxReplicas 5"
    )


# --- The HPA documentation's examples ------------------------------------------------------------


def test_twice_the_target_doubles_and_half_of_it_halves() -> None:
    """ "if the current metric value is 200m, and the desired value is 100m, the number of
    replicas will be doubled ... If the current value is instead 50m, you'll halve it"."""
    spec = autoscaling(behavior=NO_WINDOWS)

    up = decide(spec, 4, readings([20, 20, 20, 20]))
    down = decide(spec, 4, readings([5, 5, 5, 5]))

    assert (up.proposal, up.desired, up.reason) == (8, 8, ScaleReason.IN_FLIGHT)
    assert (down.proposal, down.desired) == (2, 2)


@pytest.mark.parametrize("average", [9, 9.5, 10, 10.5, 11])
def test_nothing_moves_within_the_tolerance(average: float) -> None:
    """ "The control plane skips any scaling action if the ratio is sufficiently close to 1.0
    (within a globally-configurable tolerance, 0.1 by default)"."""
    assert decide(autoscaling(behavior=NO_WINDOWS), 4, readings([average] * 4)).desired == 4


def test_missing_metrics_count_as_the_target_on_a_scale_down() -> None:
    # 3 pods at half the target, one unreadable: (5+5+5+10)/4 = 6.25 -> ceil(4 * 0.625) = 3.
    assert metric_proposal(4, [5, 5, 5], missing=1, unready=0, target=10) == 3


def test_missing_metrics_count_as_zero_on_a_scale_up_and_can_cancel_it() -> None:
    # 2 pods at twice the target and 2 unreadable: (20+20+0+0)/4 = target -> no change.
    assert metric_proposal(4, [20, 20], missing=2, unready=0, target=10) == 4
    # 2 pods at three times the target and 1 unreadable: 60/3 = 20 -> 6 replicas.
    assert metric_proposal(3, [30, 30], missing=1, unready=0, target=10) == 6


def test_unready_pods_count_as_zero_on_a_scale_up_only() -> None:
    # Scale-up: 2 ready pods at 3x, 2 starting: (30+30+0+0)/4 = 15 -> ceil(4 * 1.5) = 6.
    assert metric_proposal(4, [30, 30], missing=0, unready=2, target=10) == 6
    # Scale-down: unready pods are left out: 2 ready pods at half -> 1.
    assert metric_proposal(4, [5, 5], missing=0, unready=2, target=10) == 1


def test_filling_in_missing_data_never_flips_the_direction() -> None:
    # Ready pods say "scale down" by a hair; filling the missing ones in with the target must
    # not turn it into a scale-up, nor the other way round.
    assert metric_proposal(4, [8.9], missing=3, unready=0, target=10) == 4


def test_the_largest_proposal_over_the_metrics_wins() -> None:
    spec = autoscaling(in_flight=10, queue_depth=5, behavior=NO_WINDOWS)

    decision = decide(spec, 2, readings([10, 10], queue=[15, 15]))

    assert (decision.proposal, decision.metric, decision.desired) == (6, QUEUE_DEPTH, 6)
    assert decision.averages == {IN_FLIGHT: 10.0, QUEUE_DEPTH: 15.0}
    assert decision.explain(spec) == "queued tasks 15 per pod, target 5"


def test_without_any_metric_nothing_moves() -> None:
    spec = autoscaling(behavior=NO_WINDOWS)

    decision = decide(spec, 3, readings([], missing=3))

    assert (decision.proposal, decision.desired, decision.reason) == (None, 3, None)


def test_the_documented_percent_policy_scales_80_down_to_10() -> None:
    """HPA docs, scaling policies: Pods 4 and Percent 10 per 60 s, the larger change wins:
    80 -> 72 first, 10% above 40 replicas, 4 at a time below."""
    spec = autoscaling(
        behavior={
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 60},
                    {"type": "Percent", "value": 10, "periodSeconds": 60},
                ],
            }
        },
    )
    history, current, now, seen = History(), 80, 0.0, [80]
    while current > 10:
        now += 60
        load = readings([100] + [0] * (current - 1))  # 100 in flight: 10 pods' worth
        desired = decide(spec, current, load, history, now).desired
        history.record_change(now, current, desired)
        current = desired
        seen.append(current)

    assert seen == [80, 72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]


def test_default_scale_up_is_the_larger_of_4_pods_and_100_percent_per_15_seconds() -> None:
    spec = autoscaling()
    assert decide(spec, 1, readings([100])).desired == 5  # +4 pods > +100%
    assert decide(spec, 10, readings([100] * 10)).desired == 20  # 100% > 4 pods


def test_within_one_period_the_policy_counts_what_was_already_added() -> None:
    spec = autoscaling(
        behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}
    )
    history = History()

    first = decide(spec, 2, readings([100, 100]), history, now=0)
    history.record_change(0, 2, first.desired)
    second = decide(spec, first.desired, readings([100] * first.desired), history, now=30)
    third = decide(spec, first.desired, readings([100] * first.desired), history, now=61)

    assert (first.desired, second.desired, third.desired) == (4, 4, 6)


def test_scale_down_waits_for_the_highest_recommendation_of_the_window() -> None:
    spec = autoscaling(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    history = History()

    loaded = decide(spec, 4, readings([10] * 4), history, now=0)  # 4 is right
    idle_soon = decide(spec, 4, readings([1] * 4), history, now=30)
    idle_later = decide(spec, 4, readings([1] * 4), history, now=61)

    assert (loaded.desired, idle_soon.desired, idle_later.desired) == (4, 4, 1)
    assert idle_soon.proposal == 1  # what the metrics call for, reported before the window


def test_disabled_scale_down_keeps_the_replicas() -> None:
    spec = autoscaling(behavior={"scaleDown": {"selectPolicy": "Disabled"}})
    assert decide(spec, 5, readings([0] * 5), now=10_000).desired == 5


def test_replicas_outside_the_bounds_go_to_the_bound_before_any_metric() -> None:
    spec = autoscaling(minimum=2, maximum=4)
    below = decide(spec, 1, readings([100]))
    above = decide(spec, 6, readings([0] * 6))
    assert (below.desired, below.reason) == (2, ScaleReason.BELOW_MIN_REPLICAS)
    assert (above.desired, above.reason) == (4, ScaleReason.ABOVE_MAX_REPLICAS)
    assert below.explain(spec) == "below minReplicas 2"


# --- Status reporting ----------------------------------------------------------------------------


def test_a_reported_average_moves_only_beyond_the_tolerance_of_the_target() -> None:
    assert reported_average(None, 3.333333, 10) == 3.33
    assert reported_average(3.33, 4.0, 10) == 3.33  # 0.67 <= 1 (10% of 10)
    assert reported_average(3.33, 4.5, 10) == 4.5
    assert reported_average(3.33, None, 10) is None  # nothing read: not shown


def test_scaling_is_active_while_some_ready_pod_answers() -> None:
    assert scraped_verdict(0, {}).reason == "NoMetrics"
    failed = scraped_verdict(2, {"a": "timeout", "b": "invalid"})
    assert (failed.status, failed.reason) == ("False", "ScrapeFailed")
    assert "a (timeout), b (invalid)" in failed.message
    partly = scraped_verdict(3, {"a": "timeout"})
    assert (partly.status, partly.reason) == ("True", "MetricsRead")
    assert partly.message == "engine metrics read from 2 of 3 ready pods; failed: a (timeout)"


def test_a_scaling_message_names_five_failed_pods_and_counts_the_rest() -> None:
    failures = {f"pod-{number}": "timeout" for number in range(7)}
    failed = scraped_verdict(7, failures)
    assert failed.message == (
        "no engine metrics from any of the 7 ready pods: pod-0 (timeout), pod-1 (timeout),"
        " pod-2 (timeout), pod-3 (timeout), pod-4 (timeout), and 2 more"
    )


# --- The documented rules as properties --------------------------------------------------------

TARGET = 10
values = st.integers(min_value=0, max_value=400).map(lambda tenths: tenths / 10)


# No per-example deadline in these properties: it would be a timing assertion on a busy machine.
@settings(deadline=None)
@given(
    current=st.integers(1, 30),
    low=values,
    high=values,
)
def test_the_decision_is_monotone_in_the_metric_value(
    current: int, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    spec = autoscaling(behavior=NO_WINDOWS)

    at_low = decide(spec, current, readings([low] * current)).desired
    at_high = decide(spec, current, readings([high] * current)).desired

    assert at_low <= at_high


@settings(deadline=None)
@given(current=st.integers(1, 30), ratio=st.integers(90, 110), history_seed=st.integers(0, 60))
def test_nothing_moves_inside_the_tolerance(current: int, ratio: int, history_seed: int) -> None:
    spec = autoscaling(behavior=NO_WINDOWS)
    history = History(recommendations=[(1000.0 - history_seed, history_seed % 7 + 1)])

    decision = decide(spec, current, readings([TARGET * ratio / 100] * current), history)

    assert decision.desired == current


@dataclass(frozen=True)
class Step:
    seconds: int
    value: float
    missing: int
    unready: int


steps = st.lists(
    st.builds(Step, st.integers(1, 40), values, st.integers(0, 2), st.integers(0, 2)),
    min_size=1,
    max_size=25,
)
policies = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Pods", "Percent"]),
        "value": st.integers(1, 200),
        "periodSeconds": st.integers(1, 120),
    }
)
rules = st.fixed_dictionaries(
    {
        "stabilizationWindowSeconds": st.integers(0, 120),
        "selectPolicy": st.sampled_from(["Max", "Min"]),
        "policies": st.lists(policies, min_size=1, max_size=3),
    }
)


def run(spec: AutoscalingSpec, start: int, plan: list[Step]) -> list[tuple[float, int, int]]:
    """Drive the scaler through `plan` as the operator would; (time, before, after) per step."""
    history, current, now, log = History(), start, 0.0, []
    for step in plan:
        now += step.seconds
        ready = max(current - step.missing - step.unready, 0)
        pods = readings([step.value] * ready, missing=step.missing, unready=step.unready)
        desired = decide(spec, current, pods, history, now).desired
        history.record_change(now, current, desired)
        log.append((now, current, desired))
        current = desired
    return log


@settings(max_examples=150, deadline=None)
@given(
    bounds=st.tuples(st.integers(1, 20), st.integers(0, 20)),
    start=st.integers(1, 40),
    up=rules,
    down=rules,
    plan=steps,
)
def test_never_outside_the_bounds(
    bounds: tuple[int, int], start: int, up: dict[str, Any], down: dict[str, Any], plan: list[Step]
) -> None:
    minimum, maximum = bounds[0], bounds[0] + bounds[1]
    spec = autoscaling(
        minimum=minimum, maximum=maximum, behavior={"scaleUp": up, "scaleDown": down}
    )
    for _, _, after in run(spec, start, plan):
        assert minimum <= after <= maximum


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(1, 30),
    pods=st.integers(1, 5),
    period=st.integers(1, 90),
    plan=steps,
)
def test_never_further_than_a_pods_policy_allows_within_a_period(
    start: int, pods: int, period: int, plan: list[Step]
) -> None:
    policy = [{"type": "Pods", "value": pods, "periodSeconds": period}]
    spec = autoscaling(
        minimum=1,
        maximum=60,
        behavior={
            "scaleUp": {"policies": policy},
            "scaleDown": {"stabilizationWindowSeconds": 0, "policies": policy},
        },
    )
    log = run(spec, min(start, 60), plan)
    for index, (now, before, after) in enumerate(log):
        # The replicas when the period began: before the changes made within it.
        earlier = [(b, a) for at, b, a in log[:index] if now - period < at]
        at_start = before - sum(a - b for b, a in earlier)
        if after > before:
            assert after <= at_start + pods
        if after < before:
            assert after >= at_start - pods


@settings(max_examples=150, deadline=None)
@given(start=st.integers(1, 30), window=st.integers(1, 600), plan=steps)
def test_no_scale_down_before_the_window(start: int, window: int, plan: list[Step]) -> None:
    spec = autoscaling(
        minimum=1, maximum=60, behavior={"scaleDown": {"stabilizationWindowSeconds": window}}
    )
    for now, _, after in run(spec, start, plan):
        if now - plan[0].seconds < window:  # the first sync started the window
            assert after >= start


def test_a_switch_to_hpa_mode_starts_the_floor_history_afresh_and_back() -> None:
    """Replica changes in engine-only mode do not hold back the HPA floor under a one-pod-a-
    minute policy, nor floor changes the replicas after the switch back."""
    one_pod_a_minute = {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    engine_only = autoscaling(maximum=3, in_flight=2, behavior={"scaleUp": one_pod_a_minute})
    with_cpu = engine_only.model_copy(update={"target_cpu_utilization_percentage": 80})
    assert with_cpu.uses_hpa
    assert not engine_only.uses_hpa
    key = ("ns", "tale")
    memory = ScalingMemory()

    def scale_up(spec: AutoscalingSpec, replicas: int, current: int, now: float) -> int:
        history = memory.history(key, floor=spec.uses_hpa)
        loaded = PodReadings({IN_FLIGHT: [8.0] * replicas, QUEUE_DEPTH: [0.0] * replicas})
        decision = recommend(
            spec, replicas=replicas, current=current, readings=loaded, history=history, now=now
        )
        history.record_change(now, current, decision.desired)
        return decision.desired

    assert scale_up(engine_only, replicas=1, current=1, now=0.0) == 2
    assert scale_up(engine_only, replicas=2, current=2, now=1.0) == 2  # the policy holds
    assert scale_up(with_cpu, replicas=2, current=1, now=5.0) == 2  # the floor: 1 -> 2
    assert scale_up(engine_only, replicas=2, current=2, now=10.0) == 3
