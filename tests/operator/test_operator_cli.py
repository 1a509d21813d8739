"""`novel-engine-operator`: scope flags, listen address, and the printed CRD and RBAC."""

import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from novel_operator import names
from novel_operator.cli import build_parser, main
from novel_operator.handlers import operator_settings
from novel_operator.kube import auth
from novel_operator.rbac import RBAC_RULES


def test_run_serves_several_namespaces_or_all_of_them() -> None:
    args = build_parser().parse_args(["run", "-n", "a", "--namespace", "b"])
    assert args.namespaces == ["a", "b"]
    assert not args.all_namespaces
    assert build_parser().parse_args(["run", "--all-namespaces"]).all_namespaces


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],  # no scope
        ["run", "-A", "-n", "a"],  # both scopes
        ["run", "-A", "--listen", "8080"],  # no host separator
        ["run", "-A", "--resync-seconds", "0"],
        ["run", "-A", "--watch-timeout-seconds", "1.5"],  # the apiserver takes whole seconds
        ["run", "-n", "a/b"],  # no namespace name
        ["run", "-n", "Stories"],
        ["run", "-A", "--listen", "127.0.0.1:99999"],
        ["run", "-A", "--listen", "127.0.0.1:0"],
        ["run", "-A", "--resync-seconds", "nan"],
        ["run", "-A", "--resync-seconds", "inf"],
        ["run", "-A", "--scrape-timeout-seconds", "nan"],
        ["run", "-A", "--operator-namespace", "Foo_Bar"],
    ],
)
def test_run_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_listen_address_defaults_to_all_interfaces_and_parses_host_and_port() -> None:
    assert build_parser().parse_args(["run", "-A"]).listen == ("0.0.0.0", 8080)
    assert build_parser().parse_args(["run", "-A", "--listen", "127.0.0.1:9"]).listen == (
        "127.0.0.1",
        9,
    )
    assert build_parser().parse_args(["run", "-A", "--listen", "[::1]:9"]).listen == ("::1", 9)


def test_rbac_prints_a_cluster_role_with_exactly_the_operator_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["rbac"])
    role = yaml.safe_load(capsys.readouterr().out)
    assert role["kind"] == "ClusterRole"
    assert role["metadata"]["name"] == names.OPERATOR_APP
    assert role["rules"] == [rule.to_k8s() for rule in RBAC_RULES]


def test_crd_prints_the_custom_resource_definition(capsys: pytest.CaptureFixture[str]) -> None:
    main(["crd"])
    crd = yaml.safe_load(capsys.readouterr().out)
    assert crd["metadata"]["name"] == names.CRD_NAME


def test_outside_a_pod_run_requires_the_operator_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(auth, "SERVICE_ACCOUNT_NAMESPACE_FILE", tmp_path / "absent")

    with pytest.raises(SystemExit) as exited:
        main(["run", "-A"])

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: novel-engine-operator run ")
    assert "--operator-namespace is required outside a pod" in error


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        (None, "Invalid kube-config file. No configuration found. (without --kubeconfig:"),
        ("absent", "--kubeconfig {path}: no such file"),
        ("", "cluster credentials: Invalid kube-config. {path} file is empty"),
        ("{{{", "cluster credentials: while parsing"),  # (YAML)
        ("- a list", "cluster credentials: {path} is no kubeconfig ("),
        ("a-token-given-by-mistake", "cluster credentials: {path} is no kubeconfig ("),
    ],
)
def test_run_without_usable_credentials_exits_2_with_one_line(
    tmp_path: Path, kubeconfig: str | None, message: str
) -> None:
    """A real process, as a user starts it: no traceback."""
    path = tmp_path / "kubeconfig"
    if kubeconfig not in (None, "absent"):
        path.write_text(str(kubeconfig))
    argv = ["run", "-A", "--operator-namespace", "ops"]
    argv += ["--kubeconfig", str(path)] if kubeconfig is not None else []
    # (no $KUBECONFIG, no ~/.kube/config, not in a pod)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    run = [sys.executable, "-c", "from novel_operator.cli import main; main()", *argv]
    finished = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)

    assert finished.returncode == 2
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert finished.stderr.startswith("novel-engine-operator: ")
    assert message.format(path=path) in finished.stderr


def test_run_against_an_apiserver_that_does_not_answer_exits_1_with_one_line(
    tmp_path: Path,
) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        server = f"https://127.0.0.1:{unused.getsockname()[1]}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    argv = ["run", "-A", "--operator-namespace", "ops", "--kubeconfig", str(path)]
    run = [sys.executable, "-c", "from novel_operator.cli import main; main()", *argv]
    finished = subprocess.run(run, capture_output=True, text=True, timeout=60)

    assert (finished.returncode, finished.stderr.count("\n")) == (1, 1), finished.stderr
    assert finished.stderr.startswith(
        f"novel-engine-operator: cannot reach the apiserver at {server}: "
    )


def test_in_a_pod_the_operator_namespace_is_the_service_account_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace_file = tmp_path / "namespace"
    monkeypatch.setattr(auth, "SERVICE_ACCOUNT_NAMESPACE_FILE", namespace_file)
    assert auth.pod_namespace() is None

    namespace_file.write_text("novel-engine-system")  # the kubelet writes no newline

    assert auth.pod_namespace() == "novel-engine-system"


def test_failed_api_requests_are_retried_without_end_at_most_30_s_apart() -> None:
    # kopf re-raises once its delays run out, and the operator then exits.
    backoffs = operator_settings(watch_timeout=300).networking.error_backoffs
    assert not isinstance(backoffs, (int, float))
    first = list(itertools.islice(backoffs, 1000))
    assert first[:7] == [1, 2, 4, 8, 16, 30, 30]
    assert len(first) == 1000
    assert max(first) == 30
    assert list(itertools.islice(backoffs, 3)) == [1, 2, 4]  # every request starts afresh
