"""The autoscaler's schedule loop while a sync outlasts its period: it waits for the sync instead
of spinning on the event loop it shares with reconciles, watches and /healthz."""

import asyncio
import json
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from novel_operator.autoscaler import Autoscaler, ScalingTarget
from novel_operator.cache_health import CacheMemory
from novel_operator.metrics import OperatorMetrics
from novel_operator.model import NovelEngineSpec
from novel_operator.scaling import ScalingMemory
from novel_operator.scrape import AddressMapFile, Scraper

NAMESPACE, NAME = "ns", "slow"
SCRAPE_TIMEOUT_SECONDS = 3.0  # three sync periods: the sync overruns its period
WINDOW_SECONDS = 3.0


class OnePodCluster:
    """The two reads a sync makes: the engine Deployment and its one ready pod."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1},
        }

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {"name": f"{NAME}-0", "namespace": namespace},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }
        ]


@contextmanager
def hanging_metrics_server() -> Iterator[str]:
    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(30)
            self.send_error(503)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


async def test_a_sync_that_outlasts_its_period_does_not_make_the_loop_spin(tmp_path: Path) -> None:
    spec = NovelEngineSpec.model_validate(
        {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 3,
                "engine": {"inFlightPerPod": 8},
                "syncPeriodSeconds": 1,
            }
        }
    )
    target = ScalingTarget({"metadata": {"name": NAME, "namespace": NAMESPACE}}, spec, "Deployment")
    addresses = tmp_path / "addresses.json"
    with hanging_metrics_server() as address:
        addresses.write_text(json.dumps({f"{NAMESPACE}/{NAME}-0": address}))
        async with Scraper(AddressMapFile(addresses), timeout=SCRAPE_TIMEOUT_SECONDS) as scraper:
            autoscaler = Autoscaler(
                OnePodCluster(),  # type: ignore[arg-type]  # the reads a sync makes, no more
                scraper,
                ScalingMemory(),
                CacheMemory(),
                OperatorMetrics(CollectorRegistry()),
            )
            autoscaler.set_target((NAMESPACE, NAME), target)
            loop = asyncio.create_task(autoscaler.run(lambda key: None))
            # The event loop runs on this thread (the hanging server's threads are others).
            before = resource.getrusage(resource.RUSAGE_THREAD)
            await asyncio.sleep(WINDOW_SECONDS)
            after = resource.getrusage(resource.RUSAGE_THREAD)
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    busy = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # Waiting costs next to nothing; spinning takes all of a core the machine gives it.
    assert busy < WINDOW_SECONDS / 10, f"the loop used {busy:.2f} s of CPU in {WINDOW_SECONDS} s"
