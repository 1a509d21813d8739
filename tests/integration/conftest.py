"""Integration fixtures: one real Kubernetes control plane per test session.

Fixtures
--------
``testbed`` (session scope) -> ``testbed.Testbed``, ready to use:

- ``testbed.kubeconfig: Path`` admin kubeconfig (token auth, ``system:masters``);
  ``testbed.server: str`` (``https://127.0.0.1:<port>``), ``testbed.ca_file: Path``;
  ``testbed.env() -> dict[str, str]`` KUBECONFIG + PATH (kubectl, helm, ... first).
- ``testbed.api_client(kubeconfig: Path | None = None) -> kubernetes.client.ApiClient``
  (admin when no kubeconfig is given).
- ``testbed.service_account_kubeconfig(name: str, namespace: str, rules: Sequence[dict],
  *, cluster_scoped: bool = True, expiration_seconds: int = 86400) -> Path``: a kubeconfig for
  ServiceAccount ``namespace/name`` bound to exactly ``rules`` (RBAC PolicyRule dicts); run the
  code under test with it to prove its RBAC is enough. Audit user:
  ``system:serviceaccount:<namespace>:<name>``.
  ``testbed.token_kubeconfig(name: str, namespace: str) -> Path``: a kubeconfig holding a fresh
  token of an existing ServiceAccount, bound by whatever RBAC exists (e.g. a Helm chart's).
- Audit log (metadata level) of writes (create/update/patch/delete/deletecollection) and of
  ServiceAccounts' reads (get/list/watch; not kube-system's): ``testbed.audit_log: Path``;
  ``testbed.audit_mark() -> int`` (a position);
  ``testbed.audit_events(*, since=0, user=None, verbs=WRITE_VERBS, resource=None,
  namespace=None, exclude_resources=("events",)) -> list[AuditEvent]`` (fields verb, user,
  resource, subresource, namespace, name, api_group, code, raw);
  ``testbed.count_writes(**same filters) -> int``.
- ``testbed.logs_dir: Path`` (``<component>.log``), ``testbed.log_tail(lines=40) -> str``;
  failing tests that use the fixture get that tail in their report.
- ``testbed.node_names: list[str]`` kwok fake Nodes (no taints, Pods become Running/Ready;
  a Pod annotated ``test.novelengine.io/container-waiting: <reason>`` instead keeps its
  containers waiting with that reason, e.g. ``ImagePullBackOff``: see kwok-stages.yaml).
  Fake Pod/Node IPs are not on loopback: never connect to them.
- ``testbed.request(method, path, body=None, *, token=None, content_type=...)`` raw API call,
  ``testbed.apply(path, obj)`` server-side apply, ``testbed.wait_for(what, check, timeout)``.

``testbed_namespace`` (function scope) -> ``str``: a fresh namespace, deleted afterwards.

``kstatus_binary`` (session scope) -> ``Path``: sigs.k8s.io/cli-utils' kstatus as a command
(tools/kstatus): one object as JSON on stdin, ``{"status": ..., "message": ...}`` out.

The controller-manager runs its default controllers (garbage collector, namespace, deployment,
replicaset, HPA with a 5 s sync period, ...), ``--leader-elect=false``.

Binaries: ``make k8s-assets`` (scripts/k8s-assets). Missing binaries fail the tests when
``CI`` is set, else they are skipped with the reason. ``NOVEL_ENGINE_TESTBED_DIR=<dir>`` attaches
to a bed started by ``scripts/k8s-testbed up`` (e.g. ``.testbed``) instead of starting one; such
a bed is left running.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path

import pytest

try:
    from testbed import (
        REQUIRED_BINARIES,
        AssetsMissingError,
        Testbed,
        TestbedError,
        find_binaries,
    )
except ModuleNotFoundError:  # tests/integration imported as a package
    from .testbed import (  # type: ignore[no-redef]
        REQUIRED_BINARIES,
        AssetsMissingError,
        Testbed,
        TestbedError,
        find_binaries,
    )

_active: list[Testbed] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _binaries(names: Iterable[str]) -> dict[str, Path]:
    """Binaries built by scripts/k8s-assets; missing ones fail the test in CI and skip it
    elsewhere."""
    try:
        return find_binaries(names)
    except AssetsMissingError as exc:
        if _in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def k8s_binaries() -> dict[str, Path]:
    """The test bed's binaries."""
    return _binaries(REQUIRED_BINARIES)


@pytest.fixture(scope="session")
def kstatus_binary() -> Path:
    """sigs.k8s.io/cli-utils' kstatus as a command (tools/kstatus): an object on stdin, the
    status GitOps tools wait on out, as JSON."""
    return _binaries(["kstatus"])["kstatus"]


@pytest.fixture(scope="session")
def testbed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Testbed]:
    """The session's control plane (see the module docstring for its API)."""
    attach = os.environ.get("NOVEL_ENGINE_TESTBED_DIR")
    if attach:
        bed = Testbed.load(Path(attach))
        if not bed.is_running():
            pytest.fail(f"NOVEL_ENGINE_TESTBED_DIR={attach}: no running test bed there")
        _active.append(bed)
        yield bed
        _active.remove(bed)
        return
    binaries = request.getfixturevalue("k8s_binaries")
    bed = Testbed(tmp_path_factory.mktemp("testbed"), binaries=binaries)
    try:
        bed.start()
    except TestbedError as exc:
        pytest.fail(f"{exc}\n(logs: {bed.logs_dir})", pytrace=False)
    _active.append(bed)
    try:
        yield bed
    finally:
        _active.remove(bed)
        bed.stop()


@pytest.fixture
def testbed_namespace(testbed: Testbed) -> Iterator[str]:
    """A new namespace for one test; deletion is requested afterwards (not awaited)."""
    name = f"t-{secrets.token_hex(4)}"
    testbed.apply(
        f"/api/v1/namespaces/{name}",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    yield name
    testbed.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _active and "testbed" in getattr(item, "fixturenames", ()):
        bed = _active[-1]
        report.sections.append((f"test bed logs ({bed.logs_dir})", bed.log_tail(30)))
    return report
