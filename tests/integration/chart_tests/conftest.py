"""Fixtures of the chart tests (tests/integration/conftest.py gives `testbed`).

- `helm` (session): `chart.Helm`, the helm binary from scripts/k8s-assets with its own state
  folder; `helm.on(kubeconfig)` for commands that talk to a cluster.
- `oldest_apiserver` (module): etcd + the kube-apiserver of the oldest supported release
  (KUBERNETES_OLDEST_VERSION), nothing else: a `Testbed` with `apiserver_only=True`.
- `prometheus_crd_manifests` (session): the ServiceMonitor and PodMonitor CRDs (from the
  prometheus-operator module source, cached by scripts/k8s-assets); `prometheus_crds`
  (session): those applied to `testbed`.

Missing binaries fail the tests when CI is set, else they are skipped with the reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

# The operator's test harness (OperatorProcess, operator_argv, Cluster) lives beside its
# conftest; pytest puts that folder on sys.path only when it collects tests there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator_tests"))

from chart_harness import Helm, install_crd
from testbed import (
    AssetsMissingError,
    Testbed,
    TestbedError,
    cache_dir,
    find_binaries,
    find_oldest_binaries,
    read_versions,
)

PROMETHEUS_CRD_FILES = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_podmonitors.yaml",
)


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = find_binaries(["helm"])["helm"]
    except AssetsMissingError as exc:
        _missing(str(exc))
    return Helm(binary, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def oldest_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    try:
        binaries = find_oldest_binaries()
    except AssetsMissingError as exc:
        _missing(str(exc))
    bed = Testbed(tmp_path_factory.mktemp("oldest"), binaries=binaries, apiserver_only=True)
    try:
        bed.start()
    except TestbedError as exc:
        pytest.fail(f"{exc}\n(logs: {bed.logs_dir})", pytrace=False)
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def prometheus_crd_manifests() -> list[dict[str, Any]]:
    """The ServiceMonitor and PodMonitor CRDs scripts/k8s-assets copied from the
    prometheus-operator module source."""
    version = read_versions()["PROMETHEUS_OPERATOR_VERSION"]
    folder = cache_dir() / f"prometheus-operator-crds-{version}"
    manifests = []
    for name in PROMETHEUS_CRD_FILES:
        if not (folder / name).is_file():
            _missing(f"{folder / name} is missing; run `make k8s-assets`")
        manifests.append(yaml.safe_load((folder / name).read_text()))
    return manifests


@pytest.fixture(scope="session")
def prometheus_crds(testbed: Testbed, prometheus_crd_manifests: list[dict[str, Any]]) -> None:
    for crd in prometheus_crd_manifests:
        install_crd(testbed, crd)
