"""The operator on the test bed's real control plane (kwok nodes): how fast a NovelEngine
becomes Ready, how much memory the operator needs for 200 of them, and how long 200 take.

    python -m bench.bench_operator            # starts its own test bed (needs make k8s-assets)
    NOVEL_ENGINE_TESTBED_DIR=.testbed python -m bench.bench_operator   # or uses a running one

Baselines from the same run, same bed: a bare one-replica Deployment applied directly (the
control plane's own create -> scheduled -> kwok Ready path, which every NovelEngine also
waits for), 200 such Deployments applied at once, and the operator's RSS while idle.
The operator runs as `novel-engine-operator run` with a ServiceAccount bound to its RBAC rules.
"""

import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from novel_operator import names
from novel_operator.crd import generate_crd
from novel_operator.rbac import RBAC_RULES

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 10
FLEET = 200
LATENCY_NAMESPACE = "bench-latency"
FLEET_NAMESPACE = "bench-fleet"
POLL = 0.02
SPEC = {"replicas": 1}
#: The operator's ServiceAccount (bound to its RBAC rules) and its own namespace.
OPERATOR_NAMESPACE = "novel-engine-system"
OPERATOR_SERVICE_ACCOUNT = "novel-engine-operator"


def load_testbed_module() -> ModuleType:
    path = ROOT / "tests" / "integration" / "testbed.py"
    spec = importlib.util.spec_from_file_location("novel_engine_testbed", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


tb = load_testbed_module()


@contextmanager
def bench_bed(nodes: int) -> Iterator[Any]:
    """The bed named by NOVEL_ENGINE_TESTBED_DIR, else a new one with `nodes` kwok nodes."""
    attach = os.environ.get("NOVEL_ENGINE_TESTBED_DIR")
    if attach:
        yield tb.Testbed.load(Path(attach))
        return
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as run_dir:
        bed = tb.Testbed(Path(run_dir), nodes=nodes)
        bed.start()
        try:
            yield bed
        finally:
            bed.stop()


def wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def request(bed: Any, method: str, path: str, body: Any = None) -> Any:
    status, out = bed.request(method, path, body)
    if status >= 300 and not (method == "DELETE" and status == 404):
        raise RuntimeError(f"{method} {path}: {status} {out}")
    return out


def novelengines_path(namespace: str) -> str:
    return f"/apis/{names.API_VERSION}/namespaces/{namespace}/{names.PLURAL}"


def deployments_path(namespace: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments"


def novelengine(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": SPEC,
    }


def bare_deployment(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "engine", "image": names.DEFAULT_ENGINE_IMAGE}]},
            },
        },
    }


def is_ready(kind: str, obj: dict[str, Any]) -> bool:
    """A Deployment with every replica ready, or a NovelEngine Ready for its generation."""
    status = obj.get("status") or {}
    if kind == "Deployment":
        return bool(status.get("readyReplicas", 0) >= obj["spec"]["replicas"])
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return False
    return any(
        c["type"] == names.CONDITION_READY and c["status"] == "True"
        for c in status.get("conditions") or []
    )


def apply_to_ready(bed: Any, collection: str, obj: dict[str, Any]) -> float:
    """Seconds from the create request to Ready."""
    started = time.perf_counter()
    request(bed, "POST", collection, obj)
    path = f"{collection}/{obj['metadata']['name']}"
    wait(f"{path} Ready", lambda: is_ready(obj["kind"], request(bed, "GET", path)), 120)
    return time.perf_counter() - started


def fleet_to_ready(bed: Any, collection: str, objects: list[dict[str, Any]]) -> float:
    """Seconds from the first create to every object Ready (creates sent 8 at a time)."""
    kind = objects[0]["kind"]
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda obj: request(bed, "POST", collection, obj), objects))

    def all_ready() -> bool:
        items = request(bed, "GET", collection)["items"]
        return len(items) == len(objects) and all(is_ready(kind, item) for item in items)

    wait(f"{len(objects)} objects in {collection} Ready", all_ready, 600)
    return time.perf_counter() - started


def delete_all(bed: Any, namespace: str) -> None:
    request(bed, "DELETE", deployments_path(namespace))
    wait(
        f"pods of {namespace} gone",
        lambda: not request(bed, "GET", f"/api/v1/namespaces/{namespace}/pods")["items"],
        300,
    )


class Operator:
    """`novel-engine-operator run` as a child process of the benchmark, serving `namespaces`
    (none: all of them)."""

    def __init__(
        self, kubeconfig: Path, namespaces: list[str], log: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.port = tb.free_port()
        argv = [str(Path(sys.executable).with_name("novel-engine-operator")), "run"]
        for namespace in namespaces:
            argv += ["--namespace", namespace]
        if not namespaces:
            argv.append("--all-namespaces")
        argv += ["--operator-namespace", OPERATOR_NAMESPACE]
        argv += ["--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{self.port}"]
        argv += extra_args
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        wait("operator /healthz", self.healthy, 60)

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"operator exited with {self.process.returncode}")
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def rss(self) -> tuple[int, int]:
        """(resident, peak resident) bytes, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def prepare(bed: Any, namespaces: Sequence[str] = (LATENCY_NAMESPACE, FLEET_NAMESPACE)) -> Path:
    """The CRD, `namespaces`, and a kubeconfig of the operator's ServiceAccount."""
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{names.CRD_NAME}"
    bed.apply(crd_path, generate_crd())
    wait(
        "NovelEngines served",
        lambda: bed.request("GET", f"/apis/{names.API_VERSION}/{names.PLURAL}")[0] == 200,
        60,
    )
    for namespace in namespaces:
        namespace_object = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace},
        }
        bed.apply(f"/api/v1/namespaces/{namespace}", namespace_object)
    kubeconfig: Path = bed.service_account_kubeconfig(
        OPERATOR_SERVICE_ACCOUNT, OPERATOR_NAMESPACE, [rule.to_k8s() for rule in RBAC_RULES]
    )
    return kubeconfig


def mib(value: float) -> str:
    return f"{value / (1 << 20):.0f} MiB"


def main() -> None:
    with bench_bed(3) as bed, tempfile.TemporaryDirectory(prefix="bench-operator-log-") as logs:
        kubeconfig = prepare(bed)
        operator = Operator(kubeconfig, [LATENCY_NAMESPACE, FLEET_NAMESPACE], Path(logs) / "op.log")
        try:
            time.sleep(2)  # let the watches settle before the idle reading
            idle_rss, _ = operator.rss()

            bare, managed = [], []
            for index in range(SAMPLES):  # interleaved, so noise hits both alike
                ns = LATENCY_NAMESPACE
                bare.append(
                    apply_to_ready(bed, deployments_path(ns), bare_deployment(ns, f"b{index}"))
                )
                managed.append(
                    apply_to_ready(bed, novelengines_path(ns), novelengine(ns, f"n{index}"))
                )
            bare_p50, managed_p50 = statistics.median(bare), statistics.median(managed)

            ns = FLEET_NAMESPACE
            bare_fleet = fleet_to_ready(
                bed, deployments_path(ns), [bare_deployment(ns, f"b{i}") for i in range(FLEET)]
            )
            delete_all(bed, ns)
            fleet = fleet_to_ready(
                bed, novelengines_path(ns), [novelengine(ns, f"n{i}") for i in range(FLEET)]
            )
            fleet_rss, peak_rss = operator.rss()
        finally:
            operator.stop()
            for namespace in (LATENCY_NAMESPACE, FLEET_NAMESPACE):
                request(bed, "DELETE", f"/api/v1/namespaces/{namespace}")

    print(f"operator benchmark (test bed, kwok nodes; {SAMPLES} samples, fleet of {FLEET})")
    print(
        f"  apply -> Ready p50        NovelEngine {managed_p50:.2f} s | bare Deployment "
        f"{bare_p50:.2f} s | ratio {managed_p50 / bare_p50:.2f}"
    )
    print(f"  apply -> Ready samples    {', '.join(f'{s:.2f}' for s in managed)}")
    print(
        f"  {FLEET} Ready             NovelEngines {fleet:.1f} s | bare Deployments "
        f"{bare_fleet:.1f} s | ratio {fleet / bare_fleet:.2f}"
    )
    print(
        f"  operator RSS              {FLEET} reconciled {mib(fleet_rss)} (peak {mib(peak_rss)}) "
        f"| idle {mib(idle_rss)} | ratio {fleet_rss / idle_rss:.2f}"
    )


if __name__ == "__main__":
    main()
