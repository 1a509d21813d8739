"""The pod-spec-to-`docker run` translation and the kubelet's volume layout (no Docker needed)."""

import base64
import os
from pathlib import Path
from typing import Any

import pytest

try:
    from podrun import (
        ClusterObjects,
        container_env,
        docker_run,
        expand_references,
        write_volume,
        write_volumes,
    )
except ModuleNotFoundError:  # tests/containers imported as a package
    from .podrun import (  # type: ignore[no-redef]
        ClusterObjects,
        container_env,
        docker_run,
        expand_references,
        write_volume,
        write_volumes,
    )

SECRET_KEY = {"name": "demo-auth", "key": "pw"}
POD: dict[str, Any] = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "terminationGracePeriodSeconds": 35,
    "volumes": [
        {"name": "config", "configMap": {"name": "demo-config"}},
        {"name": "auth", "secret": {"secretName": "demo-auth", "defaultMode": 0o440}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ],
    "containers": [
        {
            "name": "app",
            "image": "example/app:1",
            "command": ["server"],
            "args": ["--password", "$(PASSWORD)", "--literal", "$$(PASSWORD)", "$(UNSET)"],
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": SECRET_KEY}},
                {"name": "GREETING", "value": "pw=$(PASSWORD)"},
            ],
            "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi", "cpu": "2"}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app/config.yaml", "subPath": "config.yaml"},
                {"name": "auth", "mountPath": "/etc/app/auth", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "data", "mountPath": "/var/lib/app"},
                {"name": "cache", "mountPath": "/var/cache/app"},
            ],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
}  # fmt: skip

PASSWORD_BASE64 = base64.b64encode(b"s3cret").decode()
OBJECTS = ClusterObjects.from_manifests(
    [
        {"kind": "ConfigMap", "metadata": {"name": "demo-config"}, "data": {"config.yaml": "a"}},
        {"kind": "Secret", "metadata": {"name": "demo-auth"}, "data": {"pw": PASSWORD_BASE64}},
        {"kind": "Service", "metadata": {"name": "ignored"}},
    ]
)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(PW)", "s3cret"),
        ("--requirepass=$(PW)!", "--requirepass=s3cret!"),
        ("$$(PW)", "$(PW)"),  # escaped: never expanded
        ("$$", "$"),
        ("$(MISSING)", "$(MISSING)"),  # unknown names stay as written
        ("$(PW", "$(PW"),
        ("$PW", "$PW"),
        ("", ""),
    ],
)
def test_expand_references_follows_the_kubelet(text: str, expanded: str) -> None:
    assert expand_references(text, {"PW": "s3cret"}) == expanded


def test_env_resolves_secret_keys_and_expands_earlier_variables() -> None:
    assert container_env(POD["containers"][0], OBJECTS) == {
        "PASSWORD": "s3cret",
        "GREETING": "pw=s3cret",
    }


def test_env_naming_a_missing_key_is_an_error() -> None:
    container = {
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "demo-auth", "key": "nope"}}}]
    }
    with pytest.raises(ValueError, match="no key 'nope'"):
        container_env(container, OBJECTS)


def test_docker_run_carries_the_pod_spec(tmp_path: Path) -> None:
    paths = write_volumes(POD, OBJECTS, tmp_path)
    env = container_env(POD["containers"][0], OBJECTS)

    run = docker_run(POD, "app", env=env, volume_paths=paths, image="local/app:test")

    assert run.image == "local/app:test"
    # command replaces the entrypoint; args follow it, $(VAR) expanded as the kubelet does.
    assert run.args == ["--password", "s3cret", "--literal", "$(PASSWORD)", "$(UNSET)"]
    options = list(run.options)
    pairs = set(zip(options, [*options[1:], ""], strict=True))
    assert ("--entrypoint", "server") in pairs
    assert ("--env", "PASSWORD=s3cret") in pairs
    assert ("--user", "10001:10001") in pairs
    assert ("--group-add", "10001") in pairs
    assert ("--cap-drop", "ALL") in pairs
    assert ("--security-opt", "no-new-privileges") in pairs
    assert "--read-only" in options
    assert ("--memory", str(2**30)) in pairs
    assert ("--cpus", "2") in pairs
    assert ("--cpu-shares", "512") in pairs
    assert ("--stop-timeout", "35") in pairs
    config_file = (tmp_path / "config" / "..data" / "config.yaml").resolve()
    assert (
        "--mount",
        f"type=bind,source={config_file},target=/etc/app/config.yaml,readonly",
    ) in pairs
    auth = tmp_path / "auth"
    assert ("--mount", f"type=bind,source={auth},target=/etc/app/auth,readonly") in pairs
    # emptyDirs: a fresh folder anyone may write (on disk), or a tmpfs (medium: Memory).
    data = tmp_path / "data"
    assert ("--mount", f"type=bind,source={data},target=/var/lib/app") in pairs
    assert data.is_dir()
    assert data.stat().st_mode & 0o777 == 0o777
    assert ("--tmpfs", f"/var/cache/app:rw,exec,nosuid,nodev,mode=0777,size={64 * 2**20}") in pairs


def test_without_command_the_args_replace_the_image_cmd(tmp_path: Path) -> None:
    pod = {**POD, "containers": [{"name": "app", "image": "x", "args": ["--port", "1"]}]}
    run = docker_run(pod, "app", env={}, volume_paths={})
    assert run.args == ["--port", "1"]
    assert "--entrypoint" not in run.options


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}, "runAsUser 0"),
        ({"volumes": [{"name": "config", "hostPath": {"path": "/"}}]}, "hostPath"),
    ],
)
def test_what_cannot_be_honoured_is_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        docker_run({**POD, **change}, "app", env={}, volume_paths={})


def test_volumes_are_laid_out_like_the_kubelet_does(tmp_path: Path) -> None:
    volume = write_volume(tmp_path / "v", {"a.yaml": b"a", "b.json": b"{}"}, mode=0o440)

    data = volume / "..data"
    assert data.is_symlink()
    stamp = volume / os.readlink(data)
    assert stamp.name.startswith("..")
    assert stamp.is_dir()
    assert os.readlink(volume / "a.yaml") == "..data/a.yaml"
    assert (volume / "a.yaml").read_bytes() == b"a"
    assert (stamp / "b.json").stat().st_mode & 0o777 == 0o440
    # What a program listing the folder sees: the keys, plus the two hidden entries.
    assert sorted(p.name for p in volume.iterdir()) == sorted(
        ["a.yaml", "b.json", "..data", stamp.name]
    )
