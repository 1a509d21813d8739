"""Fixtures for the operator on the real control plane (tests/integration/conftest.py gives
`testbed` and `testbed_namespace`; these wrap them for the operator).

- `crd` (session): the NovelEngine CRD, applied from the operator's model, Established.
- `operator_kubeconfig` (session): a kubeconfig for the operator's ServiceAccount bound to
  exactly `novel_operator.rbac.RBAC_RULES`, so a missing permission fails the tests.
- `cluster` (session): `harness.Cluster`, admin access to arrange and assert.
- `start_operator(*scope, resync_seconds=..., kubeconfig=None, operator_namespace=...)`: starts
  `novel-engine-operator run` as that ServiceAccount (or with `kubeconfig`), waits for /healthz;
  every process is stopped (by PID) after the test, must exit 0 on SIGTERM and must not have
  logged an error. Its metric scrapes go only to the addresses in its `addresses` map (empty at
  first): never to a kwok pod IP.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from harness import (
    OPERATOR_SA_NAME,
    OPERATOR_SA_NAMESPACE,
    AddressMap,
    Cluster,
    OperatorProcess,
    StartOperator,
    is_problem,
    operator_argv,
    operator_env,
)
from testbed import Testbed, free_port

from novel_operator import names
from novel_operator.crd import generate_crd
from novel_operator.rbac import RBAC_RULES


@pytest.fixture(scope="session")
def crd(testbed: Testbed) -> None:
    testbed.apply(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{names.CRD_NAME}",
        generate_crd(),
    )

    def established() -> str | None:
        status, body = testbed.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{names.CRD_NAME}"
        )
        found = (body.get("status") or {}).get("conditions") or []
        conditions = {c["type"]: c["status"] for c in found}
        return None if conditions.get("Established") == "True" else f"{status} {conditions}"

    testbed.wait_for("NovelEngine CRD established", established, timeout=30)

    def served() -> str | None:
        status, body = testbed.request("GET", f"/apis/{names.API_VERSION}/{names.PLURAL}")
        return None if status == 200 else f"{status} {body}"

    testbed.wait_for("NovelEngine storage initialised", served, timeout=30)


@pytest.fixture(scope="session")
def operator_kubeconfig(testbed: Testbed) -> Path:
    return testbed.service_account_kubeconfig(
        OPERATOR_SA_NAME,
        OPERATOR_SA_NAMESPACE,
        [rule.to_k8s() for rule in RBAC_RULES],
        cluster_scoped=True,
    )


@pytest.fixture(scope="session")
def cluster(testbed: Testbed, crd: None) -> Cluster:
    return Cluster(testbed.api_client(), testbed.wait_for)


@pytest.fixture
def start_operator(crd: None, operator_kubeconfig: Path, tmp_path: Path) -> Iterator[StartOperator]:
    started: list[tuple[OperatorProcess, Sequence[str]]] = []

    def start(
        *scope: str,
        resync_seconds: float = 2.0,
        kubeconfig: Path | None = None,
        operator_namespace: str = OPERATOR_SA_NAMESPACE,
        options: Sequence[str] = (),
        expected_failures: Sequence[str] = (),
    ) -> OperatorProcess:
        """`expected_failures`: words of the failed reconciles the test brings about."""
        port = free_port()
        log_path = tmp_path / f"operator-{len(started)}.log"
        addresses = AddressMap(tmp_path / f"operator-{len(started)}-addresses.json")
        argv = operator_argv(
            kubeconfig or operator_kubeconfig,
            port,
            scope,
            resync_seconds,
            addresses.path,
            operator_namespace,
        ) + list(options)
        process = OperatorProcess(argv, operator_env(), log_path, port, addresses)
        started.append((process, expected_failures))
        process.wait_healthy()
        return process

    yield start
    for process, expected_failures in started:
        code = process.stop()
        assert code in (0, -9), f"operator exited with {code}:\n{process.log_tail()}"
        records = process.log_records()
        problems = [record for record in records if is_problem(record, expected_failures)]
        assert not problems, f"operator logged problems ({process.log_path}): {problems[:3]}"
