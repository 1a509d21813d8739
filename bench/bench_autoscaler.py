"""The engine-metric autoscaler on the test bed's real control plane (kwok nodes), with real
engine processes on loopback answering the scrapes of the NovelEngines' pods.

    python -m bench.bench_autoscaler            # starts its own test bed (needs make k8s-assets)
    NOVEL_ENGINE_TESTBED_DIR=.testbed python -m bench.bench_autoscaler   # or uses a running one
                                                # (with room for 600 pods: 6+ kwok nodes)

1. Reaction: a surge of sync simulations (8 in flight, 4x the target), at a random point of
   the sync period, on the engine behind a one-replica NovelEngine with engine targets only
   (syncPeriodSeconds 5, the bed's HPA sync period) -> the operator's decision (the Deployment
   asks for 3) -> 3 pods Ready. The wait for the next sync is part of it. Baseline,
   same bed: the HPA controller's own reaction to an HPA's minReplicas raised from 1 to 3
   (its sync -> Deployment scaled -> 3 pods Ready). Interleaved samples; medians.
2. Cost: 200 NovelEngines x 3 pods, each pod's scrape answered by one of 3 engine processes;
   the operator's CPU time per NovelEngine sync (a workload read, a pod list, 3 scrapes, the
   decision) over a minute of syncs. Baseline: a bare aiohttp loop (one session, the same
   connection limit) making the same GETs, CPU per 3 of them.
"""

import asyncio
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_http import cpu_seconds
from bench.bench_operator import (
    ROOT,
    Operator,
    bare_deployment,
    bench_bed,
    deployments_path,
    novelengines_path,
    prepare,
    request,
    wait,
)
from novel_operator import names
from novel_operator.scrape import DEFAULT_CONNECTIONS, METRICS_QUERY, ScrapeResult

sys.path[:0] = [str(ROOT / "tests" / "integration" / "operator_tests")]
from engines import Load, PodsToEngines, running_engines  # noqa: E402
from harness import AddressMap, Cluster  # noqa: E402

REACTION_NAMESPACE = "bench-reaction"
FLEET_NAMESPACE = "bench-scrapes"
SAMPLES = 5
FLEET = 200
PODS = 3
ENGINES = 3
MEASURE_SECONDS = 60.0
SYNC_SECONDS = 5
SURGE = 8
BARE_ROUNDS = 10
HPA_PATH = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"


def engine_scaled(namespace: str, name: str, replicas: int, sync: int) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "autoscaling": {
                "enabled": True,
                "minReplicas": replicas,
                "maxReplicas": 3,
                "syncPeriodSeconds": sync,
                "engine": {"inFlightPerPod": 2},
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        },
    }


def deployment_state(bed: Any, namespace: str, name: str) -> tuple[int, int]:
    """(replicas asked for, ready replicas); (0, 0) while the Deployment does not exist."""
    status, found = bed.request("GET", f"{deployments_path(namespace)}/{name}")
    if status == 404:
        return 0, 0
    return found["spec"]["replicas"], (found.get("status") or {}).get("readyReplicas", 0)


def operator_reaction(
    bed: Any, cluster: Cluster, addresses: AddressMap, engines: list[Any]
) -> tuple[float, float]:
    """Seconds from the surge to the Deployment asking for 3, and to 3 pods Ready."""
    ns, name = REACTION_NAMESPACE, "surge"
    with PodsToEngines(cluster, addresses, ns, name, engines) as pods:
        wait("1 replica Ready", lambda: deployment_state(bed, ns, name) == (1, 1), 120)
        selector = names.selector_string(names.engine_selector(name))
        pod = request(bed, "GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")[
            "items"
        ][0]
        wait("the pod mapped", lambda: pods.maps(pod["metadata"]["name"]), 30)
        # A sync has seen it idle; the surge then comes at a random point of the sync period.
        time.sleep(SYNC_SECONDS + random.uniform(0, SYNC_SECONDS))
        started = time.perf_counter()
        with Load(pods.engine_of(pod["metadata"]["name"]).url, SURGE):
            wait("decision", lambda: deployment_state(bed, ns, name)[0] == 3, 120)
            decided = time.perf_counter() - started
            wait("3 Ready", lambda: deployment_state(bed, ns, name) == (3, 3), 120)
            ready = time.perf_counter() - started
        wait("back to 1", lambda: deployment_state(bed, ns, name) == (1, 1), 180)
    return decided, ready


def hpa_reaction(bed: Any) -> tuple[float, float]:
    """Seconds from raising an HPA's minReplicas to 3 to the Deployment asking for 3 / Ready."""
    ns, name = REACTION_NAMESPACE, "bare"
    path = f"{HPA_PATH.format(ns=ns)}/{name}"
    started = time.perf_counter()
    bed.request(
        "PATCH", path, {"spec": {"minReplicas": 3}}, content_type="application/merge-patch+json"
    )
    wait("HPA decision", lambda: deployment_state(bed, ns, name)[0] == 3, 120)
    decided = time.perf_counter() - started
    wait("3 Ready", lambda: deployment_state(bed, ns, name) == (3, 3), 120)
    ready = time.perf_counter() - started
    # Reset: min == max == 1 sets the count at once (no metrics-server for a scale-down).
    bed.request(
        "PATCH",
        path,
        {"spec": {"minReplicas": 1, "maxReplicas": 1}},
        content_type="application/merge-patch+json",
    )
    wait("back to 1", lambda: deployment_state(bed, ns, name) == (1, 1), 120)
    bed.request(
        "PATCH", path, {"spec": {"maxReplicas": 3}}, content_type="application/merge-patch+json"
    )
    return decided, ready


def bare_hpa(bed: Any) -> None:
    ns, name = REACTION_NAMESPACE, "bare"
    request(bed, "POST", deployments_path(ns), bare_deployment(ns, name))
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }
    request(bed, "POST", HPA_PATH.format(ns=ns), hpa)
    wait("bare Deployment Ready", lambda: deployment_state(bed, ns, name) == (1, 1), 120)


async def bare_gets(urls: list[str], rounds: int) -> float:
    """CPU seconds of this process for `rounds` rounds of GETs of every url."""
    connector = aiohttp.TCPConnector(limit=DEFAULT_CONNECTIONS, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def get(url: str) -> None:
            async with session.get(url) as response:
                await response.text()

        await asyncio.gather(*(get(url) for url in urls))  # warm the connections
        started = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(get(url) for url in urls))
        return time.process_time() - started


def counted(operator: Operator, prefix: str) -> float:
    """The sum of the operator's samples whose line starts with `prefix`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def syncs(operator: Operator) -> float:
    return counted(operator, "novel_operator_autoscaler_syncs_total{")


def reconciles(operator: Operator) -> float:
    return counted(operator, "novel_operator_reconciles_total{")


def settle(operator: Operator) -> None:
    """Wait until no reconcile has run for 10 s (the status writes of the first syncs done)."""
    seen, quiet_since = reconciles(operator), time.monotonic()
    while time.monotonic() - quiet_since < 10:
        time.sleep(1)
        now = reconciles(operator)
        if now != seen:
            seen, quiet_since = now, time.monotonic()


def scrape_failures(operator: Operator) -> dict[str, float]:
    """Failed scrapes so far, by result."""
    return {
        result: counted(operator, f'novel_operator_scrapes_total{{result="{result}"}}')
        for result in ScrapeResult
        if result is not ScrapeResult.OK
    }


def main() -> None:
    with (
        bench_bed(7) as bed,  # 770 pods
        tempfile.TemporaryDirectory(prefix="bench-autoscaler-") as work,
        ExitStack() as stack,
    ):
        kubeconfig = prepare(bed, (REACTION_NAMESPACE, FLEET_NAMESPACE))
        cluster = Cluster(bed.api_client(), bed.wait_for)
        addresses = AddressMap(Path(work) / "addresses.json")
        engines = stack.enter_context(running_engines(Path(work) / "engines", ENGINES))
        operator = Operator(
            kubeconfig,
            [REACTION_NAMESPACE, FLEET_NAMESPACE],
            Path(work) / "operator.log",
            ["--scrape-address-map", str(addresses.path)],
        )
        stack.callback(operator.stop)
        log_path = Path(work) / "operator.log"
        stack.push(
            lambda kind, *_: print(log_path.read_text()[-3000:]) if kind is not None else None
        )
        for namespace in (REACTION_NAMESPACE, FLEET_NAMESPACE):
            stack.callback(request, bed, "DELETE", f"/api/v1/namespaces/{namespace}")

        # 1. Reaction, interleaved with the HPA's own.
        request(
            bed,
            "POST",
            novelengines_path(REACTION_NAMESPACE),
            engine_scaled(REACTION_NAMESPACE, "surge", 1, SYNC_SECONDS),
        )
        bare_hpa(bed)
        ours, theirs = [], []
        for _ in range(SAMPLES):
            theirs.append(hpa_reaction(bed))
            ours.append(operator_reaction(bed, cluster, addresses, engines))

        print(f"reaction samples (decision s, Ready s): operator {ours}, HPA {theirs}", flush=True)

        # 2. CPU per sync, 200 NovelEngines x 3 pods.
        request(bed, "DELETE", f"{novelengines_path(REACTION_NAMESPACE)}/surge")  # no more syncs
        ns = FLEET_NAMESPACE
        for index in range(FLEET):
            request(bed, "POST", novelengines_path(ns), engine_scaled(ns, f"f{index}", PODS, 10))

        def fleet_pods() -> list[str]:
            items = request(bed, "GET", f"/api/v1/namespaces/{ns}/pods")["items"]
            return [
                p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")
            ]

        wait(f"{FLEET * PODS} pods", lambda: len(fleet_pods()) == FLEET * PODS, 600)
        for _ in range(2):  # again once settled: a pod replaced meanwhile gets its address
            mapped = {
                f"{ns}/{pod}": f"127.0.0.1:{engines[index % ENGINES].port}"
                for index, pod in enumerate(sorted(fleet_pods()))
            }
            addresses.write(mapped)
            settle(operator)  # every NovelEngine synced with its pods mapped, and reported
        before_cpu, before_syncs = cpu_seconds(operator.process.pid), syncs(operator)
        failed_before, reconciles_before = scrape_failures(operator), reconciles(operator)
        time.sleep(MEASURE_SECONDS)
        cpu = cpu_seconds(operator.process.pid) - before_cpu
        synced = syncs(operator) - before_syncs
        failed = {
            result: count - failed_before[result]
            for result, count in scrape_failures(operator).items()
            if count > failed_before[result]
        }
        reconciled = reconciles(operator) - reconciles_before
        urls = [f"http://{address}/metrics?{METRICS_QUERY}" for address in mapped.values()]
        bare_cpu = asyncio.run(bare_gets(urls, BARE_ROUNDS))

    decided, ready = statistics.median(s[0] for s in ours), statistics.median(s[1] for s in ours)
    hpa_decided = statistics.median(s[0] for s in theirs)
    hpa_ready = statistics.median(s[1] for s in theirs)
    per_sync = cpu / synced * 1000
    bare_per_engine = bare_cpu / (BARE_ROUNDS * FLEET) * 1000
    print(f"autoscaler benchmark (test bed, kwok nodes; {SAMPLES} samples, {FLEET} x {PODS} pods)")
    print(
        f"  surge -> decision p50     operator {decided:.1f} s (sync {SYNC_SECONDS} s) | "
        f"HPA minReplicas -> decision {hpa_decided:.1f} s | ratio {decided / hpa_decided:.2f}"
    )
    print(
        f"  surge -> 3 Ready p50      operator {ready:.1f} s | HPA minReplicas -> 3 Ready "
        f"{hpa_ready:.1f} s | ratio {ready / hpa_ready:.2f}"
    )
    print(
        f"  CPU per NovelEngine sync  operator {per_sync:.2f} ms ({synced:.0f} syncs in "
        f"{MEASURE_SECONDS:.0f} s) | bare aiohttp, {PODS} GETs {bare_per_engine:.2f} ms | "
        f"ratio {per_sync / bare_per_engine:.2f}"
    )
    print(
        f"  during that minute        failed scrapes {failed or 'none'}; {reconciled:.0f} "
        "reconciles"
    )


if __name__ == "__main__":
    main()
