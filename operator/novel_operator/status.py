"""NovelEngine status from what the reconcile saw: pure, so the caller writes it only on change.

Conditions follow kstatus: `Reconciling` and `Stalled` are true only while something is abnormal,
`Ready` is true when every desired replica runs the current template and is ready (with
`replicas: 0` too: a parked engine has converged) and, with autoscaling applied, at least
`minReplicas` of them run (a new workload starts at 1, and one at 0 is lifted, until then).
While paused, `Reconciling` says so and every condition keeps the generation last applied.
While a rollout has not finished, the Ready message names what holds it up (pods that cannot
start, a claim that does not bind, pods the ReplicaSet or the StatefulSet controller cannot
create), when the caller found out.
`ScalingActive` (engine targets only) says whether the autoscaler can read the engine metrics.
`JobsShared` (only when more than one replica may run) says whether async jobs are shared through
the L2 tier; without it each job is known only to the replica that accepted it.
`CacheDegraded` (with an L2 tier, abnormal-true) says whether engine pods report their L2 tier
unreachable or refusing the credentials (cache_health).
`lastTransitionTime` moves only when a condition's status flips.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from novel_operator import names
from novel_operator.cache_health import CacheVerdict
from novel_operator.model import AutoscalingStatus, Condition, NovelEngineSpec, NovelEngineStatus
from novel_operator.scaling import ConditionVerdict, ScalingVerdict

ConditionStatus = Literal["True", "False", "Unknown"]

#: Container waiting reasons that are a normal step of starting, not a blocker.
STARTING_REASONS: Final = frozenset({"ContainerCreating", "PodInitializing"})
#: The reason of a workload controller's Event when it cannot create a pod (or, StatefulSet, a
#: volume claim): a quota, an admission refusal.
FAILED_CREATE: Final = "FailedCreate"
#: Blockers named in a message at most; more are counted.
MAX_BLOCKERS: Final = 3


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
    failure: str | None = None  # why the workload controller cannot create pods, if it cannot

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
    conditions = status.get("conditions") or []
    observed = status.get("observedGeneration", 0) >= workload["metadata"].get("generation", 0)
    stuck = next(
        (
            condition.get("message") or condition["reason"]
            for condition in conditions
            if condition.get("type") == "Progressing"
            and condition.get("reason") == names.REASON_PROGRESS_DEADLINE_EXCEEDED
        ),
        None,
    )
    # A Deployment carries its ReplicaSet's FailedCreate (quota, admission) as ReplicaFailure.
    failure = next(
        (
            f"{condition.get('reason', 'ReplicaFailure')}: {condition.get('message', '')}"
            for condition in conditions
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        ),
        None,
    )
    return Rollout(
        kind=workload.get("kind", "workload"),
        desired=spec.get("replicas", 1),
        replicas=status.get("replicas", 0),
        ready=status.get("readyReplicas", 0),
        updated=status.get("updatedReplicas", 0),
        observed=observed,
        stuck=stuck if observed else None,  # a deadline an older spec missed says nothing now
        selector=spec.get("selector", {}).get("matchLabels", {}),
        failure=failure,
    )


def pod_blockers(pods: Sequence[dict[str, Any]]) -> list[str]:
    """Why pods do not become ready, one line per pod, as the kubelet and scheduler say it:
    containers waiting on something other than starting (ImagePullBackOff, CrashLoopBackOff,
    CreateContainerConfigError...), and pods the scheduler cannot place."""
    found = []
    for pod in pods:
        name = f"Pod/{pod['metadata']['name']}"
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                found.append(f"{name} is unschedulable: {condition.get('message', '')}".strip())
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason and reason not in STARTING_REASONS:
                message = waiting.get("message")
                found.append(
                    f"{name} container {container['name']} is {reason}"
                    + (f": {message}" if message else "")
                )
    return found


def claim_blockers(claims: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> list[str]:
    """Volume claims that do not bind, each with the latest reason the volume controller gave
    in an Event about it (e.g. no storage class is set)."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") == "PersistentVolumeClaim":
            name = str(involved.get("name"))
            if name not in latest or _event_time(event) >= _event_time(latest[name]):
                latest[name] = event
    found = []
    for claim in claims:
        phase = (claim.get("status") or {}).get("phase", "Pending")
        if phase == "Bound":
            continue
        name = claim["metadata"]["name"]
        line = f"PersistentVolumeClaim/{name} is {phase}"
        said = latest.get(name)
        if said is not None:
            line += f": {said.get('reason')}: {said.get('message', '')}"
        found.append(line)
    return found


def failed_create_blockers(
    events: Sequence[dict[str, Any]], pods: Sequence[dict[str, Any]]
) -> list[str]:
    """Why the StatefulSet controller cannot create the engine's pods or their volume claims:
    a StatefulSet has no ReplicaFailure condition, its controller records `FailedCreate` Events
    about it instead. The latest of `events` (about the StatefulSet) as `reason: message`, unless
    one of its `pods` was created since: that failure has passed (an Event outlives it by an
    hour). A pod created in the same second counts as since: a failure that goes on updates its
    Event at the controller's next attempt."""
    failures = [event for event in events if event.get("reason") == FAILED_CREATE]
    if not failures:
        return []
    latest = max(failures, key=_event_time)
    when = _event_time(latest)
    if any(str(pod["metadata"].get("creationTimestamp") or "") >= when for pod in pods):
        return []
    return [f"{FAILED_CREATE}: {latest.get('message', '')}"]


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event["metadata"].get("creationTimestamp")
        or ""
    )


#: `spec.replicas` of a spec that leaves it out (the CRD's default).
DEFAULT_REPLICAS: Final[int] = NovelEngineSpec.model_fields["replicas"].default


def replicas_ignored(spec_replicas: int) -> str:
    """The part of `replicas_note` that changes only with `spec.replicas`."""
    return f"spec.replicas {spec_replicas} is ignored"


def replicas_note(spec_replicas: int | None, rollout: Rollout | None) -> str | None:
    """What a human who set `spec.replicas` (`kubectl scale ne/...`) needs to know while an
    autoscaler owns the replicas: the value is ignored, and why. `spec_replicas` is None
    when the spec's replicas are honoured. The default is never reported: the apiserver
    stores it in every spec that leaves `replicas` out, and nobody set it there."""
    if (
        spec_replicas is None
        or spec_replicas == DEFAULT_REPLICAS
        or rollout is None
        or rollout.desired == spec_replicas
    ):
        return None
    return (
        f"{replicas_ignored(spec_replicas)}: autoscaling.enabled is true, so the "
        f"autoscaler sets the replicas (now {rollout.desired}) within "
        "autoscaling.minReplicas and maxReplicas"
    )


def _with_blockers(message: str, blockers: Sequence[str]) -> str:
    if not blockers:
        return message
    shown = "; ".join(blockers[:MAX_BLOCKERS])
    more = len(blockers) - MAX_BLOCKERS
    return f"{message}; blocked by {shown}" + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True)
class _Verdict:
    status: ConditionStatus
    reason: str
    message: str


def _conditions(
    rollout: Rollout | None,
    problems: list[str],
    paused: bool,
    stalled_reason: str,
    blockers: Sequence[str],
    note: str | None,
    minimum: int,
    redis_waiting: _Verdict | None = None,
) -> dict[str, _Verdict]:
    stalled: _Verdict | None = None
    if problems:
        message = "; ".join(problems)
        stalled = _Verdict("True", stalled_reason, message)
        ready = _Verdict("False", stalled_reason, message)
    elif rollout is None:
        ready = _Verdict("False", names.REASON_PROGRESSING, "the workload does not exist yet")
    elif rollout.stuck is not None:
        why = [*([rollout.failure] if rollout.failure else []), *blockers]
        reason = names.REASON_PROGRESS_DEADLINE_EXCEEDED
        stalled = _Verdict("True", reason, _with_blockers(rollout.stuck, why))
        ready = _Verdict("False", reason, _with_blockers(rollout.describe(), why))
    elif not rollout.complete:
        why = [*([rollout.failure] if rollout.failure else []), *blockers]
        ready = _Verdict("False", names.REASON_PROGRESSING, _with_blockers(rollout.describe(), why))
    elif rollout.desired < minimum:
        message = f"{rollout.describe()}; fewer than autoscaling.minReplicas ({minimum})"
        ready = _Verdict("False", names.REASON_PROGRESSING, message)
    elif rollout.desired == 0:
        ready = _Verdict("True", names.REASON_SCALED_TO_ZERO, "replicas is 0: nothing serves")
    elif redis_waiting is not None:
        message = f"{rollout.describe()}; {redis_waiting.message}"
        ready = _Verdict("False", redis_waiting.reason, message)
        if redis_waiting.reason == names.REASON_PROGRESS_DEADLINE_EXCEEDED:
            stalled = _Verdict("True", redis_waiting.reason, redis_waiting.message)
    else:
        ready = _Verdict("True", names.REASON_AVAILABLE, rollout.describe())
    if note is not None and stalled is None:
        ready = _Verdict(ready.status, ready.reason, f"{ready.message}; {note}")

    if paused:  # said whatever else holds: nothing is applied until the annotation goes
        reconciling = _Verdict(
            "False",
            names.REASON_PAUSED,
            f"reconciliation is paused by the {names.PAUSED_ANNOTATION} annotation",
        )
    elif stalled is not None:
        reconciling = _Verdict("False", stalled.reason, ready.message)
    elif ready.reason == names.REASON_PROGRESSING:
        reconciling = _Verdict("True", names.REASON_PROGRESSING, ready.message)
    else:
        reconciling = _Verdict("False", names.REASON_RECONCILED, "children match the spec")
    if stalled is None:
        stalled = _Verdict("False", reconciling.reason, reconciling.message)
    return {
        names.CONDITION_READY: ready,
        names.CONDITION_RECONCILING: reconciling,
        names.CONDITION_STALLED: stalled,
    }


def _redis_waiting(
    deployment: dict[str, Any] | None, blockers: Sequence[str] = ()
) -> _Verdict | None:
    """Why the managed Redis does not serve (its Deployment as served): Progressing, or past
    its progress deadline, with what holds its pod up; None when it serves."""
    if deployment is None:
        message = "the managed Redis Deployment does not exist yet"
        return _Verdict("False", names.REASON_PROGRESSING, message)
    redis = read_rollout(deployment)
    if redis.complete:
        return None
    name = deployment["metadata"]["name"]
    message = _with_blockers(
        f"the managed Redis, Deployment/{name}: {redis.ready}/{redis.desired} replicas ready",
        blockers,
    )
    if redis.stuck is not None:
        return _Verdict(
            "False", names.REASON_PROGRESS_DEADLINE_EXCEEDED, f"{message}; {redis.stuck}"
        )
    return _Verdict("False", names.REASON_PROGRESSING, message)


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
    generation: int | None,
    carried: bool = False,
) -> Condition:
    """`carried`: the verdict is the last status's, and so is the generation it describes."""
    before = previous.condition(condition_type) if previous is not None else None
    if carried and before is not None:
        generation = before.observed_generation
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
    endpoint: str | None,
    *,
    stalled_reason: str = names.REASON_INVALID_REFERENCE,
    autoscaling: AutoscalingStatus | None = None,
    scaling_active: ScalingVerdict | None = None,
    spec: NovelEngineSpec | None = None,
    cache_degraded: CacheVerdict | None = None,
    blockers: Sequence[str] = (),
    ignored_spec_replicas: int | None = None,
    managed_redis: dict[str, Any] | None = None,
    redis_blockers: Sequence[str] = (),
) -> NovelEngineStatus:
    """The status for this reconcile.

    `workload` is the live engine Deployment/StatefulSet (None if it does not exist), `problems`
    are human-readable reasons the spec cannot be realised (they make the resource Stalled with
    `stalled_reason`), `paused` whether the pause annotation is set (the observed generation of
    the status and of its conditions then stays where it was: they describe what was applied).
    `autoscaling` is status.autoscaling, `scaling_active` the ScalingActive condition and
    `cache_degraded` the CacheDegraded one (for a spec not applied, the last status's); None
    leaves each out. `spec`, once applied (not paused, no problems), decides JobsShared and,
    with autoscaling, the fewest replicas Ready needs; a spec not applied or None (one the
    operator cannot read) keeps JobsShared as it was and sets no minimum. JobsShared and
    CacheDegraded, kept, keep the generation they were observed at. `blockers` say what holds
    up an unfinished rollout (`pod_blockers`, `claim_blockers`); `ignored_spec_replicas` is
    spec.replicas while an autoscaler owns the replicas (None otherwise). `endpoint` None: the
    engine Service is not this NovelEngine's. `managed_redis` is the live Redis Deployment of
    a spec with `cache.l2.mode: managed` (None if it does not exist): Ready waits for it too,
    and names what holds its pod up (`redis_blockers`, from `pod_blockers`).
    """
    rollout = read_rollout(workload) if workload is not None else None
    note = replicas_note(ignored_spec_replicas, rollout)
    minimum = 0
    applied = spec is not None and not (paused or problems)
    if applied and spec is not None and spec.autoscaling.enabled:
        minimum = spec.autoscaling.min_replicas
    redis_waiting = None
    if applied and spec is not None and spec.cache.l2.mode == "managed":
        redis_waiting = _redis_waiting(managed_redis, redis_blockers)
    verdicts: dict[str, _Verdict | ConditionVerdict] = {
        **_conditions(
            rollout, problems, paused, stalled_reason, blockers, note, minimum, redis_waiting
        )
    }
    if scaling_active is not None:
        verdicts[names.CONDITION_SCALING_ACTIVE] = scaling_active
    jobs_shared = _jobs_shared(spec) if applied and spec is not None else _previous(previous)
    if jobs_shared is not None:
        verdicts[names.CONDITION_JOBS_SHARED] = jobs_shared
    if cache_degraded is not None:
        verdicts[names.CONDITION_CACHE_DEGRADED] = cache_degraded
    previous_generation = previous.observed_generation if previous is not None else None
    observed_generation = previous_generation if paused else spec_generation
    # Conditions about what was applied: a spec not applied keeps them, and the generation
    # they were observed at, from the last status.
    carried = () if applied else (names.CONDITION_JOBS_SHARED, names.CONDITION_CACHE_DEGRADED)
    return NovelEngineStatus(
        observed_generation=observed_generation,
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
            _condition(
                condition_type,
                verdict,
                previous,
                now,
                observed_generation,
                carried=condition_type in carried,
            )
            for condition_type, verdict in verdicts.items()
        ],
        autoscaling=autoscaling,
    )
