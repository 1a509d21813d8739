"""Self-tests of the test bed: the real control plane does what the operator's tests rely on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

try:
    from testbed import READ_VERBS, Testbed, read_versions
except ModuleNotFoundError:  # tests/integration imported as a package
    from .testbed import READ_VERBS, Testbed, read_versions

pytestmark = pytest.mark.integration


def _labels(app: str) -> dict[str, str]:
    return {"app": app}


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "novel-engine/engine:test",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }


def test_version_is_stamped_and_tools_run(testbed: Testbed) -> None:
    status, body = testbed.request("GET", "/version")
    assert status == 200
    assert body["gitVersion"] == read_versions()["KUBERNETES_VERSION"]
    out = subprocess.run(
        ["kubectl", "get", "nodes", "-o", "json"],
        # The whole environment: without HOME kubectl caches discovery under the working dir.
        env={**os.environ, **testbed.env()},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names = {n["metadata"]["name"] for n in json.loads(out.stdout)["items"]}
    assert set(testbed.node_names) <= names
    helm = shutil.which("helm", path=testbed.env()["PATH"])
    assert helm, "helm missing: run scripts/k8s-assets"
    out = subprocess.run(
        [helm, "version", "--short"], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.startswith(read_versions()["HELM_VERSION"])


def test_namespaces_listable_and_deletion_completes(testbed: Testbed) -> None:
    with testbed.api_client() as api:
        core = client.CoreV1Api(api)
        names = {ns.metadata.name for ns in core.list_namespace().items}
        assert {"default", "kube-system"} <= names
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
        core.create_namespaced_config_map(
            "doomed", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "b"})
        )
        core.delete_namespace("doomed")

        def gone() -> str | None:
            try:
                ns = core.read_namespace("doomed")
            except ApiException as exc:
                return None if exc.status == 404 else str(exc)
            return f"phase {ns.status.phase}"

        testbed.wait_for("namespace doomed deleted", gone, timeout=60)


def test_deployment_reaches_two_ready_pods_on_kwok_nodes(
    testbed: Testbed, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    with testbed.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        apps.create_namespaced_deployment(ns, _deployment("web", 2))

        def ready() -> str | None:
            d = apps.read_namespaced_deployment("web", ns)
            return None if (d.status.ready_replicas or 0) == 2 else f"ready={d.status}"

        testbed.wait_for("2 ready replicas", ready, timeout=90)
        pods = core.list_namespaced_pod(ns, label_selector="app=web").items
        assert len(pods) == 2
        for pod in pods:
            assert pod.spec.node_name in testbed.node_names
            assert pod.status.phase == "Running"
            conds = {c.type: c.status for c in pod.status.conditions}
            assert conds.get("Ready") == "True"


def test_deleting_owner_garbage_collects_owned_configmap(
    testbed: Testbed, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    with testbed.api_client() as api:
        core = client.CoreV1Api(api)
        owner = core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        ref = client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
        core.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[ref])),
        )
        core.delete_namespaced_config_map("owner", ns)

        def collected() -> str | None:
            try:
                core.read_namespaced_config_map("owned", ns)
            except ApiException as exc:
                return None if exc.status == 404 else str(exc)
            return "owned ConfigMap still there"

        testbed.wait_for("garbage collection of the owned ConfigMap", collected, timeout=60)


def test_hpa_raises_replicas_to_min(testbed: Testbed, testbed_namespace: str) -> None:
    ns = testbed_namespace
    with testbed.api_client() as api:
        apps = client.AppsV1Api(api)
        apps.create_namespaced_deployment(ns, _deployment("scaled", 1))
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "scaled"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
                "minReplicas": 3,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        }
        client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(ns, hpa)

        def scaled() -> str | None:
            d = apps.read_namespaced_deployment("scaled", ns)
            return None if d.spec.replicas == 3 else f"spec.replicas={d.spec.replicas}"

        testbed.wait_for("HPA raising the Deployment to minReplicas", scaled, timeout=90)


def test_crd_with_structural_schema_established_and_validates(testbed: Testbed) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.testbed.example.com"},
        "spec": {
            "group": "testbed.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "colour": {"type": "string", "default": "blue"},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    with testbed.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(crd)

        def established() -> str | None:
            got = ext.read_custom_resource_definition("widgets.testbed.example.com")
            conds = {c.type: c.status for c in (got.status.conditions or [])}
            return None if conds.get("Established") == "True" else f"conditions {conds}"

        testbed.wait_for("CRD Established", established, timeout=30)
        custom = client.CustomObjectsApi(api)
        args = ("testbed.example.com", "v1", "default", "widgets")

        def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": "testbed.example.com/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": spec,
            }

        def create_good() -> str | None:  # the new resource may take a moment to be served
            try:
                custom.create_namespaced_custom_object(*args, widget("ok", {"size": 2}))
            except ApiException as exc:
                return None if exc.status == 409 else f"HTTP {exc.status}"
            return None

        testbed.wait_for("valid Widget accepted", create_good, timeout=30)
        stored = custom.get_namespaced_custom_object(*args, "ok")
        assert stored["spec"]["colour"] == "blue"  # default applied
        with pytest.raises(ApiException) as err:
            custom.create_namespaced_custom_object(*args, widget("bad", {"size": 0}))
        assert err.value.status == 422
        assert "spec.size" in str(err.value.body)


def test_service_account_kubeconfig_has_only_the_given_rights(
    testbed: Testbed, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]
    kubeconfig = testbed.service_account_kubeconfig("limited", ns, rules, cluster_scoped=False)
    mark = testbed.audit_mark()
    with testbed.api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="mine"))
        )
        assert [
            c.metadata.name
            for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name == "mine"
        ]
        with pytest.raises(ApiException) as err:
            core.list_namespaced_secret(ns)
        assert err.value.status == 403
        with pytest.raises(ApiException) as err:
            core.list_namespaced_config_map("default")  # a Role: this namespace only
        assert err.value.status == 403
        with pytest.raises(ApiException) as err:
            core.delete_namespaced_config_map("mine", ns)
        assert err.value.status == 403

    user = f"system:serviceaccount:{ns}:limited"

    def audited() -> str | None:
        events = testbed.audit_events(since=mark, user=user)
        verbs = sorted((e.verb, e.resource, e.code) for e in events)
        want = [("create", "configmaps", 201), ("delete", "configmaps", 403)]
        return None if verbs == want else f"audited {verbs}"

    testbed.wait_for("audit events of the ServiceAccount's writes", audited, timeout=10)
    assert testbed.count_writes(since=mark, user=user, verbs={"create"}) == 1
    reads = testbed.audit_events(since=mark, user=user, verbs=READ_VERBS)
    assert sorted((e.verb, e.resource, e.namespace, e.code) for e in reads) == [
        ("list", "configmaps", "default", 403),
        ("list", "configmaps", ns, 200),
        ("list", "secrets", ns, 403),
    ]
