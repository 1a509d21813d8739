"""What the operator asks of the apiserver, read from the audit log. Run as a ServiceAccount bound
to exactly `RBAC_RULES` by a Role in the one namespace it serves, through every code path that
needs a permission, the operator uses every verb of every rule that requests use (admission
checks the others, `admission_only`, as it admits writes of children), is refused nothing,
and lists and watches its children and the referenced ConfigMaps and Secrets only through label
selectors."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

import pytest
from harness import Cluster, StartOperator, condition
from testbed import READ_VERBS, WRITE_VERBS, AuditEvent, Testbed

from novel_operator import names
from novel_operator.rbac import RBAC_RULES

pytestmark = pytest.mark.integration

#: (API group, resource or resource/subresource, verb)
Grant = tuple[str, str, str]

WATCHED = {names.WATCH_LABEL: names.WATCH_LABEL_VALUE}
MANAGED_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
WATCH_SELECTOR = f"{names.WATCH_LABEL}={names.WATCH_LABEL_VALUE}"


def granted() -> set[Grant]:
    """What the requests should use: not the grants only admission checks (the testbed's
    apiserver runs OwnerReferencesPermissionEnforcement, so those are needed all the same)."""
    return {
        (group, resource, verb)
        for rule in RBAC_RULES
        if not rule.admission_only
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def resource_of(event: AuditEvent) -> str:
    return f"{event.resource}/{event.subresource}" if event.subresource else str(event.resource)


def used(events: Iterable[AuditEvent]) -> set[Grant]:
    """What the requests used. A server-side apply that created its object (a PATCH answered
    201) needed `create` as well as `patch`."""
    grants: set[Grant] = set()
    for event in events:
        if event.resource is None or event.code in (401, 403):  # discovery; refusals
            continue
        grants.add((event.api_group, resource_of(event), event.verb))
        if event.verb == "patch" and event.code == 201:
            grants.add((event.api_group, resource_of(event), "create"))
    return grants


def label_selector(event: AuditEvent) -> str:
    query = parse_qs(urlsplit(str(event.raw.get("requestURI", ""))).query)
    return query.get("labelSelector", [""])[0]


def test_every_granted_permission_is_used_none_is_refused_and_children_are_selected_by_label(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    kubeconfig = testbed.service_account_kubeconfig(
        "scoped-operator", ns, [rule.to_k8s() for rule in RBAC_RULES], cluster_scoped=False
    )
    user = f"system:serviceaccount:{ns}:scoped-operator"
    mark = testbed.audit_mark()
    start_operator("--namespace", ns, kubeconfig=kubeconfig, operator_namespace=ns)
    for kind, name, labels in (("ConfigMap", "stories", WATCHED), ("Secret", "shared-redis", {})):
        body = {"campaign.yaml": "id: tale\n"} if kind == "ConfigMap" else {"url": "redis://r:6379"}
        data_key = "data" if kind == "ConfigMap" else "stringData"
        cluster.create(
            {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                data_key: body,
            }
        )

    # A Deployment with every optional child: managed Redis (and its password Secret), an HPA,
    # a budget, NetworkPolicies, content from a watched ConfigMap.
    clients = [{"podSelector": {"matchLabels": {"role": "reader"}}}]
    cluster.create_novelengine(
        ns,
        "full",
        {
            "content": {"configMapName": "stories"},
            "cache": {"l2": {"mode": "managed"}},
            "autoscaling": {
                "enabled": True,
                "minReplicas": 2,
                "maxReplicas": 4,
                "targetCPUUtilizationPercentage": 70,
            },
            "networkPolicy": {"enabled": True, "allowedClients": clients},
        },
    )
    # A StatefulSet (a volume per replica) scaled by the operator, with an external Redis whose
    # Secret is not watched.
    external = {"urlSecretRef": {"name": "shared-redis", "key": "url"}}
    cluster.create_novelengine(
        ns,
        "volumes",
        {
            "cache": {
                "l2": {"mode": "external", "external": external},
                "l3": {"enabled": True, "persistence": "pvc"},
            },
            "autoscaling": {
                "enabled": True,
                "minReplicas": 2,
                "maxReplicas": 3,
                "engine": {"inFlightPerPod": 8},
            },
        },
    )
    cluster.wait_ready(ns, "full", timeout=120)
    policy = cluster.get("networking.k8s.io/v1", "NetworkPolicy", ns, "full")
    assert policy is not None
    assert policy["spec"]["ingress"][0]["from"][-1]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": ns}
    }

    def statefulset_scaled() -> str | None:
        found = cluster.get("apps/v1", "StatefulSet", ns, "volumes")
        return None if found and found["spec"]["replicas"] == 2 else f"StatefulSet {found}"

    cluster.wait("StatefulSet scaled to minReplicas", statefulset_scaled)

    # Its claims never bind (no StorageClass): the Ready message names the claim, read with
    # the volume controller's Events about it.
    def claim_named() -> str | None:
        found = cluster.novelengine(ns, "volumes")
        ready = condition(found, names.CONDITION_READY) if found else None
        return None if ready and "PersistentVolumeClaim/" in ready["message"] else f"{ready}"

    cluster.wait("the pending claim named", claim_named)

    # A child deleted by hand comes back.
    service = cluster.get("v1", "Service", ns, "full")
    assert service is not None
    cluster.delete("v1", "Service", ns, "full")

    def service_recreated() -> str | None:
        found = cluster.get("v1", "Service", ns, "full")
        return None if found and found["metadata"]["uid"] != service["metadata"]["uid"] else "gone"

    cluster.wait("Service recreated", service_recreated)

    # A password removed from its Secret by hand is written anew.
    secret, key = names.redis_secret_name("full"), names.REDIS_PASSWORD_KEY
    cluster.patch("v1", "Secret", ns, secret, {"data": {key: None}})

    def password_back() -> str | None:
        found = cluster.get("v1", "Secret", ns, secret) or {}
        return None if (found.get("data") or {}).get(key) else "no password"

    cluster.wait("the password written anew", password_back)

    # Every optional child dropped; the operator scales the Deployment itself.
    cluster.patch_novelengine(
        ns,
        "full",
        {
            "spec": {
                "cache": {"l2": {"mode": "none"}},
                "autoscaling": {
                    "minReplicas": 3,
                    "targetCPUUtilizationPercentage": None,
                    "engine": {"inFlightPerPod": 8},
                },
                "disruptionBudget": {"enabled": False},
                "networkPolicy": {"enabled": False},
            }
        },
    )
    cluster.patch_novelengine(
        ns, "volumes", {"spec": {"cache": {"l3": {"persistence": "emptyDir"}}}}
    )

    def only_the_basic_children_left() -> str | None:
        full, volumes = cluster.children(ns, "full"), cluster.children(ns, "volumes")
        if full != {("ConfigMap", "full-config"), ("Deployment", "full"), ("Service", "full")}:
            return f"full: {sorted(full)}"
        if ("StatefulSet", "volumes") in volumes:
            return f"volumes: {sorted(volumes)}"
        deployment = cluster.get("apps/v1", "Deployment", ns, "full")
        return None if deployment and deployment["spec"]["replicas"] == 3 else "not scaled to 3"

    cluster.wait("optional children deleted", only_the_basic_children_left)

    def requests() -> list[AuditEvent]:
        return testbed.audit_events(
            since=mark, user=user, verbs=READ_VERBS | WRITE_VERBS, exclude_resources=()
        )

    cluster.wait(
        "every granted permission used",
        lambda: (
            None if granted() <= used(requests()) else f"unused: {granted() - used(requests())}"
        ),
        timeout=30,
    )
    events = requests()
    refused = [(e.verb, resource_of(e), e.name) for e in events if e.code in (401, 403)]
    assert refused == []
    assert used(events) <= granted()

    selectors: dict[str, set[str]] = {}
    for event in events:
        if event.verb in ("list", "watch") and event.resource != names.PLURAL:
            selectors.setdefault(resource_of(event), set()).add(label_selector(event))
    for resource in ("configmaps", "secrets"):
        assert selectors.pop(resource) == {MANAGED_SELECTOR, WATCH_SELECTOR}
    # The autoscaler lists the engine pods of each NovelEngine with engine targets, by their
    # selector: both have them by now.
    assert selectors.pop("pods") == {
        names.selector_string(names.engine_selector(name)) for name in ("full", "volumes")
    }
    # A stuck rollout's claims by the engine selector; Events by field (the claim's name).
    volumes_selector = names.selector_string(names.engine_selector("volumes"))
    assert selectors.pop("persistentvolumeclaims") == {volumes_selector}
    assert selectors.pop("events") == {""}
    assert selectors
    assert all(found == {MANAGED_SELECTOR} for found in selectors.values()), selectors
