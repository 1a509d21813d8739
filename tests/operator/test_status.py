"""compute_status: kstatus conditions, observed generation, and stable transition times."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from novel_operator import names
from novel_operator.cache_health import CacheVerdict
from novel_operator.model import AutoscalingStatus, NovelEngineSpec, NovelEngineStatus
from novel_operator.scaling import ScalingVerdict
from novel_operator.status import (
    claim_blockers,
    compute_status,
    failed_create_blockers,
    pod_blockers,
)

T0 = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
ENDPOINT = "demo.stories.svc:8080"
SELECTOR = {"app.kubernetes.io/name": "novel-engine", "app.kubernetes.io/instance": "demo"}


def workload(
    *,
    desired: int = 2,
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    stale: bool = False,
    kind: str = "Deployment",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "demo", "generation": 5},
        "spec": {"replicas": desired, "selector": {"matchLabels": SELECTOR}},
        "status": {
            "observedGeneration": 4 if stale else 5,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "conditions": conditions or [],
        },
    }


def status(
    live: dict[str, Any] | None,
    *,
    problems: list[str] | None = None,
    paused: bool = False,
    previous: NovelEngineStatus | None = None,
    now: datetime = T0,
    generation: int = 7,
    autoscaling: AutoscalingStatus | None = None,
    scaling_active: ScalingVerdict | None = None,
    spec: NovelEngineSpec | None = None,
    cache_degraded: CacheVerdict | None = None,
) -> NovelEngineStatus:
    return compute_status(
        generation,
        live,
        problems or [],
        paused,
        previous,
        now,
        ENDPOINT,
        autoscaling=autoscaling,
        scaling_active=scaling_active,
        spec=spec,
        cache_degraded=cache_degraded,
    )


def verdicts(result: NovelEngineStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


READY = ("True", "Available")
NOT_RECONCILING = ("False", "Reconciled")
NOT_STALLED = ("False", "Reconciled")
PROGRESSING = {
    "Ready": ("False", "Progressing"),
    "Reconciling": ("True", "Progressing"),
    "Stalled": ("False", "Progressing"),
}


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (None, PROGRESSING),
        (workload(), {"Ready": READY, "Reconciling": NOT_RECONCILING, "Stalled": NOT_STALLED}),
        (
            workload(kind="StatefulSet"),
            {"Ready": READY, "Reconciling": NOT_RECONCILING, "Stalled": NOT_STALLED},
        ),
        (workload(updated=1), PROGRESSING),  # rolling out a new template
        (workload(replicas=3, updated=2), PROGRESSING),  # an old pod is still there
        (workload(ready=1), PROGRESSING),
        (workload(desired=3), PROGRESSING),  # scaling up
        (workload(stale=True), PROGRESSING),  # the controller has not seen the change yet
        (
            workload(desired=0, replicas=0, ready=0, updated=0),
            {
                "Ready": ("True", "ScaledToZero"),
                "Reconciling": NOT_RECONCILING,
                "Stalled": NOT_STALLED,
            },
        ),
    ],
    ids=[
        "no-workload",
        "ready",
        "statefulset-ready",
        "rolling",
        "old-pod",
        "unready-pod",
        "scaling-up",
        "unobserved",
        "scaled-to-zero",
    ],
)
def test_conditions_follow_the_rollout(
    live: dict[str, Any] | None, expected: dict[str, tuple[str, str]]
) -> None:
    assert verdicts(status(live)) == expected


def test_a_ready_status_reports_counts_selector_endpoint_and_generation() -> None:
    result = status(workload(desired=3, replicas=3, ready=3, updated=3))

    assert result.observed_generation == 7
    assert (result.replicas, result.ready_replicas, result.desired_replicas) == (3, 3, 3)
    assert result.selector == "app.kubernetes.io/instance=demo,app.kubernetes.io/name=novel-engine"
    assert result.endpoint == ENDPOINT
    ready = result.condition("Ready")
    assert ready is not None
    assert ready.message == "Deployment: 3/3 replicas ready, 3/3 updated"
    assert ready.observed_generation == 7


#: A Deployment's condition once its rollout passed progressDeadlineSeconds.
STUCK = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "demo-5f" has timed out progressing.',
}


def test_a_stuck_rollout_is_stalled_with_the_controllers_message() -> None:
    result = status(workload(ready=1, conditions=[STUCK]))

    stalled = result.condition("Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("True", "ProgressDeadlineExceeded")
    assert stalled.message == STUCK["message"]
    assert verdicts(result)["Reconciling"][0] == "False"


def test_a_deadline_the_previous_template_missed_does_not_stall_the_next() -> None:
    # The apply's answer: a new generation the Deployment controller has not seen yet.
    result = status(workload(ready=1, stale=True, conditions=[STUCK]))

    assert verdicts(result) == PROGRESSING


def test_a_missing_reference_stalls_naming_the_object_and_recovers() -> None:
    problem = 'ConfigMap "library" not found in namespace "stories"'

    stalled = status(None, problems=[problem])
    recovered = status(workload(), previous=stalled, now=T0 + timedelta(minutes=1))

    assert verdicts(stalled) == {
        "Ready": ("False", "InvalidReference"),
        "Reconciling": ("False", "InvalidReference"),
        "Stalled": ("True", "InvalidReference"),
    }
    condition = stalled.condition("Stalled")
    assert condition is not None
    assert condition.message == problem
    assert verdicts(recovered)["Stalled"] == NOT_STALLED
    assert verdicts(recovered)["Ready"] == READY


def test_pause_says_so_and_keeps_the_observed_generation() -> None:
    previous = status(workload(), generation=6)

    paused = status(workload(), paused=True, previous=previous, generation=7)

    assert paused.observed_generation == 6
    reconciling = paused.condition("Reconciling")
    assert reconciling is not None
    assert (reconciling.status, reconciling.reason) == ("False", "Paused")
    assert names.PAUSED_ANNOTATION in reconciling.message
    assert verdicts(paused)["Ready"] == READY
    # kubectl wait reads a condition's own generation: none may claim the unapplied spec.
    assert {condition.observed_generation for condition in paused.conditions} == {6}


@pytest.mark.parametrize(
    ("live", "problems", "stalled"),
    [
        (None, ['ConfigMap "library" not found in namespace "stories"'], "InvalidReference"),
        (workload(ready=1, conditions=[STUCK]), [], "ProgressDeadlineExceeded"),
    ],
    ids=["invalid-reference", "past-deadline"],
)
def test_pause_is_said_even_when_the_engine_is_stalled(
    live: dict[str, Any] | None, problems: list[str], stalled: str
) -> None:
    result = status(live, problems=problems, paused=True)

    assert verdicts(result)["Reconciling"] == ("False", "Paused")
    assert verdicts(result)["Stalled"] == ("True", stalled)


def test_a_paused_spec_does_not_decide_jobs_shared() -> None:
    applied = status(workload(), spec=NovelEngineSpec(replicas=1))
    paused = status(workload(), spec=NovelEngineSpec(replicas=3), paused=True, previous=applied)

    assert names.CONDITION_JOBS_SHARED not in verdicts(paused)


def since(result: NovelEngineStatus, kind: str) -> datetime:
    condition = result.condition(kind)
    assert condition is not None
    return condition.last_transition_time


def test_transition_times_move_only_when_a_status_flips() -> None:
    first = status(workload(updated=1))
    later = status(workload(ready=1), previous=first, now=T0 + timedelta(minutes=1))
    flipped = status(workload(), previous=later, now=T0 + timedelta(minutes=2))

    assert since(first, "Ready") == T0.replace(microsecond=0)
    assert since(later, "Ready") == since(first, "Ready")  # same status, new message
    assert since(flipped, "Ready") == T0.replace(microsecond=0) + timedelta(minutes=2)
    assert since(flipped, "Stalled") == since(first, "Stalled")  # never flipped


def test_same_inputs_give_an_equal_status() -> None:
    first = status(workload())

    assert status(workload(), previous=first, now=T0 + timedelta(hours=1)) == first


def test_autoscaling_details_are_what_the_reconcile_gives() -> None:
    details = AutoscalingStatus(recommended_replicas=4, floor=4)
    with_details = status(workload(), autoscaling=details)

    replaced = status(workload(), previous=with_details, autoscaling=AutoscalingStatus(floor=2))
    cleared = status(workload(), previous=with_details)

    assert with_details.autoscaling == details
    assert replaced.autoscaling == AutoscalingStatus(floor=2)
    assert cleared.autoscaling is None  # autoscaling turned off


def test_scaling_active_joins_the_conditions_and_keeps_its_transition_time() -> None:
    failed = ScalingVerdict("False", names.REASON_SCRAPE_FAILED, "no engine metrics")
    first = status(workload(), scaling_active=failed)
    again = status(
        workload(),
        previous=first,
        now=T0 + timedelta(minutes=1),
        scaling_active=ScalingVerdict("False", names.REASON_NO_METRICS, "no ready engine pod"),
    )
    active = status(
        workload(),
        previous=again,
        now=T0 + timedelta(minutes=2),
        scaling_active=ScalingVerdict("True", names.REASON_METRICS_READ, "read 3 of 3"),
    )
    off = status(workload(), previous=active)

    assert [c.type for c in first.conditions][-1] == names.CONDITION_SCALING_ACTIVE
    assert since(again, names.CONDITION_SCALING_ACTIVE) == since(
        first, names.CONDITION_SCALING_ACTIVE
    )
    assert since(active, names.CONDITION_SCALING_ACTIVE) == T0.replace(microsecond=0) + timedelta(
        minutes=2
    )
    assert off.condition(names.CONDITION_SCALING_ACTIVE) is None


CPU_TARGET = {"targetCPUUtilizationPercentage": 70}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, None),  # one replica: nothing to share
        ({"replicas": 0}, None),
        ({"replicas": 3}, ("False", "NoSharedCache")),
        ({"replicas": 3, "cache": {"l2": {"mode": "managed"}}}, ("True", "SharedCache")),
        (
            {"autoscaling": {"enabled": True, "maxReplicas": 4, **CPU_TARGET}},
            ("False", "NoSharedCache"),
        ),
        (
            {
                "replicas": 3,  # ignored while autoscaling is enabled
                "autoscaling": {"enabled": True, "maxReplicas": 1, **CPU_TARGET},
            },
            None,
        ),
    ],
    ids=["one", "zero", "three-no-l2", "three-l2", "autoscaled-no-l2", "autoscaled-to-one"],
)  # fmt: skip
def test_jobs_shared_says_whether_replicas_share_async_jobs(
    spec: dict[str, Any], expected: tuple[str, str] | None
) -> None:
    result = status(workload(), spec=NovelEngineSpec.model_validate(spec))

    assert verdicts(result).get(names.CONDITION_JOBS_SHARED) == expected


def test_jobs_shared_names_the_cure_and_stays_for_a_spec_the_operator_cannot_read() -> None:
    per_replica = status(workload(), spec=NovelEngineSpec(replicas=2))
    unreadable = status(workload(), previous=per_replica, now=T0 + timedelta(minutes=1))

    condition = per_replica.condition(names.CONDITION_JOBS_SHARED)
    assert condition is not None
    assert "cache.l2.mode" in condition.message
    assert unreadable.condition(names.CONDITION_JOBS_SHARED) == condition


def test_cache_degraded_is_abnormal_true_and_leaves_readiness_alone() -> None:
    refused = CacheVerdict("True", names.REASON_L2_AUTH_FAILED, "1 of 1 engine pods ...")
    degraded = status(workload(), cache_degraded=refused)
    fixed = status(
        workload(),
        previous=degraded,
        now=T0 + timedelta(minutes=1),
        cache_degraded=CacheVerdict("False", names.REASON_L2_AVAILABLE, "they reach it"),
    )
    assert verdicts(degraded)[names.CONDITION_CACHE_DEGRADED] == ("True", "L2AuthFailed")
    assert verdicts(degraded)[names.CONDITION_READY] == READY  # the engines still serve
    assert verdicts(degraded)[names.CONDITION_STALLED][0] == "False"
    assert verdicts(fixed)[names.CONDITION_CACHE_DEGRADED] == ("False", "L2Available")
    assert since(fixed, names.CONDITION_CACHE_DEGRADED) == T0.replace(microsecond=0) + timedelta(
        minutes=1
    )
    assert status(workload(), previous=fixed).condition(names.CONDITION_CACHE_DEGRADED) is None


def test_a_stalled_spec_keeps_the_conditions_about_what_was_applied_at_their_generation() -> None:
    """JobsShared and CacheDegraded describe the spec last applied; a newer one that cannot be
    applied must not make them look observed at its generation."""
    refused = CacheVerdict("True", names.REASON_L2_AUTH_FAILED, "1 of 2 engine pods ...")
    applied = status(
        workload(), spec=NovelEngineSpec(replicas=2), cache_degraded=refused, generation=7
    )
    stalled = status(
        workload(),
        problems=['services "demo-redis" is forbidden: exceeded quota'],
        previous=applied,
        now=T0 + timedelta(minutes=1),
        spec=NovelEngineSpec(replicas=3),
        cache_degraded=refused,
        generation=8,
    )
    observed = {c.type: c.observed_generation for c in stalled.conditions}
    assert stalled.observed_generation == 8
    assert observed[names.CONDITION_STALLED] == 8
    assert observed[names.CONDITION_JOBS_SHARED] == 7
    assert observed[names.CONDITION_CACHE_DEGRADED] == 7
    assert stalled.condition(names.CONDITION_JOBS_SHARED) == applied.condition(
        names.CONDITION_JOBS_SHARED
    )


def test_the_status_serialises_as_kubernetes_json() -> None:
    dumped = status(workload()).to_k8s()

    assert dumped["observedGeneration"] == 7
    assert dumped["readyReplicas"] == 2
    assert dumped["conditions"][0]["lastTransitionTime"] == "2030-01-02T03:04:05Z"


def pod(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return {"containerStatuses": [{"name": "engine", "state": state}]}


def test_pods_that_cannot_start_or_be_placed_are_named_with_their_message() -> None:
    unschedulable = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 node(s) didn't match node selector.",
            }
        ]
    }
    pods = [
        pod("demo-a", waiting("ImagePullBackOff", 'Back-off pulling image "nope:1"')),
        pod("demo-b", waiting("CrashLoopBackOff")),
        pod("demo-c", waiting("ContainerCreating")),  # starting: not a blocker
        pod("demo-d", unschedulable),
        pod("demo-e", {"phase": "Running"}),
    ]

    assert pod_blockers(pods) == [
        'Pod/demo-a container engine is ImagePullBackOff: Back-off pulling image "nope:1"',
        "Pod/demo-b container engine is CrashLoopBackOff",
        "Pod/demo-d is unschedulable: 0/3 nodes are available: 3 node(s) didn't match node "
        "selector.",
    ]


def test_an_unbound_claim_is_named_with_the_latest_reason_of_the_volume_controller() -> None:
    claims = [
        {"metadata": {"name": "data-demo-0"}, "status": {"phase": "Pending"}},
        {"metadata": {"name": "data-demo-1"}, "status": {"phase": "Bound"}},
        {"metadata": {"name": "data-demo-2"}, "status": {"phase": "Pending"}},
    ]

    def event(name: str, when: str, reason: str, message: str) -> dict[str, Any]:
        involved = {"kind": "PersistentVolumeClaim", "name": name}
        meta = {"creationTimestamp": when}
        return {"metadata": meta, "involvedObject": involved, "reason": reason, "message": message}

    events = [
        event("data-demo-0", "2030-01-01T00:00:09Z", "FailedBinding", "no storage class is set"),
        event("data-demo-0", "2030-01-01T00:00:01Z", "Other", "older"),
    ]

    assert claim_blockers(claims, events) == [
        "PersistentVolumeClaim/data-demo-0 is Pending: FailedBinding: no storage class is set",
        "PersistentVolumeClaim/data-demo-2 is Pending",
    ]


QUOTA = (
    'Create Pod demo-1 in StatefulSet demo failed error: pods "demo-1" is forbidden: '
    "exceeded quota: no-pods, requested: pods=1, used: pods=1, limited: pods=1"
)


def statefulset_event(last: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2030-01-01T00:00:00Z"},
        "involvedObject": {"kind": "StatefulSet", "name": "demo"},
        "reason": reason,
        "message": message,
        "lastTimestamp": last,
    }


@pytest.mark.parametrize(
    ("pods_created", "named"),
    [
        ([], True),  # none could be created
        (["2030-01-01T00:00:05Z"], True),  # demo-0 was, before demo-1 failed
        (["2030-01-01T00:00:05Z", "2030-01-01T00:00:09Z"], False),  # created since: passed
        (["2030-01-01T00:01:00Z"], False),
    ],
    ids=["no-pod", "older-pod", "pod-in-that-second", "newer-pod"],
)
def test_the_statefulsets_latest_failed_create_is_named_until_a_pod_is_created(
    pods_created: list[str], named: bool
) -> None:
    events = [
        statefulset_event("2030-01-01T00:00:09Z", "FailedCreate", QUOTA),
        statefulset_event("2030-01-01T00:00:02Z", "FailedCreate", "an earlier attempt"),
        statefulset_event("2030-01-01T00:00:10Z", "SuccessfulDelete", "not a failure"),
    ]
    pods = [
        {"metadata": {"name": f"demo-{i}", "creationTimestamp": when}}
        for i, when in enumerate(pods_created)
    ]

    assert failed_create_blockers(events, pods) == ([f"FailedCreate: {QUOTA}"] if named else [])


def test_a_statefulset_without_failed_create_events_has_no_such_blocker() -> None:
    events = [statefulset_event("2030-01-01T00:00:09Z", "SuccessfulCreate", "create Pod demo-0")]

    assert failed_create_blockers(events, []) == []


def ready_message(result: NovelEngineStatus) -> str:
    ready = result.condition("Ready")
    assert ready is not None
    return ready.message


def test_an_unfinished_rollout_names_what_blocks_it_and_the_replicaset_failure() -> None:
    failure = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "demo-x" is forbidden: exceeded quota: pods',
    }
    live = workload(ready=1, conditions=[failure])
    blockers = [f"Pod/demo-{i} container engine is CrashLoopBackOff" for i in range(4)]

    result = compute_status(7, live, [], False, None, T0, ENDPOINT, blockers=blockers)

    assert verdicts(result)["Ready"] == ("False", "Progressing")
    assert ready_message(result) == (
        'Deployment: 1/2 replicas ready, 2/2 updated; blocked by FailedCreate: pods "demo-x" '
        "is forbidden: exceeded quota: pods; Pod/demo-0 container engine is CrashLoopBackOff; "
        "Pod/demo-1 container engine is CrashLoopBackOff (and 2 more)"
    )
    reconciling = result.condition("Reconciling")
    assert reconciling is not None
    assert reconciling.message == ready_message(result)


def test_a_rollout_past_its_deadline_still_names_its_blockers() -> None:
    blockers = ["Pod/demo-0 container engine is ImagePullBackOff"]

    result = compute_status(
        7, workload(ready=1, conditions=[STUCK]), [], False, None, T0, ENDPOINT, blockers=blockers
    )

    stalled = result.condition("Stalled")
    assert stalled is not None
    assert stalled.message == (
        'ReplicaSet "demo-5f" has timed out progressing.; blocked by '
        "Pod/demo-0 container engine is ImagePullBackOff"
    )
    assert ready_message(result).endswith(
        "blocked by Pod/demo-0 container engine is ImagePullBackOff"
    )


def test_blockers_are_not_mentioned_once_the_rollout_finished() -> None:
    result = compute_status(7, workload(), [], False, None, T0, ENDPOINT, blockers=["Pod/x"])

    assert ready_message(result) == "Deployment: 2/2 replicas ready, 2/2 updated"


@pytest.mark.parametrize(
    ("ignored", "note"),
    [
        (None, False),  # spec.replicas honoured
        (2, False),  # the autoscaler's count happens to be the spec's
        (1, False),  # the default, which the apiserver stores in a spec without replicas
        (5, True),
    ],
)
def test_spec_replicas_ignored_by_an_autoscaler_are_said_to_be(
    ignored: int | None, note: bool
) -> None:
    result = compute_status(
        7, workload(), [], False, None, T0, ENDPOINT, ignored_spec_replicas=ignored
    )

    assert verdicts(result)["Ready"] == READY
    said = (
        "spec.replicas 5 is ignored: autoscaling.enabled is true, so the autoscaler sets the "
        "replicas (now 2) within autoscaling.minReplicas and maxReplicas"
    )
    assert (said in ready_message(result)) is note


@pytest.mark.parametrize(
    ("desired", "paused", "expected"),
    [
        (1, False, ("False", "Progressing")),
        (2, False, READY),
        (3, False, READY),
        (0, False, ("False", "Progressing")),  # at 0 the operator lifts it to the minimum
        (1, True, READY),  # paused: the spec's autoscaling is not applied
    ],
)
def test_an_autoscaled_engine_is_ready_only_with_its_minimum_replicas(
    desired: int, paused: bool, expected: tuple[str, str]
) -> None:
    # A new workload starts at one replica until the autoscaler raises it to minReplicas.
    spec = NovelEngineSpec.model_validate(
        {"autoscaling": {"enabled": True, "minReplicas": 2, **CPU_TARGET}}
    )
    live = workload(desired=desired, replicas=desired, ready=desired, updated=desired)
    result = status(live, spec=spec, paused=paused)

    assert verdicts(result)["Ready"] == expected
    said = "fewer than autoscaling.minReplicas (2)" in ready_message(result)
    assert said is (expected[0] == "False")


def test_with_a_managed_redis_ready_waits_for_it_too() -> None:
    spec = NovelEngineSpec.model_validate({"cache": {"l2": {"mode": "managed"}}})
    engine = workload()

    def with_redis(redis: dict[str, Any] | None) -> NovelEngineStatus:
        return compute_status(
            7, engine, [], False, None, T0, ENDPOINT, spec=spec, managed_redis=redis
        )

    starting = workload(desired=1, replicas=1, ready=0, updated=1)
    starting["metadata"]["name"] = "demo-redis"
    for redis, waiting in (
        (None, "the managed Redis Deployment does not exist yet"),
        (starting, "the managed Redis, Deployment/demo-redis: 0/1 replicas ready"),
    ):
        result = with_redis(redis)
        assert verdicts(result) == PROGRESSING
        ready = next(c for c in result.conditions if c.type == names.CONDITION_READY)
        assert ready.message.endswith(waiting)
        assert (result.replicas, result.ready_replicas) == (2, 2)  # the engine's own
    serving = workload(desired=1, replicas=1, ready=1, updated=1)
    assert verdicts(with_redis(serving))["Ready"] == READY

    deadline = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "demo-redis-5d4" has timed out progressing.',
    }
    stuck = workload(desired=1, replicas=1, ready=0, updated=1, conditions=[deadline])
    stuck["metadata"]["name"] = "demo-redis"
    result = with_redis(stuck)
    assert verdicts(result)["Stalled"] == ("True", "ProgressDeadlineExceeded")
    assert verdicts(result)["Ready"] == ("False", "ProgressDeadlineExceeded")
    stalled = next(c for c in result.conditions if c.type == names.CONDITION_STALLED)
    assert "Deployment/demo-redis" in stalled.message
    assert "has timed out progressing" in stalled.message
