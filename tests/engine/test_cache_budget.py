"""The default L1 byte budget follows the container's cgroup memory limit."""

from pathlib import Path

import pytest

from novel_engine.cache import FALLBACK_L1_BYTES, default_l1_bytes, memory_limit


def make_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    make_file(tmp_path / "cg" / "memory.max", "1073741824\n")
    make_file(tmp_path / "self", "0::/\n")
    assert memory_limit(tmp_path / "cg", tmp_path / "self") == 1 << 30
    assert default_l1_bytes(tmp_path / "cg", tmp_path / "self") == (1 << 30) // 10


def test_cgroup_v1_nested_limit_wins_when_tighter(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    make_file(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    make_file(root / "memory" / "pods" / "abc" / "memory.limit_in_bytes", "536870912\n")
    make_file(tmp_path / "self", "4:memory:/pods/abc\n3:cpu,cpuacct:/pods/abc\n0::/\n")
    assert memory_limit(root, tmp_path / "self") == 512 << 20


@pytest.mark.parametrize("text", ["max\n", "9223372036854771712\n"])
def test_unlimited_falls_back(tmp_path: Path, text: str) -> None:
    make_file(tmp_path / "cg" / "memory.max", text)
    assert memory_limit(tmp_path / "cg", tmp_path / "missing") is None
    assert default_l1_bytes(tmp_path / "cg", tmp_path / "missing") == FALLBACK_L1_BYTES


def test_no_cgroup_files_at_all(tmp_path: Path) -> None:
    assert default_l1_bytes(tmp_path / "none", tmp_path / "missing") == FALLBACK_L1_BYTES
