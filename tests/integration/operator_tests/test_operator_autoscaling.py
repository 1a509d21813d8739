"""The engine-metric autoscaler end to end: real engine processes on loopback answer the scrapes
of the NovelEngine's kwok pods, load drives their in-flight requests over the target, and the
operator scales (engine targets only) or raises the HPA's floor (CPU target too)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from engines import Load, PodsToEngines, running_engines
from harness import (
    DEPLOYMENT,
    OPERATOR_USER,
    Cluster,
    OperatorProcess,
    StartOperator,
    autoscaling_status,
    condition,
    scaled_messages,
    wait_condition,
    wait_replicas,
)
from testbed import Testbed

from novel_operator import names

pytestmark = pytest.mark.integration

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
#: Short periods and windows so that a whole up-and-down cycle takes well under a minute.
AUTOSCALING: dict[str, Any] = {
    "enabled": True,
    "minReplicas": 1,
    "maxReplicas": 3,
    "syncPeriodSeconds": 1,
    "engine": {"inFlightPerPod": 2},
    "behavior": {
        "scaleDown": {
            "stabilizationWindowSeconds": 5,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 3}],
        }
    },
}
#: Sync simulations kept in flight against the first pod's engine: 4x the target.
LOAD = 8


def replica_steps(messages: list[str]) -> list[tuple[int, int]]:
    """(from, to) of each Scaled Event (`... from 1 to 3 ...`)."""
    steps = []
    for message in messages:
        found = re.search(r"from (\d+) to (\d+)", message)
        assert found is not None, message
        steps.append((int(found.group(1)), int(found.group(2))))
    return steps


def syncs(operator: OperatorProcess, result: str = "ok") -> float:
    return operator.metrics()[f'novel_operator_autoscaler_syncs_total{{result="{result}"}}']


def scaling_active(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The ScalingActive condition as it is now ({} if absent)."""
    found = condition(cluster.novelengine(namespace, name) or {}, names.CONDITION_SCALING_ACTIVE)
    return found or {}


def all_syncs(operator: OperatorProcess) -> float:
    prefix = "novel_operator_autoscaler_syncs_total{"
    return sum(value for key, value in operator.metrics().items() if key.startswith(prefix))


@contextlib.contextmanager
def one_pod_behind_engines(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    directory: Path,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Three engine processes answering for the pods of a new NovelEngine `spec`, once it runs
    one pod the operator scrapes: (the engine process of that pod, ScalingActive)."""
    with (
        running_engines(directory, 3) as engines,
        PodsToEngines(cluster, operator.addresses, namespace, name, engines) as pods,
    ):
        cluster.create_novelengine(namespace, name, spec)
        wait_replicas(cluster, namespace, name, 1)
        active = wait_condition(cluster, namespace, name, names.CONDITION_SCALING_ACTIVE, "True")
        (first,) = cluster.list("v1", "Pod", namespace, f"{names.LABEL_INSTANCE}={name}")
        yield pods.engine_of(first["metadata"]["name"]), active


def test_engine_metrics_scale_the_workload_up_under_load_and_down_a_pod_at_a_time(
    testbed: Testbed,
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    tmp_path: Path,
) -> None:
    ns, name = testbed_namespace, "busy"
    operator = start_operator("--namespace", ns)
    spec = {"autoscaling": AUTOSCALING}
    with one_pod_behind_engines(cluster, operator, ns, name, spec, tmp_path) as (engine, active):
        assert active["message"] == "engine metrics read from 1 of 1 ready pods"

        # A saturated engine (its process pool busy, the CPU full) still answers its scrapes.
        with Load(engine.url, LOAD) as load:
            wait_replicas(cluster, ns, name, 3)
            loaded = autoscaling_status(cluster, ns, name)
        assert load.answered > 0
        # What the scale-up decided is in its Event and in lastScaleReason; the averages and the
        # recommendation in the status move with every sync (the two new pods serve nothing).
        cluster.wait(
            "the scale-up Events",
            lambda: (
                None
                if any(step[1] == 3 for step in replica_steps(scaled_messages(cluster, ns, name)))
                else str(scaled_messages(cluster, ns, name))
            ),
            timeout=10,
        )
        steps = replica_steps(scaled_messages(cluster, ns, name))
        ups = [step for step in steps if step[1] > step[0]]
        assert ups[0][0] == 1
        assert ups[-1][1] == 3
        assert loaded["lastScaleReason"].startswith("in-flight requests")
        shown = subprocess.run(
            ["kubectl", "get", "ne", name, "-n", ns, "--no-headers"],
            env={**os.environ, **testbed.env()},  # (HOME too: kubectl's cache goes there)
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert shown[1:4] == ["True", "3", "3"]  # Ready, Replicas, Desired

        wait_replicas(cluster, ns, name, 1)
        cluster.wait(
            "the scale-down Events",
            lambda: (
                None
                if replica_steps(scaled_messages(cluster, ns, name))[-1:] == [(2, 1)]
                else str(scaled_messages(cluster, ns, name))
            ),
            timeout=10,
        )
        steps = replica_steps(scaled_messages(cluster, ns, name))
        ups = [step for step in steps if step[1] > step[0]]
        downs = steps[len(ups) :]
        assert ups[0][0] == 1
        assert ups[-1][1] == 3
        assert all(a < b for a, b in ups)
        assert downs == [(3, 2), (2, 1)]  # Pods: 1 per period, never 3 -> 1 at once
        idle = autoscaling_status(cluster, ns, name)
        assert idle["inFlightPerPod"] == 0
        assert idle["recommendedReplicas"] == 1
        # Every change went through the scale subresource, as the operator.
        scales = testbed.audit_events(user=OPERATOR_USER, resource="deployments", namespace=ns)
        assert {(w.verb, w.subresource) for w in scales if w.subresource} == {("patch", "scale")}

        # Idle syncs: scrapes go on, and nothing is written.
        cluster.wait_ready(ns, name)  # the scale-down fully reported, scrapes included:
        cluster.wait(
            "ScalingActive on the one pod left",
            lambda: (
                None
                if scaling_active(cluster, ns, name)
                .get("message", "")
                .endswith("1 of 1 ready pods")
                else str(scaling_active(cluster, ns, name))
            ),
        )
        mark, before = testbed.audit_mark(), syncs(operator)
        cluster.wait(
            "5 more syncs",
            lambda: None if syncs(operator) >= before + 5 else f"{syncs(operator)}",
            timeout=30,
        )
        writes = testbed.audit_events(since=mark, user=OPERATOR_USER)
        assert writes == [], [(w.verb, w.resource, w.subresource, w.name) for w in writes]

        # A deleted NovelEngine leaves the schedule: no sync of it starts any more.
        cluster.delete(names.API_VERSION, names.KIND, ns, name)
        cluster.wait(
            "the NovelEngine gone",
            lambda: None if cluster.novelengine(ns, name) is None else "still there",
        )
        time.sleep(1)  # a sync under way may finish
        after = all_syncs(operator)
        time.sleep(3 * AUTOSCALING["syncPeriodSeconds"])
        assert all_syncs(operator) == after


def test_with_a_cpu_target_engine_metrics_raise_the_hpa_floor_and_let_it_fall_back(
    testbed: Testbed,
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    tmp_path: Path,
) -> None:
    ns, name = testbed_namespace, "floored"
    operator = start_operator("--namespace", ns)
    spec = {"autoscaling": {**AUTOSCALING, "targetCPUUtilizationPercentage": 80}}

    def hpa_min_replicas() -> int:
        hpa = cluster.get(*HPA, ns, name)
        assert hpa is not None
        return int(hpa["spec"]["minReplicas"])

    with one_pod_behind_engines(cluster, operator, ns, name, spec, tmp_path) as (engine, _):
        assert hpa_min_replicas() == 1

        with Load(engine.url, LOAD):
            # The floor rises, and the HPA controller itself brings the Deployment to it.
            wait_replicas(cluster, ns, name, 3)
            assert hpa_min_replicas() == 3
            assert autoscaling_status(cluster, ns, name)["floor"] == 3

        def floor_back() -> str | None:
            # The status is written after the HPA: wait for both.
            floors = (hpa_min_replicas(), autoscaling_status(cluster, ns, name)["floor"])
            return None if floors == (1, 1) else f"minReplicas, status floor {floors}"

        cluster.wait("the floor back at minReplicas", floor_back, timeout=60)
        # The operator never set replicas itself: the HPA did (no metrics-server here, so the
        # HPA keeps 3: going below a lowered floor is its own CPU-based decision).
        scales = testbed.audit_events(user=OPERATOR_USER, resource="deployments", namespace=ns)
        assert [w for w in scales if w.subresource == "scale"] == []
        messages = scaled_messages(cluster, ns, name)
        assert messages[0].startswith(
            f"Set the minReplicas floor of HorizontalPodAutoscaler/{name} from 1 to "
        )


@contextlib.contextmanager
def misbehaving_servers() -> Iterator[tuple[str, str]]:
    """Two HTTP servers on 127.0.0.1 (their addresses): /metrics of the first never answers,
    the second's is not Prometheus text."""
    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(60)
            self.send_error(503)

        def log_message(self, *_: Any) -> None:
            pass

    class Garbage(Hanging):
        def do_GET(self) -> None:
            body = b"<html>{{{ no metrics here"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for handler in (Hanging, Garbage)]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        hanging, garbage = (f"127.0.0.1:{server.server_address[1]}" for server in servers)
        yield hanging, garbage
    finally:
        release.set()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_hanging_or_garbage_scrape_target_stops_scaling_and_never_scales_down(
    cluster: Cluster,
    start_operator: StartOperator,
    testbed_namespace: str,
    tmp_path: Path,
) -> None:
    ns, name = testbed_namespace, "broken"
    operator = start_operator("--namespace", ns)
    spec = {
        "autoscaling": {
            **AUTOSCALING,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        }
    }
    cluster.create_novelengine(ns, name, spec)
    wait_replicas(cluster, ns, name, 1)
    cluster.scale(*DEPLOYMENT, ns, name, 2)  # within the bounds: the operator keeps it
    wait_replicas(cluster, ns, name, 2)
    with misbehaving_servers() as (hanging, garbage):
        pods = cluster.list("v1", "Pod", ns, f"{names.LABEL_INSTANCE}={name}")
        operator.addresses.write(
            {
                f"{ns}/{pod['metadata']['name']}": address
                for pod, address in zip(pods, (hanging, garbage), strict=True)
            }
        )
        cluster.wait(  # (until the map is read, the pods' scrapes fail as "unresolved")
            "scrapes failing as the servers misbehave",
            lambda: (
                None
                if "(timeout)" in scaling_active(cluster, ns, name).get("message", "")
                else str(scaling_active(cluster, ns, name))
            ),
        )
        failed = scaling_active(cluster, ns, name)
        assert (failed["status"], failed["reason"]) == ("False", names.REASON_SCRAPE_FAILED)
        assert "(invalid)" in failed["message"]
        before = syncs(operator, "scrape_failed")
        cluster.wait(
            "3 more failed syncs",
            lambda: None if syncs(operator, "scrape_failed") >= before + 3 else "waiting",
            timeout=30,
        )
    deployment = cluster.get(*DEPLOYMENT, ns, name)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2  # an idle engine would have gone to 1
    assert "inFlightPerPod" not in autoscaling_status(cluster, ns, name)


def test_a_stalled_novelengine_keeps_its_replica_counts_and_says_nothing_is_scaled(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "stuck"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"autoscaling": AUTOSCALING})
    cluster.wait_ready(ns, name)
    wait_condition(cluster, ns, name, names.CONDITION_SCALING_ACTIVE)  # (no pod is scraped)
    # A quota allowing no more Services refuses the managed Redis's: the new spec cannot apply.
    services = len(cluster.list("v1", "Service", ns))
    cluster.create_quota(ns, "no-more-services", {"services": str(services)})
    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l2": {"mode": "managed"}}}})

    stalled = wait_condition(cluster, ns, name, names.CONDITION_STALLED, "True")
    assert stalled["reason"] == names.REASON_APPLY_FAILED
    assert "exceeded quota" in stalled["message"]
    # The engine still runs its one pod, and the status and the scale subresource say so. (The
    # Redis password Secret, created before the Service was refused, rolls that pod: a second
    # one surges for a moment, and the status counts it until the roll is done.)

    def counts() -> str | None:
        status = (cluster.novelengine(ns, name) or {}).get("status") or {}
        seen = tuple(
            status.get(field) for field in ("replicas", "readyReplicas", "desiredReplicas")
        )
        return None if seen == (1, 1, 1) else f"replicas, ready, desired: {seen}"

    cluster.wait("the status to count the one pod", counts, timeout=30)
    novelengine = cluster.novelengine(ns, name)
    assert novelengine is not None
    still = condition(novelengine, names.CONDITION_STALLED)
    assert still is not None
    assert (still["status"], still["reason"]) == ("True", names.REASON_APPLY_FAILED)
    scaling = condition(novelengine, names.CONDITION_SCALING_ACTIVE)
    assert scaling is not None
    assert (scaling["status"], scaling["reason"]) == ("False", names.REASON_STALLED)
