"""NovelEngine status from what the reconcile saw: pure, so the caller writes it only on change.

Conditions follow kstatus: `Reconciling` and `Stalled` are true only while something is abnormal,
`Ready` is true when every desired replica runs the current template and is ready.
`ScalingActive` (engine targets only) says whether the autoscaler can read the engine metrics.
`JobsShared` (only when more than one replica may run) says whether async jobs are shared through
the L2 tier; without it each job is known only to the replica that accepted it.
`CacheDegraded` (with an L2 tier, abnormal-true) says whether engine pods report their L2 tier
unreachable or refusing the credentials (cache_health).
`lastTransitionTime` moves only when a condition's status flips.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from novel_operator import names
from novel_operator.cache_health import CacheVerdict
from novel_operator.model import AutoscalingStatus, Condition, NovelEngineSpec, NovelEngineStatus
from novel_operator.scaling import ConditionVerdict, ScalingVerdict

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Rollout:
    """The engine workload's progress, read from a live Deployment or StatefulSet."""

    kind: str
    desired: int
    replicas: int
    ready: int
    updated: int
    observed: bool  # the workload controller has seen the latest workload spec
    stuck: str | None  # why the rollout stopped making progress, if it did
    selector: dict[str, str]

    @property
    def complete(self) -> bool:
        return self.observed and self.replicas == self.updated == self.ready == self.desired

    def describe(self) -> str:
        return (
            f"{self.kind}: {self.ready}/{self.desired} replicas ready, "
            f"{self.updated}/{self.desired} updated"
        )


def read_rollout(workload: dict[str, Any]) -> Rollout:
    """Progress of a live Deployment/StatefulSet as returned by the API."""
    spec, status = workload.get("spec", {}), workload.get("status") or {}
    stuck = next(
        (
            condition.get("message") or condition["reason"]
            for condition in status.get("conditions") or []
            if condition.get("type") == "Progressing"
            and condition.get("reason") == names.REASON_PROGRESS_DEADLINE_EXCEEDED
        ),
        None,
    )
    return Rollout(
        kind=workload.get("kind", "workload"),
        desired=spec.get("replicas", 1),
        replicas=status.get("replicas", 0),
        ready=status.get("readyReplicas", 0),
        updated=status.get("updatedReplicas", 0),
        observed=status.get("observedGeneration", 0) >= workload["metadata"].get("generation", 0),
        stuck=stuck,
        selector=spec.get("selector", {}).get("matchLabels", {}),
    )


@dataclass(frozen=True)
class _Verdict:
    status: ConditionStatus
    reason: str
    message: str


def _conditions(
    rollout: Rollout | None, problems: list[str], paused: bool, stalled_reason: str
) -> dict[str, _Verdict]:
    if problems:
        message = "; ".join(problems)
        stalled = _Verdict("True", stalled_reason, message)
        return {
            names.CONDITION_READY: _Verdict("False", stalled_reason, message),
            names.CONDITION_RECONCILING: _Verdict("False", stalled_reason, message),
            names.CONDITION_STALLED: stalled,
        }
    if rollout is None:
        ready = _Verdict("False", names.REASON_PROGRESSING, "the workload does not exist yet")
    elif rollout.stuck is not None:
        stuck = _Verdict("True", names.REASON_PROGRESS_DEADLINE_EXCEEDED, rollout.stuck)
        return {
            names.CONDITION_READY: _Verdict("False", stuck.reason, rollout.describe()),
            names.CONDITION_RECONCILING: _Verdict("False", stuck.reason, rollout.describe()),
            names.CONDITION_STALLED: stuck,
        }
    elif not rollout.complete:
        ready = _Verdict("False", names.REASON_PROGRESSING, rollout.describe())
    elif rollout.desired == 0:
        ready = _Verdict("False", names.REASON_SCALED_TO_ZERO, "replicas is 0: nothing serves")
    else:
        ready = _Verdict("True", names.REASON_AVAILABLE, rollout.describe())

    progressing = ready.reason == names.REASON_PROGRESSING
    if paused:
        reconciling = _Verdict(
            "False",
            names.REASON_PAUSED,
            f"reconciliation is paused by the {names.PAUSED_ANNOTATION} annotation",
        )
    elif progressing:
        reconciling = _Verdict("True", names.REASON_PROGRESSING, ready.message)
    else:
        reconciling = _Verdict("False", names.REASON_RECONCILED, "children match the spec")
    not_stalled = _Verdict("False", reconciling.reason, reconciling.message)
    return {
        names.CONDITION_READY: ready,
        names.CONDITION_RECONCILING: reconciling,
        names.CONDITION_STALLED: not_stalled,
    }


def _jobs_shared(spec: NovelEngineSpec) -> _Verdict | None:
    most = spec.autoscaling.max_replicas if spec.autoscaling.enabled else spec.replicas
    if most <= 1:
        return None
    if spec.cache.l2.mode != "none":
        return _Verdict(
            "True",
            names.REASON_SHARED_CACHE,
            "async jobs are shared through the L2 Redis tier: any replica answers for any job",
        )
    return _Verdict(
        "False",
        names.REASON_NO_SHARED_CACHE,
        "more than one replica without a shared L2 cache (cache.l2.mode: none): an async job "
        "is known only to the replica that accepted it, so polling its status_url through the "
        "Service may answer 404; set cache.l2.mode to managed or external to share jobs",
    )


def _condition(
    condition_type: str,
    verdict: _Verdict | ConditionVerdict,
    previous: NovelEngineStatus | None,
    now: datetime,
    generation: int,
) -> Condition:
    before = previous.condition(condition_type) if previous is not None else None
    since = (
        before.last_transition_time
        if before is not None and before.status == verdict.status
        else now.replace(microsecond=0)  # Kubernetes times have second precision
    )
    return Condition(
        type=condition_type,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        last_transition_time=since,
        observed_generation=generation,
    )


def _previous(previous: NovelEngineStatus | None) -> _Verdict | None:
    before = previous.condition(names.CONDITION_JOBS_SHARED) if previous is not None else None
    return None if before is None else _Verdict(before.status, before.reason, before.message)


def compute_status(
    spec_generation: int,
    workload: dict[str, Any] | None,
    problems: list[str],
    paused: bool,
    previous: NovelEngineStatus | None,
    now: datetime,
    endpoint: str,
    *,
    stalled_reason: str = names.REASON_INVALID_REFERENCE,
    autoscaling: AutoscalingStatus | None = None,
    scaling_active: ScalingVerdict | None = None,
    spec: NovelEngineSpec | None = None,
    cache_degraded: CacheVerdict | None = None,
) -> NovelEngineStatus:
    """The status for this reconcile.

    `workload` is the live engine Deployment/StatefulSet (None if it does not exist), `problems`
    are human-readable reasons the spec cannot be realised (they make the resource Stalled with
    `stalled_reason`), `paused` whether the pause annotation is set (the observed generation then
    stays where it was). `autoscaling` is status.autoscaling, `scaling_active` the
    ScalingActive condition and `cache_degraded` the CacheDegraded one; None leaves each out.
    `spec` decides JobsShared; None (a spec the operator cannot read) keeps the condition as it was.
    """
    rollout = read_rollout(workload) if workload is not None else None
    verdicts: dict[str, _Verdict | ConditionVerdict] = {
        **_conditions(rollout, problems, paused, stalled_reason)
    }
    if scaling_active is not None:
        verdicts[names.CONDITION_SCALING_ACTIVE] = scaling_active
    jobs_shared = _jobs_shared(spec) if spec is not None else _previous(previous)
    if jobs_shared is not None:
        verdicts[names.CONDITION_JOBS_SHARED] = jobs_shared
    if cache_degraded is not None:
        verdicts[names.CONDITION_CACHE_DEGRADED] = cache_degraded
    previous_generation = previous.observed_generation if previous is not None else None
    return NovelEngineStatus(
        observed_generation=previous_generation if paused else spec_generation,
        replicas=rollout.replicas if rollout is not None else None,
        ready_replicas=rollout.ready if rollout is not None else None,
        desired_replicas=rollout.desired if rollout is not None else None,
        selector=(
            names.selector_string(rollout.selector)
            if rollout is not None and rollout.selector
            else (previous.selector if previous is not None else None)
        ),
        endpoint=endpoint,
        conditions=[
            _condition(condition_type, verdict, previous, now, spec_generation)
            for condition_type, verdict in verdicts.items()
        ],
        autoscaling=autoscaling,
    )
