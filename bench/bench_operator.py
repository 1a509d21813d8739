"""The operator on the test bed's real control plane (kwok nodes): how fast a NovelEngine
becomes Ready, how long a fleet of them takes, how closely their status follows their pods, and
how much memory the operator needs for the fleet.

    python -m bench.bench_operator               # a fleet of 200; starts its own test bed
    python -m bench.bench_operator --fleet 1000  # sizes the bed for it (Nodes, Service range)
    NOVEL_ENGINE_TESTBED_DIR=.testbed python -m bench.bench_operator   # or uses a running one

Baselines from the same run, same bed: a bare one-replica Deployment applied directly (the
control plane's own create -> scheduled -> kwok Ready path, which every NovelEngine also
waits for), as many such Deployments applied at once as the fleet has NovelEngines, and the
operator's RSS while idle. Status lag is, per NovelEngine of the fleet, the time from its pod
turning Ready to the NovelEngine's status saying Ready, both as seen by watches of this process.
The operator runs as `novel-engine-operator run` with a ServiceAccount bound to its RBAC rules.
"""

import argparse
import http.client
import importlib.util
import ipaddress
import json
import math
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.bench_http import cpu_seconds
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
#: Pods per kwok Node the bench fills (a Node holds 110).
PODS_PER_NODE = 100
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


def service_cidr_for(services: int) -> str:
    """A Service range from 10.96.0.0 (a /24 at least) with room for 8 times `services`: the
    apiserver picks ClusterIPs at random, and retries each pick that is taken."""
    prefix = min(24, 32 - math.ceil(math.log2(8 * services)))
    return str(ipaddress.ip_network(f"10.96.0.0/{prefix}"))


@contextmanager
def bench_bed(nodes: int, service_cidr: str = tb.SERVICE_CIDR) -> Iterator[Any]:
    """The bed named by NOVEL_ENGINE_TESTBED_DIR, else a new one with `nodes` kwok nodes and
    the Service range `service_cidr`."""
    attach = os.environ.get("NOVEL_ENGINE_TESTBED_DIR")
    if attach:
        yield tb.Testbed.load(Path(attach))
        return
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as run_dir:
        bed = tb.Testbed(Path(run_dir), nodes=nodes, service_cidr=service_cidr)
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


def request(bed: Any, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
    status, out = bed.request(method, path, body, timeout=timeout)
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


def is_ready(kind: str, obj: Mapping[str, Any]) -> bool:
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


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class ReadyWatch:
    """Watches the collection at `path` (with `query`, e.g. a label selector) on a thread of its
    own and records when each object first turned ready (`time.monotonic()`, by `key_of`, which
    may return None for objects it does not care about). A context manager: leaving it stops
    the watch."""

    def __init__(
        self,
        bed: Any,
        path: str,
        key_of: Callable[[Mapping[str, Any]], str | None],
        ready: Callable[[Mapping[str, Any]], bool],
        query: str = "",
    ) -> None:
        self.ready_at: dict[str, float] = {}
        self._bed = bed
        self._path = path
        self._query = query
        self._key_of = key_of
        self._ready = ready
        self._stopping = threading.Event()
        self._connection: http.client.HTTPSConnection | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self._thread.start()

    def __enter__(self) -> "ReadyWatch":
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        if self._connection is not None and self._connection.sock is not None:
            self._connection.sock.shutdown(2)  # ends the blocking read
        self._thread.join(10)

    def wait_for(self, keys: Sequence[str], timeout: float) -> float:
        """When the last of `keys` turned ready."""

        def done() -> bool:
            if self._failure is not None:
                raise RuntimeError(f"watch of {self._path} failed") from self._failure
            return all(key in self.ready_at for key in keys)

        wait(f"{len(keys)} objects of {self._path} ready", done, timeout)
        return max(self.ready_at[key] for key in keys)

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self._bed.ca_file))
        resource_version = ""
        try:
            while not self._stopping.is_set():
                self._connection = http.client.HTTPSConnection(
                    "127.0.0.1", self._bed.ports["apiserver"], context=context
                )
                query = f"watch=true&timeoutSeconds=3600&resourceVersion={resource_version}"
                self._connection.request(
                    "GET",
                    f"{self._path}?{query}{self._query}",
                    headers={"Authorization": f"Bearer {self._bed.admin_token}"},
                )
                response = self._connection.getresponse()
                if response.status != 200:
                    raise RuntimeError(f"{response.status} {response.read()[:500]!r}")
                for line in response:
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":  # e.g. expired: start from the current state
                        resource_version = ""
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    key = self._key_of(obj)
                    if key is not None and key not in self.ready_at and self._ready(obj):
                        self.ready_at[key] = time.monotonic()
                self._connection.close()
        except (OSError, ValueError, RuntimeError, http.client.HTTPException) as error:
            if not self._stopping.is_set():
                self._failure = error


def name_of(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def create_all(bed: Any, collection: str, objects: list[dict[str, Any]]) -> None:
    """Create `objects` in `collection`, 8 requests at a time."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda obj: request(bed, "POST", collection, obj), objects))


def fleet_timeout(size: int) -> float:
    return max(600.0, 1.5 * size)


def bare_fleet_to_ready(bed: Any, namespace: str, size: int) -> float:
    """Seconds from the first create to `size` bare Deployments Ready."""
    deployments = [bare_deployment(namespace, f"b{i}") for i in range(size)]
    path = deployments_path(namespace)
    with ReadyWatch(bed, path, name_of, lambda obj: is_ready("Deployment", obj)) as ready:
        started = time.monotonic()
        create_all(bed, path, deployments)
        return ready.wait_for([name_of(obj) for obj in deployments], fleet_timeout(size)) - started


def engine_of(pod: Mapping[str, Any]) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(names.LABEL_INSTANCE)


def fleet_to_ready(
    bed: Any, namespace: str, size: int
) -> tuple[float, float, list[float], list[float]]:
    """`size` NovelEngines created at once: seconds from the first create to all their pods
    Ready, to all of them Ready, and per NovelEngine the seconds its engine Deployment's status,
    and its own status, trailed its pod."""
    engines = [novelengine(namespace, f"n{i}") for i in range(size)]
    keys = [name_of(obj) for obj in engines]
    path = novelengines_path(namespace)
    engine_pods = f"&labelSelector={names.LABEL_NAME}%3D{names.ENGINE_APP}"
    with (
        ReadyWatch(bed, path, name_of, lambda obj: is_ready(names.KIND, obj)) as statuses,
        ReadyWatch(
            bed, deployments_path(namespace), name_of, lambda obj: is_ready("Deployment", obj)
        ) as deployments,
        ReadyWatch(
            bed, f"/api/v1/namespaces/{namespace}/pods", engine_of, pod_ready, engine_pods
        ) as pods,
    ):
        started = time.monotonic()
        create_all(bed, path, engines)
        pods_ready = pods.wait_for(keys, fleet_timeout(size)) - started
        all_ready = statuses.wait_for(keys, fleet_timeout(size)) - started
        deployments.wait_for(keys, fleet_timeout(size))
        workload_lags = [deployments.ready_at[key] - pods.ready_at[key] for key in keys]
        lags = [statuses.ready_at[key] - pods.ready_at[key] for key in keys]
    return pods_ready, all_ready, workload_lags, lags


def delete_all(bed: Any, namespace: str) -> None:
    request(bed, "DELETE", deployments_path(namespace), timeout=300)  # each one, in turn
    wait(
        f"pods of {namespace} gone",
        lambda: not request(bed, "GET", f"/api/v1/namespaces/{namespace}/pods?limit=1")["items"],
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

    def metric(self, prefix: str) -> float:
        """The sum of the operator's samples whose name and labels start with `prefix`."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

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


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fleet", type=int, default=FLEET, help=f"NovelEngines created at once (default {FLEET})"
    )
    size = parser.parse_args(argv).fleet
    # The latency samples stay while the fleet runs: a pod each, and a Service per NovelEngine.
    nodes = max(3, math.ceil((size + 2 * SAMPLES) / PODS_PER_NODE))
    with (
        bench_bed(nodes, service_cidr_for(size + SAMPLES)) as bed,
        tempfile.TemporaryDirectory(prefix="bench-operator-log-") as logs,
    ):
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

            bare_fleet = bare_fleet_to_ready(bed, FLEET_NAMESPACE, size)
            delete_all(bed, FLEET_NAMESPACE)
            reconciles = operator.metric("novel_operator_reconciles_total")
            reconcile_seconds = operator.metric("novel_operator_reconcile_duration_seconds_sum")
            cpu = cpu_seconds(operator.process.pid)
            pods_ready, fleet, workload_lags, lags = fleet_to_ready(bed, FLEET_NAMESPACE, size)
            cpu = cpu_seconds(operator.process.pid) - cpu
            reconciles = operator.metric("novel_operator_reconciles_total") - reconciles
            reconcile_seconds = (
                operator.metric("novel_operator_reconcile_duration_seconds_sum") - reconcile_seconds
            )
            fleet_rss, peak_rss = operator.rss()
        finally:
            operator.stop()
            for namespace in (LATENCY_NAMESPACE, FLEET_NAMESPACE):
                request(bed, "DELETE", f"/api/v1/namespaces/{namespace}")

    print(
        f"operator benchmark (test bed, kwok nodes: {nodes}; {SAMPLES} samples, fleet of {size}; "
        f"{os.cpu_count()} cores)"
    )
    print(
        f"  apply -> Ready p50        NovelEngine {managed_p50:.2f} s | bare Deployment "
        f"{bare_p50:.2f} s | ratio {managed_p50 / bare_p50:.2f}"
    )
    print(f"  apply -> Ready samples    {', '.join(f'{s:.2f}' for s in managed)}")
    print(
        f"  {size} Ready{' ' * max(1, 14 - len(str(size)))}NovelEngines {fleet:.1f} s "
        f"(their pods {pods_ready:.1f} s) | bare Deployments {bare_fleet:.1f} s "
        f"| ratio {fleet / bare_fleet:.2f}"
    )
    print(
        f"  status lag behind pod     p50 {percentile(lags, 0.5):.2f} s | "
        f"p99 {percentile(lags, 0.99):.2f} s | max {max(lags):.2f} s (goal: p99 under 5 s)"
    )
    print(
        f"  its Deployment's lag      p50 {percentile(workload_lags, 0.5):.2f} s | "
        f"p99 {percentile(workload_lags, 0.99):.2f} s | max {max(workload_lags):.2f} s "
        "(the controller-manager's share)"
    )
    print(
        f"  operator for the fleet    {reconciles:.0f} reconciles ({reconciles / size:.1f} per "
        f"NovelEngine, {reconcile_seconds / reconciles:.2f} s each) | CPU {cpu:.0f} s "
        f"({cpu / fleet:.0%} of a core)"
    )
    print(
        f"  operator RSS              {size} reconciled {mib(fleet_rss)} (peak {mib(peak_rss)}) "
        f"| idle {mib(idle_rss)} | ratio {fleet_rss / idle_rss:.2f}"
    )


if __name__ == "__main__":
    main()
