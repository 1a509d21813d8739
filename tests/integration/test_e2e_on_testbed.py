"""The e2e suite (e2e/) as `make test` can run it: it collects, and the scenarios that need no
real pods pass with `--provider existing --simulated-pods` on a control plane of their own (the
chart installs a cluster-wide operator and the CRD, which the other tests' bed must not share)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import Testbed

ROOT = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "e2e", "-p", "no:cacheprovider"]
SCENARIOS = {
    "test_10_install.py::test_the_sample_becomes_ready": "passed",
    "test_10_install.py::test_simulations_through_the_service_share_the_redis_tier": "skipped",
    "test_20_scaling.py::test_load_scales_up_and_back_down": "skipped",
    "test_30_rollouts.py::test_a_spec_change_rolls_without_failed_requests": "skipped",
    "test_30_rollouts.py::test_a_content_edit_rolls_without_failed_requests": "skipped",
    "test_40_lifecycle.py::test_the_operator_killed_mid_way_converges": "passed",
    "test_40_lifecycle.py::test_deleting_a_novelengine_removes_every_child": "passed",
    "test_90_uninstall.py::test_uninstall_leaves_only_the_crd": "passed",
}

pytestmark = pytest.mark.integration


def test_the_suite_collects_every_scenario() -> None:
    done = subprocess.run(
        [*PYTEST, "--collect-only", "-q", "--provider", "existing"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    collected = {line.removeprefix("e2e/") for line in done.stdout.splitlines() if "::" in line}
    assert collected == set(SCENARIOS)


@pytest.fixture
def own_testbed(tmp_path: Path, k8s_binaries: dict[str, Path]) -> Iterator[Testbed]:
    bed = Testbed(tmp_path / "bed", binaries=k8s_binaries)
    try:
        bed.start()
        yield bed
    finally:
        bed.stop()


def outcomes(junit: Path) -> dict[str, str]:
    """Each test case of a JUnit XML report as `file.py::name` -> passed/skipped/failed."""
    found = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        module = str(case.get("classname", "")).rpartition(".")[2]
        outcome = "passed"
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                outcome = {"skipped": "skipped"}.get(child.tag, "failed")
        found[f"{module}.py::{case.get('name')}"] = outcome
    return found


def test_scenarios_without_real_pods_pass_on_a_control_plane(
    own_testbed: Testbed, tmp_path: Path
) -> None:
    junit = tmp_path / "e2e.xml"
    done = subprocess.run(
        [
            *PYTEST, "--provider", "existing", "--simulated-pods",
            "--kubeconfig", str(own_testbed.kubeconfig), f"--junitxml={junit}", "-q",
        ],
        cwd=ROOT, env={**os.environ, **own_testbed.env()},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert outcomes(junit) == SCENARIOS
