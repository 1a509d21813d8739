"""`helm install`, `helm upgrade` and `helm uninstall` of the chart on the test bed, and the real
operator process reconciling the sample NovelEngine to Ready with exactly the RBAC the chart
rendered (the token of the chart's ServiceAccount), cluster-wide and for listed namespaces.

On the bed the chart's own operator pod lands on a kwok node, turns Running and Ready, and runs
nothing; the operator that reconciles is a local process started with the chart's scope."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_harness import CHART, Helm, sample
from harness import (
    OPERATOR_BIN,
    AddressMap,
    Cluster,
    OperatorProcess,
    is_problem,
    operator_env,
)
from testbed import Testbed, free_port

from novel_operator import names

pytestmark = pytest.mark.integration


class Release:
    """One release of the chart in its own namespace, and admin access to what it made."""

    def __init__(self, helm: Helm, testbed: Testbed, watch: list[str]) -> None:
        suffix = secrets.token_hex(3)
        self.name = f"neo-{suffix}"
        self.namespace = f"neo-{suffix}-system"
        self.fullname = f"{self.name}-novel-engine-operator"
        self.helm = helm.on(testbed.kubeconfig)
        self.testbed = testbed
        self.watch = watch

    def helm_run(self, *args: str) -> str:
        return self.helm.run(*args, "--namespace", self.namespace).stdout

    def get(self, path: str) -> Any:
        status, body = self.testbed.request("GET", path)
        return body if status == 200 else None

    def deployment(self) -> Any:
        return self.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.fullname}")

    def operator_args(self) -> list[str]:
        [container] = self.deployment()["spec"]["template"]["spec"]["containers"]
        return list(container["args"])

    def scope(self) -> list[str]:
        """The operator's scope arguments in the chart's Deployment (`-A` or `--namespace`s)."""
        args = self.operator_args()
        return args[1 : args.index("--operator-namespace")]

    def rbac_paths(self) -> list[str]:
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        if not self.watch:
            return [
                f"{rbac}/{kind}/{self.fullname}" for kind in ("clusterroles", "clusterrolebindings")
            ]
        return [
            f"{rbac}/namespaces/{ns}/{kind}/{self.fullname}"
            for ns in self.watch
            for kind in ("roles", "rolebindings")
        ]

    def object_paths(self) -> list[str]:
        ns = f"/api/v1/namespaces/{self.namespace}"
        return [
            f"{ns}/serviceaccounts/{self.fullname}",
            f"{ns}/services/{self.fullname}-metrics",
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.fullname}",
            *self.rbac_paths(),
        ]


@pytest.fixture
def new_release(helm: Helm, testbed: Testbed) -> Iterator[Callable[[list[str]], Release]]:
    """`new_release(watch)`: a Release (not installed yet); uninstalled and its namespace deleted
    after the test, whatever the test left."""
    made: list[Release] = []

    def make(watch: list[str]) -> Release:
        made.append(Release(helm, testbed, watch))
        return made[-1]

    yield make
    for release in made:
        release.helm.run(
            "uninstall", release.name, "--namespace", release.namespace, "--ignore-not-found"
        )
        testbed.request("DELETE", f"/api/v1/namespaces/{release.namespace}")


def run_operator(release: Release, tmp_path: Path) -> OperatorProcess:
    """The operator as the chart's ServiceAccount, with the chart's own arguments; only where it
    listens (loopback), its credentials and an empty scrape map (no kwok pod is scraped) are
    the test's."""
    kubeconfig = release.testbed.token_kubeconfig(release.fullname, release.namespace)
    port = free_port()
    addresses = AddressMap(tmp_path / "addresses.json")
    # The operator's options take the last value given: these override the chart's.
    argv = [
        str(OPERATOR_BIN),
        *release.operator_args(),
        "--listen", f"127.0.0.1:{port}",
        "--kubeconfig", str(kubeconfig),
        "--resync-seconds", "2",
        "--scrape-address-map", str(addresses.path),
    ]  # fmt: skip
    operator = OperatorProcess(argv, operator_env(), tmp_path / "operator.log", port, addresses)
    operator.wait_healthy()
    return operator


@pytest.mark.parametrize("scope", ["all-namespaces", "listed-namespaces"])
def test_install_run_upgrade_uninstall(
    new_release: Callable[[list[str]], Release],
    testbed: Testbed,
    testbed_namespace: str,
    tmp_path: Path,
    scope: str,
) -> None:
    watch = [testbed_namespace] if scope == "listed-namespaces" else []
    release = new_release(watch)
    values = [f"watchNamespaces[{i}]={ns}" for i, ns in enumerate(watch)]
    # --take-ownership: the CRD may be there already (another release or test applied it).
    notes = release.helm_run(
        "install",
        release.name,
        str(CHART),
        "--create-namespace",
        "--take-ownership",
        "--wait",
        "--timeout",
        "120s",
        *[arg for value in values for arg in ("--set", value)],
    )
    assert "kubectl wait ne/demo" in notes
    assert all(release.get(path) for path in release.object_paths())
    assert release.deployment()["status"].get("readyReplicas") == 1  # on a kwok node

    operator = run_operator(release, tmp_path)
    cluster = Cluster(testbed.api_client(), testbed.wait_for)
    try:
        demo = sample()
        cluster.create_novelengine(testbed_namespace, demo["metadata"]["name"], demo["spec"])
        ready = cluster.wait_ready(testbed_namespace, demo["metadata"]["name"], timeout=120)
        assert ready["status"]["readyReplicas"] >= 2
    finally:
        assert operator.stop() == 0
    # Lines about other tests' NovelEngines (an -A operator sees every namespace) are theirs.
    problems = [
        record
        for record in operator.log_records()
        if is_problem(record)
        and (record.get("object") or {}).get("namespace", testbed_namespace) == testbed_namespace
    ]
    assert not problems, f"the chart's RBAC is not enough ({operator.log_path}): {problems[:3]}"

    # A changed value reaches the operator Deployment.
    generation = release.deployment()["metadata"]["generation"]
    release.helm_run(
        "upgrade",
        release.name,
        str(CHART),
        "--reuse-values",
        "--set",
        "operator.workers=2",
        "--set",
        "resources.limits.memory=384Mi",
        "--wait",
        "--timeout",
        "120s",
    )
    upgraded = release.deployment()
    assert upgraded["metadata"]["generation"] > generation
    args = release.operator_args()
    assert args[args.index("--workers") + 1] == "2"
    [container] = upgraded["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == "384Mi"
    # --reuse-values kept the scope.
    assert release.scope() == (
        [arg for ns in watch for arg in ("--namespace", ns)] or ["--all-namespaces"]
    )

    # Uninstall removes everything but the CRD, so NovelEngines survive it.
    release.helm_run("uninstall", release.name, "--wait", "--timeout", "120s")
    left = [path for path in release.object_paths() if release.get(path) is not None]
    assert not left
    assert release.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{names.CRD_NAME}")
    assert cluster.novelengine(testbed_namespace, demo["metadata"]["name"]) is not None
