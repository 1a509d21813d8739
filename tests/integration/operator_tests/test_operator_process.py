"""The operator process: writes nothing when nothing changes, serves its metrics and liveness,
keeps to its namespaces; and the apiserver itself refuses invalid NovelEngines."""

from __future__ import annotations

import importlib.util
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from harness import (
    OPERATOR_USER,
    AddressMap,
    Cluster,
    StartOperator,
    operator_argv,
    operator_env,
    wait_condition,
    wait_reconciles,
)
from kubernetes.dynamic.exceptions import DynamicApiError
from testbed import Testbed, free_port

from novel_operator import names

pytestmark = pytest.mark.integration


def _invalid_specs() -> ModuleType:
    # Shared with the model's unit tests, which live outside this folder.
    path = Path(__file__).resolve().parents[2] / "operator" / "invalid_specs.py"
    spec = importlib.util.spec_from_file_location("invalid_specs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INVALID_SPECS = _invalid_specs().INVALID_SPECS


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    """A second namespace (`testbed_namespace` gives one per test)."""
    name = f"other-{secrets.token_hex(4)}"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.delete("v1", "Namespace", "", name)


#: Replicas set by the operator itself: autoscaling on engine metrics only (no HPA).
ENGINE_TARGETS_ONLY = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 4,
        "engine": {"inFlightPerPod": 8},
    }
}


@pytest.mark.parametrize(
    "spec",
    [
        {"replicas": 2, "cache": {"l2": {"mode": "managed"}}, "networkPolicy": {"enabled": True}},
        ENGINE_TARGETS_ONLY,
    ],
    ids=["spec-replicas", "engine-targets-only"],
)
def test_resyncs_of_a_converged_novelengine_write_nothing(
    testbed: Testbed,
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    spec: dict[str, object],
) -> None:
    ns, name = testbed_namespace, "quiet"
    operator = start_operator("--namespace", ns, resync_seconds=0.5)
    cluster.create_novelengine(ns, name, spec)
    obj = cluster.wait_ready(ns, name)
    if spec is ENGINE_TARGETS_ONLY:  # its pods are scraped (and fail: no engine behind them)
        wait_condition(cluster, ns, name, names.CONDITION_SCALING_ACTIVE, "False")
    mark = testbed.audit_mark()
    writes_counted = sum(
        value
        for key, value in operator.metrics().items()
        if key.startswith("novel_operator_api_writes_total{")
    )
    wait_reconciles(cluster, operator, 5)

    writes = testbed.audit_events(since=mark, user=OPERATOR_USER)
    assert writes == [], [(w.verb, w.resource, w.subresource, w.name) for w in writes]
    assert writes_counted == sum(
        value
        for key, value in operator.metrics().items()
        if key.startswith("novel_operator_api_writes_total{")
    )
    # Nothing of kopf's bookkeeping on the object: no finalizer, no annotations.
    assert not obj["metadata"].get("finalizers")
    assert not [
        key
        for key in obj["metadata"].get("annotations") or {}
        if key.startswith(("kopf.zalando.org/", names.ANNOTATION_PREFIX))
    ]


def test_operator_keeps_to_its_namespaces_and_reports_metrics_and_liveness(
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    other_namespace: str,
) -> None:
    ns, other, name = testbed_namespace, other_namespace, "scoped"
    operator = start_operator("--namespace", ns, resync_seconds=0.5)
    cluster.create_novelengine(ns, name, {"replicas": 1})
    cluster.create_novelengine(other, name, {"replicas": 1})
    cluster.wait_ready(ns, name)
    wait_reconciles(cluster, operator, 2, timeout=20)
    untouched = cluster.novelengine(other, name)
    assert untouched is not None
    assert "status" not in untouched
    assert cluster.get("apps/v1", "Deployment", other, name) is None

    assert operator.get("/healthz")[0] == 200
    metrics = operator.metrics()
    assert metrics['novel_operator_reconciles_total{result="ready"}'] >= 1
    # Created in three applies (a creator's own, ours, the creator's hand-over), none since.
    assert metrics['novel_operator_api_writes_total{resource="deployments",verb="apply"}'] == 3
    assert (
        metrics['novel_operator_api_writes_total{resource="novelengines/status",verb="apply"}'] >= 1
    )
    assert metrics["novel_operator_reconcile_duration_seconds_count"] >= 1
    assert metrics["novel_operator_novelengines"] == 1
    assert metrics["process_resident_memory_bytes"] > 0
    assert operator.stop() == 0

    start_operator("--all-namespaces")
    cluster.wait_ready(other, name)
    cluster.wait_ready(ns, name)


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_apiserver_refuses_an_invalid_novelengine_naming_the_field(
    cluster: Cluster, testbed_namespace: str, case: object
) -> None:
    spec, field_path = case.spec, case.field_path  # type: ignore[attr-defined]
    rule_message = case.rule_message  # type: ignore[attr-defined]
    obj = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "invalid", "namespace": testbed_namespace},
        "spec": spec,
    }
    resource = cluster.dynamic.resources.get(api_version=names.API_VERSION, kind=names.KIND)
    with pytest.raises(DynamicApiError) as refused:
        # Strict field validation, as kubectl sends it: unknown fields are errors, not warnings.
        resource.create(
            body=obj, namespace=testbed_namespace, query_params=[("fieldValidation", "Strict")]
        )
    assert refused.value.status in (400, 422)
    assert field_path in refused.value.summary()
    if rule_message is not None:  # the CEL rule pydantic evaluates, with the same message
        causes = json.loads(refused.value.body)["details"]["causes"]
        assert [cause["field"] for cause in causes] == [field_path]
        assert causes[0]["message"].endswith(f": {rule_message}"), causes


def test_apiserver_keeps_the_volume_claims_fixed_while_persistence_stays_pvc(
    cluster: Cluster, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "claims"

    def l3(**fields: Any) -> dict[str, Any]:
        return {"spec": {"cache": {"l3": fields}}}

    cluster.create_novelengine(ns, name, l3(persistence="pvc", size="1Gi")["spec"])
    for change in (l3(size="2Gi"), l3(storageClassName="fast")):
        with pytest.raises(DynamicApiError) as refused:
            cluster.patch_novelengine(ns, name, change)
        assert refused.value.status == 422
        causes = json.loads(refused.value.body)["details"]["causes"]
        assert [cause["field"] for cause in causes] == ["spec.cache.l3.size"]
        assert "fixed while persistence stays pvc" in causes[0]["message"]
    cluster.patch_novelengine(ns, name, l3(size="1024Mi"))  # the same amount
    # Leaving pvc, or on emptyDir, the size may change.
    cluster.patch_novelengine(ns, name, l3(persistence="emptyDir", size="2Gi"))
    cluster.patch_novelengine(ns, name, l3(size="3Gi"))
    cluster.patch_novelengine(ns, name, l3(persistence="pvc", size="4Gi"))
    stored = cluster.novelengine(ns, name)
    assert stored is not None
    assert stored["spec"]["cache"]["l3"]["size"] == "4Gi"


# The operator with one fault injected: its reconcile loop fails (no input reaches that now).
_FAILING_LOOP = """
import sys
from novel_operator import cli, controller

async def fail(self):
    raise RuntimeError("injected failure of the reconcile loop")

controller.Controller.run = fail
cli.main(sys.argv[1:])
"""


def test_a_failed_reconcile_loop_stops_the_operator_saying_why(
    crd: None, operator_kubeconfig: Path, testbed_namespace: str, tmp_path: Path
) -> None:
    argv = operator_argv(
        operator_kubeconfig,
        free_port(),
        ("--namespace", testbed_namespace),
        2.0,
        AddressMap(tmp_path / "addresses.json").path,
    )
    failing = subprocess.run(
        [sys.executable, "-c", _FAILING_LOOP, *argv[1:]],
        env=operator_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert failing.returncode == 1  # not running on without it, nor hanging
    records = [json.loads(line) for line in failing.stderr.splitlines() if line.startswith("{")]
    failed = [r for r in records if r.get("message") == "the reconcile loop failed; stopping"]
    assert failed, failing.stderr[-2000:]
    assert "injected failure of the reconcile loop" in json.dumps(failed[0])


def _bad_token_kubeconfig(testbed: Testbed, path: Path) -> Path:
    config = yaml.safe_load(testbed.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": "not-a-token-of-this-cluster"}
    path.write_text(yaml.safe_dump(config))
    return path


def _untrusting_kubeconfig(testbed: Testbed, path: Path) -> Path:
    """The admin kubeconfig without the bed's CA: the system's CAs do not vouch for it."""
    config = yaml.safe_load(testbed.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"].pop("certificate-authority", None)
        cluster["cluster"].pop("certificate-authority-data", None)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "case", ["credentials-refused", "no-grant", "untrusted-apiserver", "port-taken"]
)
def test_a_start_that_could_only_idle_fails_at_once_with_one_line(
    testbed: Testbed,
    crd: None,
    operator_kubeconfig: Path,
    testbed_namespace: str,
    tmp_path: Path,
    case: str,
) -> None:
    """Before, each of these ran on: watches retried for good (or a traceback), /healthz 200."""
    port = free_port()
    kubeconfig = {
        "credentials-refused": lambda: _bad_token_kubeconfig(testbed, tmp_path / "kubeconfig"),
        # A ServiceAccount granted nothing at all in the namespace it is told to serve.
        "no-grant": lambda: testbed.service_account_kubeconfig(
            "granted-nothing", testbed_namespace, [], cluster_scoped=False
        ),
        "untrusted-apiserver": lambda: _untrusting_kubeconfig(testbed, tmp_path / "kubeconfig"),
        "port-taken": lambda: operator_kubeconfig,
    }[case]()
    expected = {
        "credentials-refused": (2, "the apiserver refused the credentials (401 Unauthorized)"),
        "no-grant": (2, f"cannot list NovelEngines in namespace {testbed_namespace}: "),
        "untrusted-apiserver": (2, f"the apiserver at {testbed.server} is not trusted: "),
        "port-taken": (1, f"cannot serve /metrics and /healthz on 127.0.0.1:{port}: "),
    }[case]
    argv = operator_argv(
        kubeconfig,
        port,
        ("--namespace", testbed_namespace),
        2.0,
        AddressMap(tmp_path / "addresses.json").path,
    )
    with socket.create_server(("127.0.0.1", port)) if case == "port-taken" else nullcontext():
        finished = subprocess.run(
            argv, env=operator_env(), capture_output=True, text=True, timeout=60
        )

    assert (finished.returncode, finished.stderr.count("\n")) == (expected[0], 1), finished.stderr
    assert finished.stderr.startswith(f"novel-engine-operator: {expected[1]}"), finished.stderr
