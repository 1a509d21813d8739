"""A small, bounded HTTP load generator for an engine (`python -m novel_engine.loadgen`).

It ships in the engine image so that a Kubernetes Job can drive an engine Service from inside the
cluster, where the Service spreads requests over every ready replica (a port-forward would pin
one pod). It stops by itself: after `--duration` seconds or `--max-requests` requests, whichever
comes first. It prints one JSON line per `--report-every` interval and a final summary line, and
exits 1 when more requests failed than `--max-failures` allows.

A request fails when it gets no HTTP answer (connection refused or reset, timeout) or an answer
that is not 2xx. The request mix: a share of `POST /v1/simulations` over `--distinct`
different seeds (so repeated requests hit the cache tiers), the rest `GET /v1/characters/{id}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: The cast and campaign of the simulations: all from the built-in sample library.
CAST: tuple[str, ...] = ("ilse-varn", "seren-ashdown", "dagny-kross", "wren-aldane")
CAMPAIGN = "siege-of-emberfall"
#: Status class of a request that got no HTTP answer.
NO_ANSWER = "error"


@dataclass(frozen=True)
class LoadPlan:
    """What to send, how hard and for how long."""

    url: str
    concurrency: int = 8
    duration_seconds: float = 30.0
    max_requests: int = 100_000
    simulation_share: float = 0.5
    distinct: int = 50
    turns: int = 20
    request_timeout_seconds: float = 30.0
    report_every_seconds: float = 0.0  # 0: only the summary
    reuse_connections: bool = False
    max_failures: int = 0  # failed requests allowed before the exit status is 1

    def to_args(self) -> list[str]:
        """The command line that runs this plan (`python -m novel_engine.loadgen ARGS`)."""
        args = [
            self.url,
            "--concurrency", str(self.concurrency),
            "--duration", str(self.duration_seconds),
            "--max-requests", str(self.max_requests),
            "--simulation-share", str(self.simulation_share),
            "--distinct", str(self.distinct),
            "--turns", str(self.turns),
            "--timeout", str(self.request_timeout_seconds),
            "--max-failures", str(self.max_failures),
        ]  # fmt: skip
        if self.report_every_seconds:
            args += ["--report-every", str(self.report_every_seconds)]
        return args + (["--reuse-connections"] if self.reuse_connections else [])

    def request(self, number: int) -> tuple[str, str, dict[str, Any] | None]:
        """The `number`th request: (method, path, JSON body). Deterministic, so two runs of the
        same plan send the same requests in the same order."""
        # Simulations are spread evenly through the sequence at the asked share.
        if math.floor((number + 1) * self.simulation_share) > math.floor(
            number * self.simulation_share
        ):
            body = {
                "character_ids": list(CAST),
                "campaign_id": CAMPAIGN,
                "turns": self.turns,
                "seed": number % self.distinct,
            }
            return "POST", "/v1/simulations", body
        return "GET", f"/v1/characters/{CAST[number % len(CAST)]}", None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Tally:
    """Answers counted over one stretch of time."""

    started: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def add(self, status: str, seconds: float) -> None:
        self.statuses[status] += 1
        self.latencies.append(seconds)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    def summary(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self.started, 1e-9)
        ordered = sorted(self.latencies)
        return {
            "requests": self.requests,
            "failures": self.failures,
            "statuses": dict(sorted(self.statuses.items())),
            "seconds": round(elapsed, 3),
            "requests_per_second": round(self.requests / elapsed, 1),
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        }


async def _send(session: aiohttp.ClientSession, plan: LoadPlan, number: int) -> tuple[str, float]:
    method, path, body = plan.request(number)
    started = time.perf_counter()
    try:
        async with session.request(method, plan.url + path, json=body) as response:
            await response.read()
            status = str(response.status)
    except (aiohttp.ClientError, TimeoutError):
        status = NO_ANSWER
    return status, time.perf_counter() - started


async def run_load(plan: LoadPlan, emit: Any = print) -> dict[str, Any]:
    """Send `plan`'s requests with `plan.concurrency` workers until the duration or the request
    budget is used up; `emit` each interval's line (if asked) and return the summary."""
    now = time.monotonic
    total = Tally(now())
    interval = Tally(now())
    next_number = 0
    deadline = total.started + plan.duration_seconds
    timeout = aiohttp.ClientTimeout(total=plan.request_timeout_seconds)
    connector = aiohttp.TCPConnector(limit=plan.concurrency, force_close=not plan.reuse_connections)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_number, interval
        while now() < deadline and next_number < plan.max_requests:
            number, next_number = next_number, next_number + 1
            status, seconds = await _send(session, plan, number)
            total.add(status, seconds)
            interval.add(status, seconds)
            if plan.report_every_seconds and now() - interval.started >= plan.report_every_seconds:
                line = interval.summary(now())
                emit(
                    json.dumps(
                        {"interval": True, "at_seconds": round(now() - total.started, 1)} | line
                    )
                )
                interval = Tally(now())

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(plan.concurrency)))
    return total.summary(now())


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m novel_engine.loadgen",
        description="Send a bounded load to a NovelEngine and report requests/s, p50, p99 and "
        "failures as JSON lines.",
    )
    parser.add_argument("url", help="base URL, e.g. http://demo.default.svc:8080")
    parser.add_argument("--concurrency", type=_positive(int), default=8)
    parser.add_argument("--duration", type=_positive(float), default=30.0, help="seconds")
    parser.add_argument("--max-requests", type=_positive(int), default=100_000)
    parser.add_argument(
        "--simulation-share", type=_share, default=0.5, help="share of POST /v1/simulations"
    )
    parser.add_argument(
        "--distinct", type=_positive(int), default=50, help="different simulations (seeds)"
    )
    parser.add_argument("--turns", type=_positive(int), default=20, help="turns per simulation")
    parser.add_argument("--timeout", type=_positive(float), default=30.0, help="per request")
    parser.add_argument(
        "--report-every", type=_positive(float), default=None, help="seconds between lines"
    )
    parser.add_argument(
        "--reuse-connections",
        action="store_true",
        help="keep connections open (default: a new connection per request, so a Service "
        "spreads requests over all ready replicas, new ones included)",
    )
    parser.add_argument(
        "--max-failures", type=int, default=0, help="failures allowed before exit status 1"
    )
    return parser


def plan_from(argv: Sequence[str] | None = None) -> LoadPlan:
    """The plan a command line asks for (exit 2 with a message when it is invalid)."""
    args = build_parser().parse_args(argv)
    return LoadPlan(
        url=args.url.rstrip("/"),
        concurrency=args.concurrency,
        duration_seconds=args.duration,
        max_requests=args.max_requests,
        simulation_share=args.simulation_share,
        distinct=args.distinct,
        turns=args.turns,
        request_timeout_seconds=args.timeout,
        report_every_seconds=args.report_every or 0.0,
        reuse_connections=args.reuse_connections,
        max_failures=args.max_failures,
    )


def main(argv: Sequence[str] | None = None) -> None:
    plan = plan_from(argv)
    summary = asyncio.run(run_load(plan, emit=lambda line: print(line, flush=True)))
    print(json.dumps({"summary": True} | summary), flush=True)
    if summary["failures"] > plan.max_failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
