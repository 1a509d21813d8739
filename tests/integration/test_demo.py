"""`make demo` (scripts/k8s-testbed demo): a bed of its own, the operator and the sample turning
Ready, left running; `make demo-down` (scripts/k8s-testbed down) stops all of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testbed import Testbed, _pid_alive

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "k8s-testbed"
OPERATOR = Path(sys.executable).with_name("novel-engine-operator")

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("k8s_binaries")
def test_demo_leaves_a_ready_sample_running_until_down(tmp_path: Path) -> None:
    bed_dir = tmp_path / "bed"
    demo = [str(SCRIPT), "demo", "--dir", str(bed_dir), "--operator", str(OPERATOR)]
    try:
        done = subprocess.run(demo, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        assert "$ kubectl get ne -n demo" in done.stdout
        assert "The NovelEngine is Ready" in done.stdout
        assert "run no containers" in done.stdout
        tables = [line for line in done.stdout.splitlines() if line.startswith("demo ")]
        assert tables[-1].split()[1] == "True"  # the READY column of the last table
        state = json.loads((bed_dir / "demo.json").read_text())
        assert _pid_alive(state["pid"])
        assert Testbed.load(bed_dir).is_running()
    finally:
        down = subprocess.run(
            [str(SCRIPT), "down", "--dir", str(bed_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr
    assert not (bed_dir / "demo.json").exists()
    assert not _pid_alive(state["pid"])
    assert not Testbed.load(bed_dir).is_running()
