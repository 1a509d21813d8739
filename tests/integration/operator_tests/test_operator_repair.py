"""The operator keeps children as the spec says: repairs drift, waits for missing references,
stops when paused, and picks up where it left off after a crash."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    DEPLOYMENT,
    Cluster,
    Obj,
    OperatorProcess,
    StartOperator,
    condition,
    condition_status,
    wait_events,
    wait_reconciles,
)
from testbed import Testbed

from novel_operator import names

pytestmark = pytest.mark.integration

#: Resync so rare that anything the tests see within their timeouts came from a watch event.
NO_RESYNC = 3600.0
#: On referenced ConfigMaps and Secrets: the operator watches them (else it reads them at the
#: next reconcile).
WATCHED = {names.WATCH_LABEL: names.WATCH_LABEL_VALUE}


def stalled_message(cluster: Cluster, namespace: str, name: str) -> str | None:
    obj = cluster.novelengine(namespace, name)
    found = condition(obj, names.CONDITION_STALLED) if obj else None
    return str(found["message"]) if found and found["status"] == "True" else None


def wait_stalled(cluster: Cluster, namespace: str, name: str, reason: str, needle: str) -> None:
    def check() -> str | None:
        obj = cluster.novelengine(namespace, name)
        found = condition(obj, names.CONDITION_STALLED) if obj else None
        if found and found["status"] == "True" and found["reason"] == reason:
            return None if needle in found["message"] else f"message: {found['message']}"
        return f"Stalled: {found}"

    cluster.wait(f"{namespace}/{name} Stalled ({reason})", check, timeout=30)


def test_deleted_and_hand_edited_children_are_repaired_from_watch_events(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "steady"
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.create_novelengine(ns, name, {"replicas": 2})
    cluster.wait_ready(ns, name)
    service = cluster.get("v1", "Service", ns, name)
    config = cluster.get("v1", "ConfigMap", ns, names.config_name(name))
    assert service is not None
    assert config is not None

    cluster.delete("v1", "Service", ns, name)
    cluster.patch("apps/v1", "Deployment", ns, name, {"spec": {"replicas": 5}})
    cluster.patch("v1", "ConfigMap", ns, names.config_name(name), {"data": {"config.yaml": "x: 1"}})
    # (the apiserver's OwnerReferencesPermissionEnforcement lets only a client that may delete
    # the ConfigMap put its ownerReference back)
    owners = "/metadata/ownerReferences"
    cluster.remove_field("v1", "ConfigMap", ns, names.config_name(name), owners)

    def repaired() -> str | None:
        new_service = cluster.get("v1", "Service", ns, name)
        deployment = cluster.get("apps/v1", "Deployment", ns, name)
        new_config = cluster.get("v1", "ConfigMap", ns, names.config_name(name))
        if new_service is None or new_service["metadata"]["uid"] == service["metadata"]["uid"]:
            return "Service not recreated"
        if deployment is None or deployment["spec"]["replicas"] != 2:
            return f"Deployment replicas {deployment and deployment['spec']['replicas']}"
        if new_config is None or new_config["data"] != config["data"]:
            return "ConfigMap data not restored"
        if new_config["metadata"].get("ownerReferences") != config["metadata"]["ownerReferences"]:
            return "ConfigMap ownerReference not restored"
        return None

    cluster.wait("children repaired", repaired, timeout=20)
    repairs = {
        f"Recreated Service/{name}",
        f"Repaired Deployment/{name}",
        f"Repaired ConfigMap/{names.config_name(name)}",
    }
    wait_events(cluster, ns, name, "Repaired", repairs)
    cluster.wait_ready(ns, name)


def test_a_safety_setting_of_false_removed_by_hand_is_put_back(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """`false` is what these fields are for: without them a container may gain privileges and
    a pod gets an API token, though both are the API's default."""
    ns, name = testbed_namespace, "guarded"
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.create_novelengine(ns, name, {"replicas": 1, "cache": {"l2": {"mode": "managed"}}})
    cluster.wait_ready(ns, name)
    deployments = (name, names.redis_name(name))
    removed = (
        "/spec/template/spec/automountServiceAccountToken",
        "/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation",
    )
    for deployment in deployments:
        for path in removed:
            cluster.remove_field(*DEPLOYMENT, ns, deployment, path)

    def restored() -> str | None:
        for deployment in deployments:
            found = cluster.get(*DEPLOYMENT, ns, deployment)
            assert found is not None
            pod = found["spec"]["template"]["spec"]
            if pod.get("automountServiceAccountToken") is not False:
                return f"{deployment}: automountServiceAccountToken not restored"
            if pod["containers"][0]["securityContext"].get("allowPrivilegeEscalation") is not False:
                return f"{deployment}: allowPrivilegeEscalation not restored"
        return None

    cluster.wait("the settings put back", restored, timeout=20)
    repairs = {f"Repaired Deployment/{deployment}" for deployment in deployments}
    wait_events(cluster, ns, name, "Repaired", repairs)


def test_ports_renumbered_by_hand_are_put_back(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """Ports are keyed by number: an apply alone would add the operator's port beside the
    renumbered one, under the same name, and be refused."""
    ns, name = testbed_namespace, "renumbered"
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.create_novelengine(ns, name, {"replicas": 1})
    cluster.wait_ready(ns, name)
    service = cluster.get("v1", "Service", ns, name)
    deployment = cluster.get(*DEPLOYMENT, ns, name)
    assert service is not None
    assert deployment is not None
    service_ports = service["spec"]["ports"]
    container_ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]

    cluster.replace_field("v1", "Service", ns, name, "/spec/ports/0/port", 1234)
    cluster.replace_field(
        *DEPLOYMENT, ns, name, "/spec/template/spec/containers/0/ports/0/containerPort", 9999
    )

    def restored() -> str | None:
        new_service = cluster.get("v1", "Service", ns, name)
        new_deployment = cluster.get(*DEPLOYMENT, ns, name)
        assert new_service is not None
        assert new_deployment is not None
        if new_service["spec"]["ports"] != service_ports:
            return f"Service ports {new_service['spec']['ports']}"
        pod = new_deployment["spec"]["template"]["spec"]
        if pod["containers"][0]["ports"] != container_ports:
            return f"container ports {pod['containers'][0]['ports']}"
        return None

    cluster.wait("the ports put back", restored, timeout=20)
    wait_events(
        cluster, ns, name, "Repaired", {f"Repaired Service/{name}", f"Repaired Deployment/{name}"}
    )
    cluster.wait_ready(ns, name)
    assert stalled_message(cluster, ns, name) is None


@pytest.mark.parametrize("cut", ["after-the-first-apply", "before-the-hand-over"])
def test_a_create_cut_short_is_finished_by_the_next_reconcile(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str, cut: str
) -> None:
    """A child is created by a field manager of its NovelEngine's own, then applied by the
    operator's, then let go by the first; an operator stopped in between leaves the creator
    owning fields: all of them, or some beside the operator's manager."""
    ns, name = testbed_namespace, "halfway"
    operator = start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    uid = cluster.create_novelengine(ns, name, {"replicas": 1})["metadata"]["uid"]
    cluster.wait_ready(ns, name)
    service = cluster.get("v1", "Service", ns, name)
    assert service is not None
    managers = {entry["manager"] for entry in service["metadata"]["managedFields"]}
    assert managers == {names.FIELD_MANAGER}  # the creator handed everything over
    operator.stop()

    creator = f"{names.FIELD_MANAGER}-create-{uid}"
    meta = service["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {**meta["labels"], "left": "over"},
            "ownerReferences": meta["ownerReferences"],
        },
        "spec": {"selector": service["spec"]["selector"], "ports": service["spec"]["ports"]},
    }
    if cut == "after-the-first-apply":  # the creator alone owns the Service
        cluster.delete("v1", "Service", ns, name)
        cluster.wait(
            "the Service gone",
            lambda: None if cluster.get("v1", "Service", ns, name) is None else "still there",
            timeout=20,
        )
    cluster.apply(body, field_manager=creator)
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)

    def handed_over() -> str | None:
        found = cluster.get("v1", "Service", ns, name)
        assert found is not None
        if creator in {entry["manager"] for entry in found["metadata"]["managedFields"]}:
            return f"{creator} still owns fields"
        return "its label is still there" if "left" in found["metadata"]["labels"] else None

    cluster.wait("the creator's fields handed over", handed_over, timeout=20)
    found = cluster.get("v1", "Service", ns, name)
    assert found is not None
    assert found["spec"]["selector"] == service["spec"]["selector"]
    assert found["metadata"]["ownerReferences"] == meta["ownerReferences"]
    cluster.wait_ready(ns, name)


def test_missing_references_stall_with_the_object_named_and_recover_when_a_watched_one_appears(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "library"
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.create_novelengine(ns, name, {"replicas": 1, "content": {"configMapName": "stories"}})

    wait_stalled(cluster, ns, name, names.REASON_INVALID_REFERENCE, 'ConfigMap "stories" not found')
    obj = cluster.novelengine(ns, name)
    assert obj is not None
    assert condition_status(obj, names.CONDITION_READY) == "False"
    assert cluster.get("apps/v1", "Deployment", ns, name) is None

    def stall_warned() -> str | None:  # (the operator posts its Events in the background)
        warnings = [e["message"] for e in cluster.events(ns, name) if e["type"] == "Warning"]
        return None if any('ConfigMap "stories"' in m for m in warnings) else str(warnings)

    cluster.wait("a Warning Event naming the ConfigMap", stall_warned, timeout=10)

    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "stories", "namespace": ns, "labels": WATCHED},
            "data": {"campaign.yaml": "id: tale\n"},
        }
    )
    cluster.wait_ready(ns, name)

    external = {"mode": "external", "external": {"urlSecretRef": {"name": "redis", "key": "url"}}}
    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l2": external}}})
    wait_stalled(cluster, ns, name, names.REASON_INVALID_REFERENCE, 'Secret "redis" not found')
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis", "namespace": ns, "labels": WATCHED},
            "stringData": {"host": "redis.example"},
        }
    )
    wait_stalled(
        cluster, ns, name, names.REASON_INVALID_REFERENCE, 'Secret "redis" has no key "url"'
    )
    cluster.patch(
        "v1", "Secret", ns, "redis", {"stringData": {"url": "redis://redis.example:6379"}}
    )
    cluster.wait_ready(ns, name)


def test_an_unwatched_reference_is_read_at_the_next_resync(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "shelf"
    start_operator("--namespace", ns, resync_seconds=3)
    cluster.create_novelengine(ns, name, {"replicas": 1, "content": {"configMapName": "tales"}})
    wait_stalled(cluster, ns, name, names.REASON_INVALID_REFERENCE, 'ConfigMap "tales" not found')

    cluster.create(  # no watch label: no event reaches the operator
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "tales", "namespace": ns},
            "data": {"campaign.yaml": "id: tale\n"},
        }
    )

    cluster.wait_ready(ns, name)


def template_annotation(
    cluster: Cluster,
    namespace: str,
    deployment: str,
    annotation: str = names.REDIS_PASSWORD_VERSION_ANNOTATION,
) -> str | None:
    """The value of `annotation` (default: the Redis credentials' version) on a Deployment's
    pod template."""
    found = cluster.get("apps/v1", "Deployment", namespace, deployment)
    assert found is not None
    annotations = found["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(annotation)


def wait_rolled(
    cluster: Cluster,
    namespace: str,
    selectors: dict[str, dict[str, str]],
    versions: dict[str, Any],
    annotation: str = names.REDIS_PASSWORD_VERSION_ANNOTATION,
) -> None:
    """Wait until each Deployment (name -> pod selector) runs only pods of a template whose
    version `annotation` differs from `versions[name]`: a new ReplicaSet serves, the old is
    empty."""

    def check() -> str | None:
        for deployment, selector in selectors.items():
            version = template_annotation(cluster, namespace, deployment, annotation)
            if version == versions[deployment]:
                return f"{deployment}: {annotation} still {version}"
            found = cluster.list(
                "apps/v1", "ReplicaSet", namespace, names.selector_string(selector)
            )
            for replica_set in found:
                annotations = replica_set["spec"]["template"]["metadata"].get("annotations") or {}
                current = annotations.get(annotation) == version
                ready = (replica_set.get("status") or {}).get("readyReplicas") or 0
                if (ready == replica_set["spec"]["replicas"] > 0) != current:
                    return (
                        f"{deployment}: ReplicaSet {replica_set['metadata']['name']} {ready} ready"
                    )
        return None

    cluster.wait(f"pods rolled to a new {annotation}", check, timeout=60)


def exposed_text(cluster: Cluster, operator: OperatorProcess, namespace: str, name: str) -> str:
    """Everything but the Secrets that a reader of this namespace or of the operator's log sees:
    workloads, ReplicaSets, pods, the NovelEngine with its status, Events, the log."""
    objects: list[Obj] = [cluster.novelengine(namespace, name) or {}]
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "Pod"),
        ("v1", "Event"),
    ):
        objects += cluster.list(api_version, kind, namespace)
    return json.dumps(objects, default=str) + operator.log_path.read_text(errors="replace")


@pytest.mark.parametrize("hand_edit", ["deleted", "emptied"])
def test_a_redis_password_removed_by_hand_comes_back_new_and_rolls_redis_and_the_engine(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str, hand_edit: str
) -> None:
    ns, name = testbed_namespace, "vault"
    operator = start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.create_novelengine(ns, name, {"replicas": 2, "cache": {"l2": {"mode": "managed"}}})
    cluster.wait_ready(ns, name)
    secret_name, redis = names.redis_secret_name(name), names.redis_name(name)
    old_secret = cluster.get("v1", "Secret", ns, secret_name)
    assert old_secret is not None
    versions = {
        deployment: template_annotation(cluster, ns, deployment) for deployment in (name, redis)
    }
    assert versions[name] is not None
    assert versions[name] == versions[redis]

    key = names.REDIS_PASSWORD_KEY
    if hand_edit == "deleted":
        cluster.delete("v1", "Secret", ns, secret_name)
    else:  # the Secret stays, without its password: no pod reading it could start
        cluster.patch("v1", "Secret", ns, secret_name, {"data": {key: None}})

    def renewed() -> str | None:
        found = cluster.get("v1", "Secret", ns, secret_name)
        password = ((found or {}).get("data") or {}).get(key)
        return None if password and password != old_secret["data"][key] else "no new password"

    cluster.wait("a new password in the Secret", renewed, timeout=20)
    selectors = {name: names.engine_selector(name), redis: names.redis_selector(name)}
    wait_rolled(cluster, ns, selectors, versions)
    cluster.wait_ready(ns, name)

    new_secret = cluster.get("v1", "Secret", ns, secret_name)
    assert new_secret is not None
    assert new_secret["data"] != old_secret["data"]
    assert template_annotation(cluster, ns, name) == template_annotation(cluster, ns, redis)
    for selector in selectors.values():
        found = cluster.list("apps/v1", "ReplicaSet", ns, names.selector_string(selector))
        assert len(found) == 2  # the old template's, scaled down, and the new one's
    passwords = [
        base64.b64decode(secret["data"][key]).decode() for secret in (old_secret, new_secret)
    ]
    exposed = exposed_text(cluster, operator, ns, name)
    assert not [password for password in passwords if password in exposed]
    expected = (
        f"Recreated Secret/{secret_name}"
        if hand_edit == "deleted"
        else f"Repaired Secret/{secret_name}: a new password under {key}"
    )
    wait_events(cluster, ns, name, "Repaired", {expected})


def controller_of(obj: Obj | None) -> str | None:
    """The uid in `obj`'s controller ownerReference (None: no such reference or no object)."""
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    return None


def test_the_redis_secret_gets_its_owner_back_and_is_deleted_with_the_novelengine(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    """Without its ownerReference the Secret, password and all, would outlive its NovelEngine."""
    ns, name = testbed_namespace, "keeper"
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    spec = {"replicas": 1, "cache": {"l2": {"mode": "managed"}}}
    first_uid = cluster.create_novelengine(ns, name, spec)["metadata"]["uid"]
    cluster.wait_ready(ns, name)
    secret_name = names.redis_secret_name(name)
    password = (cluster.get("v1", "Secret", ns, secret_name) or {})["data"]

    def owned_by(uid: str) -> Callable[[], str | None]:
        def check() -> str | None:
            found = cluster.get("v1", "Secret", ns, secret_name)
            owner = controller_of(found)
            return None if owner == uid else f"Secret controlled by {owner}"

        return check

    cluster.remove_field("v1", "Secret", ns, secret_name, "/metadata/ownerReferences")
    cluster.wait("the ownerReference put back", owned_by(first_uid), timeout=20)
    wait_events(cluster, ns, name, "Repaired", {f"Repaired Secret/{secret_name}"})
    # (A reconcile still running when the deletion below strips the ownerReferences could put
    # them back, and the garbage collector would then delete the children after all.)
    cluster.wait_ready(ns, name)

    # Deleted leaving its children, then applied again: a new NovelEngine adopts them.
    cluster.delete(names.API_VERSION, names.KIND, ns, name, propagation="Orphan")
    cluster.wait(
        "the NovelEngine gone",
        lambda: None if cluster.novelengine(ns, name) is None else "still there",
        timeout=30,
    )
    assert controller_of(cluster.get("v1", "Secret", ns, secret_name)) is None
    second_uid = cluster.create_novelengine(ns, name, spec)["metadata"]["uid"]
    cluster.wait("the Secret adopted", owned_by(second_uid), timeout=30)
    cluster.wait_ready(ns, name)
    assert (cluster.get("v1", "Secret", ns, secret_name) or {})["data"] == password

    cluster.delete(names.API_VERSION, names.KIND, ns, name)
    cluster.wait(
        "the Secret deleted with its NovelEngine",
        lambda: None if cluster.get("v1", "Secret", ns, secret_name) is None else "still there",
        timeout=30,
    )


def test_rotating_the_external_redis_secret_rolls_the_engine(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "rotor"
    operator = start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    old_url, new_url = "redis://:first-s3cret@redis.example:6379/0", "redis://:next-s3cret@r:6379/0"
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shared-redis", "namespace": ns, "labels": WATCHED},
            "stringData": {"url": old_url},
        }
    )
    external = {"urlSecretRef": {"name": "shared-redis", "key": "url"}}
    spec = {"replicas": 2, "cache": {"l2": {"mode": "external", "external": external}}}
    cluster.create_novelengine(ns, name, spec)
    cluster.wait_ready(ns, name)
    versions = {name: template_annotation(cluster, ns, name)}
    assert versions[name] is not None

    cluster.patch("v1", "Secret", ns, "shared-redis", {"stringData": {"url": new_url}})

    wait_rolled(cluster, ns, {name: names.engine_selector(name)}, versions)
    ne = cluster.wait_ready(ns, name)
    assert ne["status"]["observedGeneration"] == 1  # the spec did not change
    exposed = exposed_text(cluster, operator, ns, name)
    assert "first-s3cret" not in exposed
    assert "next-s3cret" not in exposed


def test_editing_the_content_rolls_the_engine_and_relabelling_it_does_not(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "scribe"
    operator = start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    content = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "stories", "namespace": ns, "labels": WATCHED},
        "data": {"characters.yaml": "characters: []\n"},
    }
    cluster.create(content)
    cluster.create_novelengine(ns, name, {"replicas": 2, "content": {"configMapName": "stories"}})
    cluster.wait_ready(ns, name)
    key = names.CONTENT_VERSION_ANNOTATION
    versions = {name: template_annotation(cluster, ns, name, key)}
    assert versions[name] is not None

    generation = cluster.get("apps/v1", "Deployment", ns, name)["metadata"]["generation"]

    # A label alone is no edit of the content: the operator looks (the ConfigMap is watched)
    # and leaves the template as it is, so no pod rolls.
    cluster.patch("v1", "ConfigMap", ns, "stories", {"metadata": {"labels": {"team": "lore"}}})
    wait_reconciles(cluster, operator, 1)
    deployment = cluster.get("apps/v1", "Deployment", ns, name)
    assert deployment["metadata"]["generation"] == generation

    edited = "characters:\n  - {name: Ada Quill, faction: Free Companies, archetype: engineer}\n"
    cluster.patch("v1", "ConfigMap", ns, "stories", {"data": {"characters.yaml": edited}})
    wait_rolled(cluster, ns, {name: names.engine_selector(name)}, versions, key)
    ne = cluster.wait_ready(ns, name)
    assert ne["status"]["observedGeneration"] == 1  # the spec did not change


def test_pause_stops_reconciliation_and_says_so(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "frozen"
    operator = start_operator("--namespace", ns, resync_seconds=0.5)
    cluster.create_novelengine(ns, name, {"replicas": 1})
    cluster.wait_ready(ns, name)

    cluster.patch_novelengine(
        ns, name, {"metadata": {"annotations": {names.PAUSED_ANNOTATION: "true"}}}
    )
    cluster.wait(
        "Reconciling says Paused",
        lambda: (
            None
            if (
                found := condition(cluster.novelengine(ns, name) or {}, names.CONDITION_RECONCILING)
            )
            and found["reason"] == names.REASON_PAUSED
            else f"Reconciling: {found}"
        ),
        timeout=20,
    )
    cluster.delete("v1", "Service", ns, name)
    cluster.patch_novelengine(ns, name, {"spec": {"replicas": 2, "service": {"port": 9090}}})
    wait_reconciles(cluster, operator, 4, timeout=20)  # several resyncs while paused
    obj = cluster.novelengine(ns, name)
    deployment = cluster.get("apps/v1", "Deployment", ns, name)
    assert obj is not None
    assert deployment is not None
    assert cluster.get("v1", "Service", ns, name) is None
    assert deployment["spec"]["replicas"] == 1
    assert obj["status"]["observedGeneration"] == 1  # generation 2 was not acted upon
    # Nor do the conditions (kubectl wait reads theirs) or the endpoint claim it.
    assert {c["observedGeneration"] for c in obj["status"]["conditions"]} == {1}
    assert obj["status"]["endpoint"] == names.endpoint(name, ns, 8080)

    cluster.patch_novelengine(
        ns, name, {"metadata": {"annotations": {names.PAUSED_ANNOTATION: None}}}
    )
    obj = cluster.wait_ready(ns, name)
    assert obj["status"]["readyReplicas"] == 2
    assert cluster.get("v1", "Service", ns, name) is not None
    assert obj["status"]["endpoint"] == names.endpoint(name, ns, 9090)


def test_operator_killed_midway_converges_after_restart_without_duplicates(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "phoenix"
    # A quota allowing no Services stops the first operator after the Secret, ConfigMap and
    # Deployment and before the Services: a reconcile cut off in the middle.
    cluster.create_quota(ns, "no-services", {"services": "0"})
    first = start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.create_novelengine(ns, name, {"replicas": 1, "cache": {"l2": {"mode": "managed"}}})
    wait_stalled(cluster, ns, name, names.REASON_APPLY_FAILED, "exceeded quota")
    secret = cluster.get("v1", "Secret", ns, names.redis_secret_name(name))
    deployment = cluster.get("apps/v1", "Deployment", ns, name)
    assert secret is not None
    assert deployment is not None
    assert cluster.get("v1", "Service", ns, name) is None
    first.kill()

    cluster.delete("v1", "ResourceQuota", ns, "no-services")
    start_operator("--namespace", ns, resync_seconds=NO_RESYNC)
    cluster.wait_ready(ns, name)

    expected = {
        ("ConfigMap", names.config_name(name)),
        ("Deployment", name),
        ("Service", name),
        ("Deployment", names.redis_name(name)),
        ("Service", names.redis_name(name)),
        ("Secret", names.redis_secret_name(name)),
    }
    assert cluster.children(ns, name) == expected
    secret_after = cluster.get("v1", "Secret", ns, names.redis_secret_name(name))
    deployment_after = cluster.get("apps/v1", "Deployment", ns, name)
    assert secret_after is not None
    assert deployment_after is not None
    assert secret_after["data"] == secret["data"]  # the password was not regenerated
    assert deployment_after["metadata"]["uid"] == deployment["metadata"]["uid"]
    assert deployment_after["metadata"]["generation"] == deployment["metadata"]["generation"]
    selector = names.selector_string(names.engine_selector(name))
    assert len(cluster.list("apps/v1", "ReplicaSet", ns, selector)) == 1
