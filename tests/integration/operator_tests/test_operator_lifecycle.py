"""A NovelEngine's life on the real control plane: created, changed, deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import (
    OPERATOR_SA_NAMESPACE,
    OPERATOR_USER,
    Cluster,
    StartOperator,
    condition_status,
    wait_events,
)
from testbed import Testbed

from novel_operator import names
from novel_operator.builders import build_redis_secret, desired_state
from novel_operator.model import NovelEngineSpec, Owner

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[3] / "crds" / "examples" / "novelengine.yaml"
DEPLOYMENT = ("apps/v1", "Deployment")


def expected_children(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every child the spec of `obj` calls for."""
    spec = NovelEngineSpec.model_validate(obj["spec"])
    owner = Owner.from_metadata(obj["metadata"])
    desired = desired_state(
        owner,
        spec,
        engine_replicas_owned_elsewhere=spec.replicas_writer != "spec",
        operator_namespace=OPERATOR_SA_NAMESPACE,
    )
    secret = build_redis_secret(owner, spec)
    generated = [secret] if secret is not None else []
    return {(m["kind"], m["metadata"]["name"]) for m in [*desired.apply, *generated]}


def config_hash(cluster: Cluster, namespace: str, name: str) -> str:
    deployment = cluster.get(*DEPLOYMENT, namespace, names.engine_name(name))
    assert deployment is not None
    return str(
        deployment["spec"]["template"]["metadata"]["annotations"][names.CONFIG_HASH_ANNOTATION]
    )


def engine_env(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    deployment = cluster.get(*DEPLOYMENT, namespace, names.engine_name(name))
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item for item in container.get("env") or []}


def test_sample_becomes_ready_with_every_child_and_pods_on_kwok_nodes(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    start_operator("--namespace", ns)
    sample = yaml.safe_load(SAMPLE.read_text())
    sample["metadata"]["namespace"] = ns
    name = sample["metadata"]["name"]
    cluster.create(sample)

    ne = cluster.wait_ready(ns, name, timeout=120)

    assert cluster.children(ns, name) == expected_children(ne)
    status = ne["status"]
    selector = names.selector_string(names.engine_selector(name))
    pods = cluster.list("v1", "Pod", ns, selector)
    assert len(pods) == status["readyReplicas"] == status["replicas"] >= 2  # HPA minReplicas
    for pod in pods:
        assert pod["spec"]["nodeName"] in testbed.node_names
        assert condition_status(pod, "Ready") == "True", pod["status"]
    assert status["selector"] == selector
    assert status["endpoint"] == f"{name}.{ns}.svc:8080"
    for condition_type in (names.CONDITION_RECONCILING, names.CONDITION_STALLED):
        assert condition_status(ne, condition_type) == "False", ne["status"]
    created = {f"Created {kind}/{child}" for kind, child in expected_children(ne)}
    wait_events(cluster, ns, name, "Created", created)
    # Disk: the CRD defaults the sizes, the pods' emptyDirs are bounded and requested.
    assert ne["spec"]["cache"]["l3"]["size"] == "1Gi"
    assert ne["spec"]["pod"]["tmpSizeLimit"] == "64Mi"
    for pod in pods:
        volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
        assert volumes["data"]["emptyDir"] == {"sizeLimit": "1Gi"}
        assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources["requests"]["ephemeral-storage"] == "1088Mi"
    redis = cluster.get(*DEPLOYMENT, ns, names.redis_name(name))
    assert redis is not None
    redis_pod = redis["spec"]["template"]["spec"]
    assert redis_pod["volumes"][0]["emptyDir"] == {"sizeLimit": "64Mi"}
    assert redis_pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "64Mi"


def test_spec_change_rolls_the_deployment_and_touches_nothing_else(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "roll"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"replicas": 2})
    cluster.wait_ready(ns, name)
    before = cluster.get(*DEPLOYMENT, ns, name)
    assert before is not None
    hash_before = before["spec"]["template"]["metadata"]["annotations"][
        names.CONFIG_HASH_ANNOTATION
    ]
    mark = testbed.audit_mark()

    cluster.patch_novelengine(ns, name, {"spec": {"engine": {"queueLimit": 999}}})
    ne = cluster.wait_ready(ns, name)

    assert ne["status"]["observedGeneration"] == 2
    assert config_hash(cluster, ns, name) != hash_before
    replica_sets = cluster.list(
        "apps/v1", "ReplicaSet", ns, names.selector_string(names.engine_selector(name))
    )
    assert len(replica_sets) == 2  # the old one scaled down, the new one serving
    written = {
        (event.resource, event.subresource, event.name)
        for event in testbed.audit_events(since=mark, user=OPERATOR_USER)
    }
    assert written == {
        ("configmaps", None, names.config_name(name)),
        ("deployments", None, name),
        ("novelengines", "status", name),
    }
    wait_events(cluster, ns, name, "Updated", {f"Updated ConfigMap/{names.config_name(name)}"})


def test_switching_l2_from_managed_to_none_removes_the_redis_objects(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "cached"
    start_operator("--namespace", ns)
    spec = {"replicas": 1, "cache": {"l2": {"mode": "managed"}}, "networkPolicy": {"enabled": True}}
    cluster.create_novelengine(ns, name, spec)
    ne = cluster.wait_ready(ns, name)
    redis = {
        ("Deployment", names.redis_name(name)),
        ("Service", names.redis_name(name)),
        ("Secret", names.redis_secret_name(name)),
    }
    assert redis <= cluster.children(ns, name) == expected_children(ne)
    assert "NOVEL_ENGINE_REDIS_PASSWORD" in engine_env(cluster, ns, name)

    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l2": {"mode": "none"}}}})
    ne = cluster.wait_ready(ns, name)

    cluster.wait(
        "Redis children removed",
        lambda: (
            None
            if cluster.children(ns, name) == expected_children(ne)
            else f"children: {sorted(cluster.children(ns, name))}"
        ),
        timeout=30,
    )
    assert not redis & cluster.children(ns, name)
    assert "NOVEL_ENGINE_REDIS_PASSWORD" not in engine_env(cluster, ns, name)
    wanted = {f"Deleted {kind}/{child}: no longer wanted" for kind, child in redis}
    wait_events(cluster, ns, name, "Deleted", wanted)


def test_deleting_a_novelengine_garbage_collects_every_child(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "doomed"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"replicas": 2, "cache": {"l2": {"mode": "managed"}}})
    cluster.wait_ready(ns, name)
    assert cluster.children(ns, name)

    cluster.delete(names.API_VERSION, names.KIND, ns, name)

    cluster.wait(
        "children garbage-collected",
        lambda: None if not cluster.children(ns, name) else str(sorted(cluster.children(ns, name))),
        timeout=60,
    )
    assert cluster.novelengine(ns, name) is None


def test_deleting_a_novelengine_while_the_operator_is_stopped_completes(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "orphan"
    operator = start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"replicas": 1})
    ne = cluster.wait_ready(ns, name)
    assert not ne["metadata"].get("finalizers")
    assert operator.stop() == 0

    cluster.delete(names.API_VERSION, names.KIND, ns, name)

    cluster.wait(
        "NovelEngine gone",
        lambda: None if cluster.novelengine(ns, name) is None else "still there",
        timeout=15,
    )
    cluster.wait(
        "children garbage-collected",
        lambda: None if not cluster.children(ns, name) else str(sorted(cluster.children(ns, name))),
        timeout=60,
    )
