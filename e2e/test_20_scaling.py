"""In-cluster load raises the replicas through the engine-metric scaler; they come back down."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from cluster import Cluster
from manifests import engine_scaling_spec, novel_engine, service_url
from options import E2EOptions
from scenarios import NE, load_result, start_load, wait_ready
from test_10_install import engine_image

from novel_engine.loadgen import LoadPlan

SCALE_DOWN_WINDOW = 30


class ReplicaTimeline:
    """The NovelEngine's ready replicas, sampled every second in a thread."""

    def __init__(self, cluster: Cluster, name: str, namespace: str) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cluster, name, namespace))
        self.started = time.monotonic()

    def _run(self, cluster: Cluster, name: str, namespace: str) -> None:
        while not self._stop.wait(1.0):
            found = cluster.get(*NE, name, namespace) or {}
            ready = (found.get("status") or {}).get("readyReplicas") or 0
            self.samples.append((time.monotonic() - self.started, int(ready)))

    def __enter__(self) -> ReplicaTimeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, seconds: float) -> int:
        """Ready replicas at `seconds` after the start (the last sample before it)."""
        before = [ready for at, ready in self.samples if at <= seconds]
        return before[-1] if before else 0


def by_replicas(intervals: list[dict[str, Any]], timeline: ReplicaTimeline, offset: float) -> str:
    """The load's interval lines grouped by the ready replicas at their end, as a table."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for line in intervals:
        rows.setdefault(timeline.at(offset + line["at_seconds"]), []).append(line)
    table = ["replicas  requests/s  p99 ms  intervals"]
    for replicas, lines in sorted(rows.items()):
        rate = sum(line["requests_per_second"] for line in lines) / len(lines)
        p99 = max(line["p99_ms"] for line in lines)
        table.append(f"{replicas:8d}  {rate:10.1f}  {p99:6.1f}  {len(lines):9d}")
    return "\n".join(table)


@pytest.mark.real_pods
def test_load_scales_up_and_back_down(
    cluster: Cluster, namespace: str, options: E2EOptions
) -> None:
    spec = engine_scaling_spec(
        image=options.engine_image,
        in_flight_per_pod=2,
        max_replicas=4,
        scale_down_window_seconds=SCALE_DOWN_WINDOW,
    )
    cluster.apply(novel_engine("scaling", namespace, spec))
    wait_ready(cluster, "scaling", namespace)
    # Uncached simulations of 4 characters x 100 turns keep every request busy for a while.
    load = LoadPlan(
        url=service_url("scaling", namespace),
        duration_seconds=120, concurrency=16, simulation_share=1.0, distinct=1_000_000,
        turns=100, report_every_seconds=5, max_failures=1_000_000,
    )  # fmt: skip
    with ReplicaTimeline(cluster, "scaling", namespace) as timeline:
        load_started = time.monotonic() - timeline.started
        start_load(cluster, namespace, engine_image(options), load)
        summary, intervals = load_result(cluster, namespace)
        peak = max(ready for _, ready in timeline.samples)

        def back_to_one() -> bool | None:
            return True if timeline.samples and timeline.samples[-1][1] == 1 else None

        deadline = time.monotonic() + SCALE_DOWN_WINDOW + 4 * 15 + 120
        while back_to_one() is None and time.monotonic() < deadline:
            time.sleep(2)
    print(f"\nload: {summary}\n{by_replicas(intervals, timeline, load_started)}")
    assert peak > 1, f"never scaled up: {timeline.samples[-10:]}"
    assert back_to_one(), f"did not come back to 1 replica: {timeline.samples[-10:]}"
    # The policy lets one pod go per 15 s: never two fewer within one sample.
    drops = [a - b for (_, a), (_, b) in zip(timeline.samples, timeline.samples[1:], strict=False)]
    assert max(drops, default=0) <= 1
