"""Where the cluster comes from (kind, or an existing one) and how the product gets onto it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cluster import Cluster, run, wait_for
from options import E2EOptions

from novel_engine import __version__
from novel_operator import names

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "novel-engine-operator"
RELEASE = "novel-engine-operator"
METRICS_SERVER_URL = (
    "https://github.com/kubernetes-sigs/metrics-server/releases/download/{version}/components.yaml"
)


def tool(name: str) -> str:
    """A command from PATH, or a clear failure naming what provides it."""
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{name}` is not on PATH (see e2e/README.md, Prerequisites)")
    return found


def default_images() -> tuple[str, str]:
    """The image names `make images` builds and the chart and operator use by default."""
    return names.DEFAULT_ENGINE_IMAGE, f"novel-engine/operator:{__version__}"


def create_kind_cluster(options: E2EOptions, workdir: Path) -> Path:
    """A kind cluster with both images loaded and metrics-server running; its kubeconfig."""
    kind = tool("kind")
    kubeconfig = workdir / "kind.kubeconfig"
    clusters = run([kind, "get", "clusters"]).split()
    if options.cluster_name not in clusters:
        run(
            [
                kind, "create", "cluster", "--name", options.cluster_name,
                "--image", str(options.kind_node_image), "--wait", "180s",
            ],
            timeout=900,
        )  # fmt: skip
    run(
        [
            kind,
            "export",
            "kubeconfig",
            "--name",
            options.cluster_name,
            "--kubeconfig",
            str(kubeconfig),
        ]
    )
    engine, operator = default_images()
    images = [options.engine_image or engine, options.operator_image or operator]
    if not (options.engine_image and options.operator_image):
        run(["make", "-C", str(ROOT), "images"], timeout=1800)
    run([kind, "load", "docker-image", "--name", options.cluster_name, *images], timeout=900)
    kubectl = [tool("kubectl"), "--kubeconfig", str(kubeconfig)]
    url = METRICS_SERVER_URL.format(version=options.metrics_server_version)
    run([*kubectl, "apply", "-f", url])
    # kind's kubelets serve self-signed certificates.
    run(
        [
            *kubectl, "-n", "kube-system", "patch", "deployment", "metrics-server", "--type=json",
            "-p", '[{"op":"add","path":"/spec/template/spec/containers/0/args/-",'
            '"value":"--kubelet-insecure-tls"}]',
        ]
    )  # fmt: skip
    run(
        [
            *kubectl,
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deploy/metrics-server",
            "--timeout=300s",
        ]
    )
    return kubeconfig


def delete_kind_cluster(options: E2EOptions) -> None:
    run([tool("kind"), "delete", "cluster", "--name", options.cluster_name], timeout=300)


def existing_kubeconfig(options: E2EOptions) -> Path:
    if options.kubeconfig is not None:
        return options.kubeconfig
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(from_env) if from_env else Path.home() / ".kube" / "config"


def helm_install(cluster: Cluster, options: E2EOptions, values: dict[str, str]) -> None:
    """`helm upgrade --install` of the chart, waiting for its operator to be ready."""
    settings = [f"{key}={value}" for key, value in sorted(values.items())]
    run(
        [
            tool("helm"), "upgrade", "--install", RELEASE, str(CHART),
            "--kubeconfig", str(cluster.kubeconfig),
            "--namespace", options.release_namespace, "--create-namespace",
            "--wait", "--timeout", "5m",
            *(arg for setting in settings for arg in ("--set", setting)),
        ],
        timeout=400,
    )  # fmt: skip


def helm_uninstall(cluster: Cluster, options: E2EOptions) -> None:
    run(
        [
            tool("helm"), "uninstall", RELEASE, "--kubeconfig", str(cluster.kubeconfig),
            "--namespace", options.release_namespace, "--wait", "--timeout", "5m",
        ],
        timeout=400,
    )  # fmt: skip


def operator_values(options: E2EOptions) -> dict[str, str]:
    """Chart values for the operator image, when one is given."""
    if options.operator_image is None:
        return {}
    repository, _, tag = options.operator_image.rpartition(":")
    return {"image.repository": repository, "image.tag": tag}


class LocalOperator:
    """The operator as a local process, for clusters whose pods run no containers: it runs with
    the arguments of the chart's operator Deployment and the token of the chart's
    ServiceAccount, so it has exactly the permissions the chart grants."""

    def __init__(self, cluster: Cluster, namespace: str, workdir: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = workdir
        self.log_path = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _chart_container(self) -> dict[str, Any]:
        deployment = self.cluster.get("apps/v1", "Deployment", RELEASE, self.namespace)
        assert deployment is not None, f"the chart made no Deployment {self.namespace}/{RELEASE}"
        pod = deployment["spec"]["template"]["spec"]
        container: dict[str, Any] = pod["containers"][0]
        return container | {"serviceAccountName": pod["serviceAccountName"]}

    def start(self) -> None:
        container = self._chart_container()
        token = self.cluster.token(container["serviceAccountName"], self.namespace)
        kubeconfig = self.cluster.kubeconfig_for_token(token, self.workdir / "operator.kubeconfig")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # The operator's options take the last value given: these override the chart's. No
        # pod is scraped (the map is empty): the pods of such a cluster run nothing.
        addresses = self.workdir / "scrape-addresses.json"
        addresses.write_text("{}")
        argv = [
            str(Path(sys.executable).with_name("novel-engine-operator")),
            *container.get("args", []),
            "--listen", f"127.0.0.1:{self.port}",
            "--kubeconfig", str(kubeconfig),
            "--log-format", "text",
            "--scrape-address-map", str(addresses),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for("the local operator's /healthz", self._healthy, timeout=60, every=0.5)

    def _healthy(self) -> bool | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited:\n{self.log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return None

    def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would end it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def restart_operator_pod(cluster: Cluster, namespace: str) -> None:
    """Delete the chart's operator pod (its Deployment makes a new one) and wait for it."""
    selector = "app.kubernetes.io/name=novel-engine-operator"
    old = {pod["metadata"]["uid"] for pod in cluster.list("v1", "Pod", namespace, selector)}
    for pod in cluster.list("v1", "Pod", namespace, selector):
        cluster.core.delete_namespaced_pod(
            pod["metadata"]["name"], namespace, grace_period_seconds=0
        )

    def new_pod_ready() -> bool | None:
        for pod in cluster.list("v1", "Pod", namespace, selector):
            ready = [
                c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"
            ]
            if pod["metadata"]["uid"] not in old and ready and ready[0]["status"] == "True":
                return True
        return None

    wait_for("a new operator pod to be ready", new_pod_ready, timeout=180)
