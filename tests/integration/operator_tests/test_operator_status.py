"""What a platform engineer sees on the real control plane: status that kstatus (Flux, Argo CD,
kpt) reads right, blockers named in the Ready message, an ignored `kubectl scale` answered,
children that never land beside another's objects, and a managed Redis placed like the engine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import (
    DEPLOYMENT,
    Cluster,
    StartOperator,
    condition,
    condition_status,
    wait_reconciles,
    wait_replicas,
)
from kubernetes.client.exceptions import ApiException
from testbed import Testbed

from novel_operator import names
from novel_operator.builders import CHILD_KINDS

pytestmark = pytest.mark.integration

#: kwok's pod-container-waiting stage keeps such a pod's containers waiting with that reason.
CONTAINER_WAITING = "test.novelengine.io/container-waiting"


def kstatus(binary: Path, obj: dict[str, Any]) -> str:
    """The status cli-utils' kstatus computes for `obj`."""
    done = subprocess.run(
        [str(binary)], input=json.dumps(obj), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["status"])


def wait_condition_message(
    cluster: Cluster,
    namespace: str,
    name: str,
    condition_type: str,
    wanted: Callable[[str], bool],
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Wait until the condition's message satisfies `wanted`; the condition then."""

    def check() -> str | None:
        obj = cluster.novelengine(namespace, name)
        found = condition(obj, condition_type) if obj else None
        if found is not None and wanted(str(found["message"])):
            return None
        return f"{condition_type}: {found}"

    cluster.wait(f"{namespace}/{name} {condition_type} message", check, timeout)
    obj = cluster.novelengine(namespace, name)
    assert obj is not None
    found = condition(obj, condition_type)
    assert found is not None
    return found


def test_kstatus_reads_ready_parked_stalled_and_unobserved_novelengines(
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    kstatus_binary: Path,
) -> None:
    ns = testbed_namespace
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, "serving", {"replicas": 1})
    cluster.create_novelengine(ns, "parked", {"replicas": 0})
    cluster.create_novelengine(ns, "stalled", {"content": {"configMapName": "missing"}})

    serving = cluster.wait_ready(ns, "serving")
    parked = cluster.wait_ready(ns, "parked")  # what `kubectl wait --for=condition=Ready` sees

    assert kstatus(kstatus_binary, serving) == "Current"
    assert kstatus(kstatus_binary, parked) == "Current"
    ready = condition(parked, names.CONDITION_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", names.REASON_SCALED_TO_ZERO)
    stalled = wait_condition_message(
        cluster, ns, "stalled", names.CONDITION_STALLED, lambda message: "missing" in message
    )
    assert stalled["status"] == "True"
    stalled_obj = cluster.novelengine(ns, "stalled")
    assert stalled_obj is not None
    assert kstatus(kstatus_binary, stalled_obj) == "Failed"

    # A spec change the operator has not acted on yet (it is paused): observedGeneration lags.
    cluster.patch_novelengine(
        ns, "serving", {"metadata": {"annotations": {names.PAUSED_ANNOTATION: "true"}}}
    )
    wait_condition_message(
        cluster, ns, "serving", names.CONDITION_RECONCILING, lambda message: "paused" in message
    )
    changed = cluster.patch_novelengine(ns, "serving", {"spec": {"replicas": 2}})
    assert changed["status"]["observedGeneration"] < changed["metadata"]["generation"]
    assert kstatus(kstatus_binary, changed) == "InProgress"


def test_kubectl_scale_with_autoscaling_on_is_answered_with_an_event_and_a_status_message(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "autoscaled"
    start_operator("--namespace", ns)
    autoscaling = {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 3,
        "targetCPUUtilizationPercentage": 70,
    }
    cluster.create_novelengine(ns, name, {"replicas": 2, "autoscaling": autoscaling})
    cluster.wait_ready(ns, name)

    cluster.scale(names.API_VERSION, names.KIND, ns, name, 5)  # kubectl scale ne/autoscaled

    said = (
        "spec.replicas 5 is ignored: autoscaling.enabled is true, so the autoscaler sets the "
        "replicas (now 2) within autoscaling.minReplicas and maxReplicas"
    )
    obj = cluster.wait_ready(ns, name)
    ready = condition(obj, names.CONDITION_READY)
    assert ready is not None
    assert said in ready["message"]

    def answered() -> str | None:
        events = cluster.events(ns, name)
        ignored = [e for e in events if e["reason"] == "ReplicasIgnored"]
        return None if [e["message"] for e in ignored] == [said] else f"{ignored}"

    cluster.wait("a ReplicasIgnored Event", answered)
    [event] = [e for e in cluster.events(ns, name) if e["reason"] == "ReplicasIgnored"]
    assert event["type"] == "Normal"
    wait_replicas(cluster, ns, name, 2)


def test_ignored_replicas_are_said_once_per_value_and_never_of_the_default(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    operator = start_operator("--namespace", ns)
    # Engine targets only: the operator sets the replicas itself, in the reconcile that reads
    # the new settings.
    autoscaling = {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 4,
        "engine": {"inFlightPerPod": 8},
    }
    cluster.create_novelengine(ns, "set", {"replicas": 5, "autoscaling": autoscaling})
    cluster.create_novelengine(ns, "defaulted", {"autoscaling": autoscaling})
    wait_condition_message(
        cluster, ns, "set", names.CONDITION_READY, lambda m: "spec.replicas 5 is ignored" in m
    )

    # New settings move the count from 2 to 3, and the status says so; spec.replicas is as
    # ignored as before: no Event about it.
    cluster.patch_novelengine(ns, "set", {"spec": {"autoscaling": {"minReplicas": 3}}})
    wait_condition_message(cluster, ns, "set", names.CONDITION_READY, lambda m: "(now 3)" in m)
    defaulted = cluster.wait_ready(ns, "defaulted")
    wait_reconciles(cluster, operator, 2)
    assert [e for e in cluster.events(ns, "set") if e["reason"] == "ReplicasIgnored"] == []
    # The apiserver stored replicas: 1, which nobody set: nothing to say about it.
    assert defaulted["spec"]["replicas"] == 1
    ready = condition(defaulted, names.CONDITION_READY)
    assert ready is not None
    assert "is ignored" not in ready["message"]


def test_a_memory_request_alone_is_accepted_and_sets_the_limit(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "roomy"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"resources": {"requests": {"memory": "1Gi"}}})

    cluster.wait_ready(ns, name)
    deployment = cluster.get(*DEPLOYMENT, ns, name)
    assert deployment is not None
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == "1Gi"
    assert resources["limits"]["memory"] == "1Gi"


def test_a_passed_through_object_of_the_wrong_shape_stalls_naming_the_field_until_fixed(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """The CRD passes an affinity through unchecked; the apiserver then refuses the Deployment
    with a 500, which must read as a refusal (a human's to fix), not as an outage to retry."""
    ns, name = testbed_namespace, "misplaced"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"pod": {"affinity": {"nodeAffinity": "anywhere"}}})

    stalled = wait_condition_message(
        cluster, ns, name, names.CONDITION_STALLED, lambda message: "nodeAffinity" in message
    )
    assert (stalled["status"], stalled["reason"]) == ("True", names.REASON_APPLY_FAILED)
    obj = cluster.novelengine(ns, name)
    assert obj is not None
    ready = condition(obj, names.CONDITION_READY)
    assert ready is not None
    assert ready["status"] == "False"

    cluster.patch_novelengine(ns, name, {"spec": {"pod": {"affinity": None}}})
    cluster.wait_ready(ns, name)


@pytest.mark.parametrize("managed_first", [True, False], ids=["managed-first", "engine-first"])
def test_a_novelengine_whose_children_would_collide_creates_nothing_and_names_the_blocker(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str, managed_first: bool
) -> None:
    """`demo` with a managed Redis needs Deployment/demo-redis, the engine of `demo-redis`."""
    ns = testbed_namespace
    start_operator("--namespace", ns)
    specs = {"demo": {"cache": {"l2": {"mode": "managed"}}}, "demo-redis": {"replicas": 1}}
    first, second = ("demo", "demo-redis") if managed_first else ("demo-redis", "demo")
    cluster.create_novelengine(ns, first, specs[first])
    cluster.wait_ready(ns, first)
    before = cluster.children(ns, first)

    cluster.create_novelengine(ns, second, specs[second])

    stalled = wait_condition_message(
        cluster, ns, second, names.CONDITION_STALLED, lambda message: "belongs to" in message
    )
    assert stalled["status"] == "True"
    assert stalled["reason"] == names.REASON_APPLY_FAILED
    assert (
        f"Deployment/demo-redis already exists and belongs to NovelEngine/{first}"
        in (stalled["message"])
    )
    assert cluster.children(ns, second) == set()
    blocked = cluster.novelengine(ns, second)
    assert blocked is not None
    assert "endpoint" not in blocked["status"]  # never another's Service
    assert "replicas" not in blocked["status"]  # nor another's Deployment's counts
    assert cluster.wait_ready(ns, first)
    assert cluster.children(ns, first) == before


def stalled_among(cluster: Cluster, namespace: str, candidates: list[str]) -> list[str]:
    """The NovelEngines of `candidates` whose Stalled condition is true."""
    return [
        name
        for name in candidates
        if condition_status(cluster.novelengine(namespace, name) or {}, names.CONDITION_STALLED)
        == "True"
    ]


def wait_one_stalled(cluster: Cluster, namespace: str, candidates: list[str]) -> str:
    """Wait until exactly one of `candidates` is Stalled; its name."""
    cluster.wait(
        "one Stalled",
        lambda: (
            None if len(found := stalled_among(cluster, namespace, candidates)) == 1 else str(found)
        ),
        timeout=30,
    )
    [stalled] = stalled_among(cluster, namespace, candidates)
    return stalled


@pytest.mark.parametrize(
    "engine_l3",
    [{}, {"l3": {"persistence": "pvc"}}],
    ids=["deployment", "statefulset"],
)
def test_novelengines_whose_children_collide_applied_together_leave_one_standing_alone(
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    engine_l3: dict[str, Any],
) -> None:
    """Created at once, both reconciles read the names as free and start creating (as seen in
    every run: each reconcile reads before either writes); the one that then meets the other's
    object deletes what it created but its settings ConfigMap. `demo` with a managed Redis
    needs Deployment/demo-redis and Service/demo-redis; `demo-redis` has them as its engine's
    Deployment (first to collide) or, as a StatefulSet, only the Service: a Service accepts
    any rewrite, so there the object must not be taken over either."""
    ns = testbed_namespace
    start_operator("--namespace", ns)
    specs = {
        "demo": {"cache": {"l2": {"mode": "managed"}}},
        "demo-redis": {"replicas": 1, "cache": engine_l3},
    }
    uids = {
        name: cluster.create_novelengine(ns, name, spec)["metadata"]["uid"]
        for name, spec in specs.items()
    }

    stalled = wait_one_stalled(cluster, ns, list(specs))
    [standing] = set(specs) - {stalled}

    def controlled_by(uid: str) -> list[str]:
        return sorted(
            f"{kind}/{item['metadata']['name']}"
            for api_version, kind in CHILD_KINDS
            for item in cluster.list(api_version, kind, ns)
            if any(
                ref.get("controller") and ref["uid"] == uid
                for ref in item["metadata"].get("ownerReferences") or []
            )
        )

    # At most its settings ConfigMap, which the operator never deletes, outlives the undo.
    settings = [f"ConfigMap/{names.config_name(stalled)}"]
    cluster.wait(
        f"nothing of {stalled} left but its settings",
        lambda: None if (left := controlled_by(uids[stalled])) in ([], settings) else str(left),
        timeout=20,
    )
    blocked = cluster.novelengine(ns, stalled)
    assert blocked is not None
    assert "endpoint" not in blocked["status"]
    assert "/demo-redis already exists and belongs to" in str(blocked["status"])
    # The contested Service is the standing one's, never taken over, and it is not stalled.
    assert "Service/demo-redis" in controlled_by(uids[standing])
    assert stalled_among(cluster, ns, list(specs)) == [stalled]


def test_another_novelengines_child_stripped_of_its_owner_is_still_not_taken(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """Without ownerReferences a child still counts as its NovelEngine's by its instance
    label: every NovelEngine's children are applied by the one field manager."""
    ns = testbed_namespace
    start_operator("--namespace", ns)
    # A StatefulSet engine (the bed's claims stay Pending): the Service is the one name the
    # two share.
    cluster.create_novelengine(
        ns, "demo-redis", {"replicas": 1, "cache": {"l3": {"persistence": "pvc"}}}
    )
    cluster.wait(
        "Service/demo-redis",
        lambda: None if cluster.get("v1", "Service", ns, "demo-redis") else "not yet",
        timeout=30,
    )
    # Paused, it leaves the hand edit in place for as long as the test looks.
    cluster.patch_novelengine(
        ns, "demo-redis", {"metadata": {"annotations": {names.PAUSED_ANNOTATION: "true"}}}
    )
    wait_condition_message(
        cluster, ns, "demo-redis", names.CONDITION_RECONCILING, lambda m: "paused" in m
    )
    cluster.remove_field("v1", "Service", ns, "demo-redis", "/metadata/ownerReferences")
    before = cluster.get("v1", "Service", ns, "demo-redis")
    assert before is not None

    cluster.create_novelengine(ns, "demo", {"cache": {"l2": {"mode": "managed"}}})

    stalled = wait_condition_message(
        cluster, ns, "demo", names.CONDITION_STALLED, lambda message: "belongs to" in message
    )
    assert "Service/demo-redis already exists and belongs to someone else" in stalled["message"]
    after = cluster.get("v1", "Service", ns, "demo-redis")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert cluster.children(ns, "demo") == set()


def test_a_running_novelengine_meeting_a_new_ones_name_in_the_same_instant_changes_nothing(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """`demo` turns on its managed Redis as `demo-redis` is created: whichever loses, a running
    engine is never pointed at the other's objects."""
    ns = testbed_namespace
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, "demo", {"replicas": 1})
    cluster.wait_ready(ns, "demo")
    running = cluster.get(*DEPLOYMENT, ns, "demo")
    assert running is not None

    cluster.patch_novelengine(ns, "demo", {"spec": {"cache": {"l2": {"mode": "managed"}}}})
    cluster.create_novelengine(ns, "demo-redis", {"replicas": 1})

    if wait_one_stalled(cluster, ns, ["demo", "demo-redis"]) == "demo":
        deployment = cluster.get(*DEPLOYMENT, ns, "demo")
        assert deployment is not None
        assert deployment["metadata"]["generation"] == running["metadata"]["generation"]
        assert cluster.get("v1", "Secret", ns, names.redis_secret_name("demo")) is None
    else:
        cluster.wait_ready(ns, "demo")


def test_the_ready_message_names_a_pending_claim_and_waiting_containers(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    start_operator("--namespace", ns)
    cluster.create_novelengine(
        ns,
        "claims",
        {"cache": {"l3": {"persistence": "pvc"}}},  # the bed has no StorageClass
    )
    for name, reason in (("pulling", "ImagePullBackOff"), ("crashing", "CrashLoopBackOff")):
        cluster.create_novelengine(ns, name, {"pod": {"annotations": {CONTAINER_WAITING: reason}}})

    claims = wait_condition_message(
        cluster, ns, "claims", names.CONDITION_READY, lambda m: "PersistentVolumeClaim/" in m
    )
    assert claims["reason"] == names.REASON_PROGRESSING
    assert "PersistentVolumeClaim/data-claims-0 is Pending: " in claims["message"]
    assert "no storage class is set" in claims["message"]
    for name, reason in (("pulling", "ImagePullBackOff"), ("crashing", "CrashLoopBackOff")):
        waiting = wait_condition_message(
            cluster, ns, name, names.CONDITION_READY, lambda m: "blocked by" in m
        )
        assert (
            f"container engine is {reason}: simulated by the test bed: {reason}"
            in (waiting["message"])
        )
        reconciling = condition(cluster.novelengine(ns, name) or {}, names.CONDITION_RECONCILING)
        assert reconciling is not None
        assert reconciling["status"] == "True"


def test_with_a_managed_redis_that_cannot_start_the_novelengine_is_not_ready(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "unshared"
    start_operator("--namespace", ns)
    # More memory than any of the bed's nodes has: the Redis pod is never scheduled.
    redis = {"mode": "managed", "managed": {"memory": "4Ti"}}
    cluster.create_novelengine(ns, name, {"replicas": 1, "cache": {"l2": redis}})
    waiting = wait_condition_message(
        cluster, ns, name, names.CONDITION_READY, lambda m: "the managed Redis" in m
    )
    assert (waiting["status"], waiting["reason"]) == ("False", names.REASON_PROGRESSING)
    assert f"Deployment/{names.redis_name(name)}: 0/1 replicas ready" in waiting["message"]
    engine = cluster.get(*DEPLOYMENT, ns, name)
    assert engine is not None
    assert engine["status"].get("readyReplicas") == 1  # the engine itself serves
    # Once it has waited a while, the message names what holds the Redis pod up.
    blocked = wait_condition_message(
        cluster, ns, name, names.CONDITION_READY, lambda m: "is unschedulable" in m, timeout=90
    )
    assert (
        f"Deployment/{names.redis_name(name)}: 0/1 replicas ready; "
        f"blocked by Pod/{names.redis_name(name)}-"
    ) in blocked["message"]

    cluster.patch_novelengine(
        ns, name, {"spec": {"cache": {"l2": {"managed": {"memory": "256Mi"}}}}}
    )
    cluster.wait_ready(ns, name)


def test_a_new_kind_of_workload_takes_over_only_once_it_serves(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "switch"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"replicas": 2})
    cluster.wait_ready(ns, name)

    # To pvc, a StatefulSet: its pods wait for volume claims nothing here binds.
    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l3": {"persistence": "pvc"}}}})
    waiting = wait_condition_message(
        cluster, ns, name, names.CONDITION_READY, lambda m: "PersistentVolumeClaim/" in m
    )
    assert waiting["status"] == "False"
    deployment = cluster.get(*DEPLOYMENT, ns, name)
    assert deployment is not None, "the serving Deployment went before its successor served"
    assert deployment["status"]["readyReplicas"] == 2

    # Back to emptyDir: the Deployment serves already, so the StatefulSet goes.
    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l3": {"persistence": "emptyDir"}}}})
    cluster.wait_ready(ns, name)
    cluster.wait(
        "the StatefulSet deleted",
        lambda: None if cluster.get("apps/v1", "StatefulSet", ns, name) is None else "still there",
        timeout=30,
    )


def test_an_autoscaled_engine_changing_kind_starts_the_new_workload_at_the_old_ones_replicas(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "grown"
    start_operator("--namespace", ns)
    autoscaling = {"enabled": True, "minReplicas": 1, "maxReplicas": 5}
    cluster.create_novelengine(
        ns, name, {"autoscaling": {**autoscaling, "engine": {"inFlightPerPod": 8}}}
    )
    cluster.wait_ready(ns, name)
    cluster.scale(*DEPLOYMENT, ns, name, 3)  # as the autoscaler would under load
    wait_replicas(cluster, ns, name, 3)

    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l3": {"persistence": "pvc"}}}})

    def statefulset_replicas() -> str | None:
        found = cluster.get("apps/v1", "StatefulSet", ns, name)
        replicas = found["spec"]["replicas"] if found else None
        return None if replicas == 3 else f"StatefulSet replicas {replicas}"

    cluster.wait("the StatefulSet at the Deployment's 3 replicas", statefulset_replicas)
    deployment = cluster.get(*DEPLOYMENT, ns, name)
    assert deployment is not None  # serving until the StatefulSet does (its claims never bind)
    assert deployment["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ({"replicas": 1}, "Deployment"),  # its ReplicaSet's failure is a Deployment condition
        # A volume claim per replica: a StatefulSet, whose controller reports in Events.
        ({"replicas": 1, "cache": {"l3": {"persistence": "pvc"}}}, "StatefulSet"),
    ],
    ids=["deployment", "statefulset"],
)
def test_the_ready_message_names_pods_the_workload_controller_cannot_create(
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    spec: dict[str, Any],
    kind: str,
) -> None:
    ns, name = testbed_namespace, "quota"
    start_operator("--namespace", ns)
    cluster.create_quota(ns, "no-pods", {"pods": "0"})
    cluster.create_novelengine(ns, name, spec)

    quota = wait_condition_message(
        cluster, ns, name, names.CONDITION_READY, lambda m: "FailedCreate" in m
    )
    assert quota["reason"] == names.REASON_PROGRESSING
    assert quota["message"].startswith(f"{kind}: 0/1 replicas ready")
    assert "forbidden: exceeded quota: no-pods" in quota["message"]

    # Lifted: the pod is created and the quota is no longer named, though its Events stay.
    cluster.delete("v1", "ResourceQuota", ns, "no-pods")

    def pod_created_and_quota_not_named() -> str | None:
        obj = cluster.novelengine(ns, name) or {}
        ready = condition(obj, names.CONDITION_READY) if obj else None
        replicas = (obj.get("status") or {}).get("replicas")
        if replicas == 1 and ready is not None and "FailedCreate" not in ready["message"]:
            return None
        return f"replicas {replicas}, Ready {ready}"

    # (The workload's replica count and its failure condition may change in separate writes.)
    cluster.wait(f"{ns}/{name} past the quota", pod_created_and_quota_not_named)
    assert any(event["reason"] == "FailedCreate" for event in cluster.list("v1", "Event", ns))


def test_the_managed_redis_runs_where_the_engine_may_and_pulls_with_its_secrets(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "placed"
    start_operator("--namespace", ns)
    node = testbed.node_names[-1]
    toleration = {"key": "dedicated", "operator": "Equal", "value": "stories"}
    # The longest key a Pod takes: a 253-character DNS prefix, "/" and a 63-character name.
    longest_key = f"{'.'.join(['a' * 63, 'b' * 63, 'c' * 63, 'd' * 61])}/{'n' * 63}"
    tolerations = [toleration, {"key": longest_key, "operator": "Exists"}]
    cluster.create_novelengine(
        ns,
        name,
        {
            "cache": {"l2": {"mode": "managed"}},
            "imagePullSecrets": ["registry"],
            "pod": {"nodeSelector": {"kubernetes.io/hostname": node}, "tolerations": tolerations},
        },
    )
    cluster.wait_ready(ns, name)
    selector = names.selector_string(names.redis_selector(name))

    def redis_scheduled() -> str | None:
        pods = cluster.list("v1", "Pod", ns, selector)
        return None if pods and pods[0]["spec"].get("nodeName") else f"{pods}"

    cluster.wait("the Redis pod scheduled", redis_scheduled)
    [pod] = cluster.list("v1", "Pod", ns, selector)
    assert pod["spec"]["nodeName"] == node
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    keys = {"dedicated", longest_key}
    assert [t for t in pod["spec"]["tolerations"] if t.get("key") in keys] == tolerations


def test_an_apiserver_error_that_retrying_may_cure_is_a_warning_event_until_it_passes(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """A validating webhook that cannot be reached (failurePolicy Fail) makes the apiserver
    answer 500 to every Deployment write in the namespace: no status can say so before the
    first apply, so a Warning Event does, once for the run of failures."""
    ns, name = testbed_namespace, "guarded"
    webhook = f"unreachable-{ns}"
    cluster.create(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": webhook},
            "webhooks": [
                {
                    "name": "deployments.unreachable.test.novelengine.io",
                    # Nothing listens on port 1 of the loopback: every call fails at once.
                    "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                    "rules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 2,
                }
            ],
        }
    )
    try:
        # The apiserver loads a new webhook configuration a moment after it is created: until a
        # dry-run Deployment meets the webhook, the operator's first apply could pass.
        probe = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "probe", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {"containers": [{"name": "probe", "image": "probe"}]},
                },
            },
        }

        def webhook_called() -> str | None:
            try:
                cluster.dynamic.resources.get(api_version="apps/v1", kind="Deployment").create(
                    body=probe, namespace=ns, dry_run="All"
                )
            except ApiException as error:
                return None if "failed calling webhook" in str(error.body) else str(error)
            return "admitted"

        cluster.wait("the webhook to be called", webhook_called, 30)
        operator = start_operator("--namespace", ns, expected_failures=["failed calling webhook"])
        cluster.create_novelengine(ns, name, {"replicas": 1})

        def failures() -> list[str]:
            return [
                str(event["message"])
                for event in cluster.events(ns, name)
                if event["reason"] == "ReconcileFailed" and event["type"] == "Warning"
            ]

        cluster.wait("a ReconcileFailed Event", lambda: None if failures() else "no such Event", 30)
        [message] = failures()
        assert message.startswith("the apiserver answered 500, retrying with backoff: ")
        assert "failed calling webhook" in message
        assert cluster.get(*DEPLOYMENT, ns, name) is None
    finally:
        cluster.delete(
            "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", webhook
        )
    cluster.wait_ready(ns, name)  # the next retry passes
    assert len(failures()) == 1  # one Event for the run of failures, not one per retry
    # In the log, each failure is one line with the apiserver's words, not a traceback.
    logged = [r for r in operator.log_records() if "failed (attempt" in str(r.get("message"))]
    assert logged
    for record in logged:
        assert record["severity"] == "warn"
        assert "failed calling webhook" in record["message"]
        assert "exc_info" not in record
