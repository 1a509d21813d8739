"""The oldest Kubernetes the chart declares (kubeVersion, KUBERNETES_OLDEST_VERSION) accepts the
CRD, the chart and every child the operator writes: server-side dry-runs against that release's
own kube-apiserver, which keep every field sent (a field of a feature the release has off would
be dropped silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chart_harness import (
    CI_VALUES,
    Helm,
    children,
    create_namespace,
    dry_run_apply,
    install_crd,
    sample,
)
from testbed import Testbed, read_versions

from novel_operator import names
from novel_operator.builders import CHILD_KINDS
from novel_operator.crd import generate_crd

pytestmark = pytest.mark.integration

NAMESPACE = "novel-engine-system"
SERVED = ("stories", "stories-staging")  # ci/namespaced-values.yaml
#: Spec variants that, together with the sample, make every kind and shape of child.
VARIANTS: dict[str, dict[str, Any]] = {
    # Managed Redis (Deployment, Service, Secret), HPA, PDB, NetworkPolicies.
    "sample": sample()["spec"],
    # A StatefulSet with a volume claim per replica, external Redis, operator-scaled replicas.
    "statefulset-pvc": {
        "replicas": 3,
        "cache": {
            "l2": {"mode": "external", "external": {"urlSecretRef": {"name": "r", "key": "url"}}},
            "l3": {"persistence": "pvc", "size": "5Gi", "storageClassName": "fast"},
        },
        "autoscaling": {"enabled": True, "minReplicas": 3, "engine": {"inFlightPerPod": 4}},
        "networkPolicy": {"enabled": True, "allowedClients": [{"podSelector": {}}]},
    },
    # HPA on memory, PDB with a percentage, no L3.
    "hpa-memory": {
        "cache": {"l3": {"enabled": False}},
        "autoscaling": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 4,
            "targetMemoryUtilizationPercentage": 80,
        },
        "disruptionBudget": {"maxUnavailable": "50%"},
    },
}


@pytest.fixture(scope="module")
def oldest(oldest_apiserver: Testbed) -> Testbed:
    for namespace in (NAMESPACE, *SERVED):
        create_namespace(oldest_apiserver, namespace)
    return oldest_apiserver


def test_the_bed_runs_the_oldest_supported_release(oldest: Testbed) -> None:
    status, version = oldest.request("GET", "/version")
    assert status == 200
    assert version["gitVersion"] == read_versions()["KUBERNETES_OLDEST_VERSION"]


def test_the_operator_started_before_its_crd_exits_2_saying_so(oldest: Testbed) -> None:
    """(Before the next test installs the CRD.) Without it the watches would fail for good."""
    assert oldest.request("GET", f"/apis/{names.API_VERSION}")[0] == 404
    argv = ["run", "-n", SERVED[0], "--operator-namespace", NAMESPACE, "--listen", "127.0.0.1:1"]
    finished = subprocess.run(
        [sys.executable, "-c", "from novel_operator.cli import main; main()", *argv],
        env={"PATH": os.environ["PATH"], "KUBECONFIG": str(oldest.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (finished.returncode, finished.stderr.count("\n")) == (2, 1), finished.stderr
    assert finished.stderr == (
        f"novel-engine-operator: the NovelEngine CRD ({names.CRD_NAME}) is not installed;"
        " install it first (novel-engine-operator crd | kubectl apply --server-side -f -)\n"
    )


def test_the_crd_is_accepted_and_its_rules_run(oldest: Testbed) -> None:
    assert dry_run_apply(oldest, generate_crd()) is None
    install_crd(oldest, generate_crd())
    demo = {**sample(), "metadata": {"name": "demo", "namespace": SERVED[0]}}
    assert dry_run_apply(oldest, demo) is None
    # The CEL rules run here: requests above limits is refused by the quantity library.
    bad = {
        **demo,
        "spec": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
    }
    problem = dry_run_apply(oldest, bad)
    assert problem is not None
    assert "spec.resources.requests.memory" in problem


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_child_of_the_operator_is_accepted(oldest: Testbed, variant: str) -> None:
    built = children(SERVED[0], "demo", VARIANTS[variant])
    refused = [problem for manifest in built if (problem := dry_run_apply(oldest, manifest))]
    assert not refused
    kinds = {m["kind"] for m in built}
    assert kinds >= {"ConfigMap", "Service"}


def test_the_variants_cover_every_child_kind() -> None:
    built = {(m["apiVersion"], m["kind"]) for v in VARIANTS.values() for m in children("s", "d", v)}
    assert built == set(CHILD_KINDS)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "default")
def test_the_chart_is_accepted(
    helm: Helm,
    oldest: Testbed,
    prometheus_crd_manifests: list[dict[str, Any]],
    values: Path | None,
) -> None:
    for crd in prometheus_crd_manifests:
        install_crd(oldest, crd)
    manifests = helm.template(
        namespace=NAMESPACE,
        values=[values] if values else [],
        kube_version=read_versions()["KUBERNETES_OLDEST_VERSION"],
    )
    assert manifests
    refused = [problem for m in manifests if (problem := dry_run_apply(oldest, m))]
    assert not refused
