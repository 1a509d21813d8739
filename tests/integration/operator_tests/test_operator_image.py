"""The operator image against the real control plane: run as a user id the image has no account
for (a chart's runAsUser, or a platform's random id) on a read-only root filesystem (a tmpfs on
/tmp), with no capabilities, it reconciles a NovelEngine and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest
from harness import AddressMap, Cluster, operator_argv
from testbed import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "containers"))
from docker_engine import DockerEngine, ProjectImages
from docker_fixtures import ci_bases, docker_engine, project_images

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.timeout(1800)]
__all__ = ["ci_bases", "docker_engine", "project_images"]

KUBECONFIG_IN_CONTAINER = "/etc/novel-engine-operator/kubeconfig"
MAP_IN_CONTAINER = "/etc/novel-engine-operator/addresses.json"
# Not the image's own user (10002): no passwd entry names this one.
UNLISTED_USER = "23456:23456"


def test_the_operator_image_reconciles_a_novelengine(
    docker_engine: DockerEngine,
    project_images: ProjectImages,
    cluster: Cluster,
    operator_kubeconfig: Path,
    testbed_namespace: str,
    tmp_path: Path,
) -> None:
    # The container's user reads the kubeconfig: a copy anyone may read, mounted read-only.
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(operator_kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)
    port = free_port()
    # No pod is scraped: the map of pod addresses the container reads is empty.
    addresses = AddressMap(tmp_path / "addresses.json")
    args = operator_argv(
        Path(KUBECONFIG_IN_CONTAINER), port, ("-n", testbed_namespace), 2.0, Path(MAP_IN_CONTAINER)
    )[1:]
    name = f"ne-operator-{secrets.token_hex(4)}"
    docker_engine.docker(
        "run", "--detach", "--name", name,
        "--network", "host",  # the apiserver listens on the host's loopback
        "--user", UNLISTED_USER,
        "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--mount", f"type=bind,source={kubeconfig},target={KUBECONFIG_IN_CONTAINER},readonly",
        "--mount", f"type=bind,source={addresses.path},target={MAP_IN_CONTAINER},readonly",
        project_images.operator, *args,
    )  # fmt: skip
    try:

        def healthy() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
                    return None if r.status == 200 else f"{r.status}"
            except OSError as error:
                return repr(error)

        cluster.wait("the operator container's /healthz", healthy, timeout=60)
        cluster.create_novelengine(testbed_namespace, "demo", {"replicas": 1})
        cluster.wait_ready(testbed_namespace, "demo")
        assert ("Deployment", "demo") in cluster.children(testbed_namespace, "demo")

        docker_engine.docker("stop", "--time", "20", name, timeout=80)
        state = docker_engine.docker("inspect", "--format", "{{json .State}}", name).stdout
        logs = docker_engine.docker("logs", name)
        assert json.loads(state)["ExitCode"] == 0, logs.stdout + logs.stderr
    finally:
        logs = docker_engine.docker("logs", "--tail", "40", name, check=False)
        print(f"operator container log (tail):\n{logs.stdout}{logs.stderr}")  # on failure
        docker_engine.docker("rm", "--force", name, check=False)
