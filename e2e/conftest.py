"""The e2e suite's fixtures: a cluster from the chosen provider, the chart installed on it, and a
fresh namespace per scenario. Run it with `make e2e` (kind) or, against a cluster you have,
`pytest e2e --provider existing [--kubeconfig FILE] [--engine-image I --operator-image I]`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster
from manifests import E2E_LABEL
from options import OPTIONS, E2EOptions, OptionsError, parse_options
from providers import (
    LocalOperator,
    create_kind_cluster,
    delete_kind_cluster,
    existing_kubeconfig,
    helm_install,
    helm_uninstall,
    operator_values,
    restart_operator_pod,
)

#: Scenarios that need pods running real containers (traffic, rollouts, metrics).
REAL_PODS = "real_pods"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("novel-engine e2e")
    for flag, settings in OPTIONS:
        group.addoption(flag, **settings)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{REAL_PODS}: needs pods that run real containers")


@pytest.fixture(scope="session")
def options(pytestconfig: pytest.Config) -> E2EOptions:
    values = {flag.lstrip("-").replace("-", "_"): None for flag, _ in OPTIONS}
    try:
        return parse_options({key: pytestconfig.getoption(key) for key in values})
    except OptionsError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("simulated_pods"):
        return
    skip = pytest.mark.skip(reason="the cluster's pods run no containers (--simulated-pods)")
    for item in items:
        if REAL_PODS in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster(options: E2EOptions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    if options.provider == "kind":
        kubeconfig = create_kind_cluster(options, workdir)
    else:
        kubeconfig = existing_kubeconfig(options)
    try:
        yield Cluster(kubeconfig)
    finally:
        if options.provider == "kind" and not options.keep:
            delete_kind_cluster(options)


class Operator:
    """The chart's operator: a pod, or a local process where pods run nothing."""

    def __init__(self, cluster: Cluster, options: E2EOptions, workdir: Path) -> None:
        self._cluster = cluster
        self._namespace = options.release_namespace
        self.local = (
            LocalOperator(cluster, self._namespace, workdir) if options.simulated_pods else None
        )

    def start(self) -> None:
        if self.local is not None:
            self.local.start()

    def restart(self) -> None:
        """End the operator abruptly and bring it back."""
        if self.local is not None:
            self.local.kill()
            self.local.start()
        else:
            restart_operator_pod(self._cluster, self._namespace)

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


@pytest.fixture(scope="session")
def release(
    cluster: Cluster, options: E2EOptions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """The chart installed (operator, RBAC, CRD) with its operator running; uninstalled at the
    end unless a scenario did it already."""
    helm_install(cluster, options, operator_values(options))
    operator = Operator(cluster, options, tmp_path_factory.mktemp("operator"))
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
        if cluster.get("apps/v1", "Deployment", "novel-engine-operator", options.release_namespace):
            helm_uninstall(cluster, options)


@pytest.fixture
def namespace(cluster: Cluster, release: Operator) -> Iterator[str]:
    """A fresh namespace for one scenario, deleted afterwards."""
    name = f"e2e-{secrets.token_hex(3)}"
    cluster.create_namespace(name, {E2E_LABEL: "scenario"})
    try:
        yield name
    finally:
        cluster.delete("v1", "Namespace", name, None)
