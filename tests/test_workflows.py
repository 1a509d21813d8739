"""The GitHub workflows parse, pin every action to a version, and run only what exists here:
Makefile targets, scripts and files of this repository."""

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
FILE_KEYS = ("file", "go-version-file")


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z0-9][a-z0-9-]*):", text, re.M))


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


#: make options that take a value as the next word.
MAKE_VALUE_OPTIONS = frozenset({"-C", "-f", "-j", "-o", "-W", "--directory", "--file"})


def simple_commands(script: str) -> list[list[str]]:
    """Each simple command of a `run:` script as shell words: lines, `;`, `&&`, `||`, `|` and
    command substitutions `$( ... )` separate them."""
    found = []
    for part in re.split(r"\|\||&&|[|;\n]|\$\(|\)", script):
        parsed = shlex.split(part.replace('"', " ").replace("'", " "), comments=True)
        if parsed:
            found.append(parsed)
    return found


def make_calls(script: str) -> list[str]:
    """The targets of every `make` a `run:` script calls (its options dropped)."""
    targets = []
    for command in simple_commands(script):
        if command[0] != "make":
            continue
        skip = False
        for word in command[1:]:
            if skip:
                skip = False
            elif word in MAKE_VALUE_OPTIONS:
                skip = True
            elif not word.startswith("-") and "=" not in word:
                targets.append(word)
    return targets


def words(script: str) -> list[str]:
    """Every shell word of a `run:` script."""
    return [word for command in simple_commands(script) for word in command]


def test_there_are_the_three_workflows() -> None:
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "e2e.yml", "release.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_actions_are_pinned_to_a_version(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    uses = [step["uses"] for step in steps(workflow) if "uses" in step]
    assert uses
    assert [use for use in uses if not PINNED.match(use)] == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_command_and_file_exists_here(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    targets = make_targets()
    missing: list[str] = []
    for step in steps(workflow):
        script = step.get("run", "")
        missing += [f"make {target}" for target in make_calls(script) if target not in targets]
        missing += [
            word
            for word in words(script)
            if word.startswith(("scripts/", "charts/")) and not (ROOT / word).exists()
        ]
        for key in FILE_KEYS:
            value = (step.get("with") or {}).get(key)
            if value and not (ROOT / value).exists():
                missing.append(value)
    assert missing == []


def test_make_calls_are_found_inside_substitutions_and_chains() -> None:
    script = 'v="$(make --silent version)"; make -C . e2e images && echo make\nmake test'
    assert make_calls(script) == ["version", "e2e", "images", "test"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_called_workflows_are_here_and_callable(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    for job in workflow["jobs"].values():
        if "uses" in job:
            called = ROOT / job["uses"]
            assert job["uses"].startswith("./"), job["uses"]
            assert called.exists(), job["uses"]
            # PyYAML reads the key `on` as True.
            assert "workflow_call" in yaml.safe_load(called.read_text())[True]


def test_the_e2e_workflow_installs_the_pinned_kind() -> None:
    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "scripts" / "k8s_versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e.yml").read_text())
    kind_steps = [step for step in steps(workflow) if step.get("uses", "").startswith("helm/kind")]
    assert [step["with"]["version"] for step in kind_steps] == [versions["KIND_VERSION"]]
