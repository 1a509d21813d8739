"""HTTP throughput: cached GET /v1/characters/{id} on the engine against a bare aiohttp app.

Both servers run as separate processes pinned to the same CPU; wrk runs pinned to the other CPU
with 64 connections, and the two are driven in alternating rounds of the same duration so that
background load on a shared machine hits both alike. A warm-up run comes first (for the engine it
fills the in-process cache, as any first request does). Reported: the best round of each (req/s,
p50, p99), the ratio of the best rates and the median ratio of the rounds, and the server CPU time
per request (from /proc/<pid>/stat), which background load disturbs least. Goal: the engine
serves at least 0.6x the requests per second of the bare app.

Run: `python -m bench.bench_http` (needs wrk: `scripts/system-deps`).
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

CONNECTIONS = 64
DURATION_SECONDS = 8
WARM_UP_SECONDS = 3
ROUNDS = 3
GOAL_RATIO = 0.6
CHARACTER_PATH = "/v1/characters/ilse-varn"
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pinned(command: Sequence[str], cpu: str) -> list[str]:
    """``command`` bound to one CPU when there are at least two (servers and load apart)."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", cpu, *command]
    return list(command)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@contextmanager
def running(command: Sequence[str], probe_path: str, port: int) -> Iterator[Server]:
    """A server process, stopped by PID (SIGTERM, then SIGKILL) when the block ends."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url + probe_path, process)
        yield Server(process, url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def engine(*args: str, cpu: str | None = SERVER_CPU) -> Iterator[Server]:
    """The engine with a fresh data directory (the sample library) on a free port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="novel-engine-bench-") as data_dir:
        command = [
            sys.executable, "-m", "novel_engine", "--port", str(port),
            "--data-dir", data_dir, "--log-level", "WARNING", *args,
        ]  # fmt: skip
        with running(pinned(command, cpu) if cpu else command, "/readyz", port) as server:
            yield server


@contextmanager
def hello_app(cpu: str | None = SERVER_CPU) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "bench.bench_http", "--hello", str(port)]
    with running(pinned(command, cpu) if cpu else command, "/", port) as server:
        yield server


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


def serve_hello(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@dataclass
class LoadResult:
    requests_per_second: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float = 0.0


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{output}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def wrk(url: str, seconds: int) -> LoadResult:
    """wrk at CONNECTIONS connections, one thread, pinned to LOAD_CPU."""
    command = pinned(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url], LOAD_CPU
    )
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise RuntimeError(f"no request rate in wrk output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return LoadResult(
        float(rate.group(1)),
        int(total.group(1)),
        _latency_ms(output, "50"),
        _latency_ms(output, "99"),
        int(errors.group(1)) if errors else 0,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: Server, url: str) -> LoadResult:
    before = cpu_seconds(server.pid)
    result = wrk(url, DURATION_SECONDS)
    result.cpu_us_per_request = (cpu_seconds(server.pid) - before) / result.requests * 1e6
    return result


def report(name: str, rounds: list[LoadResult]) -> LoadResult:
    best = max(rounds, key=lambda result: result.requests_per_second)
    cpu = statistics.median(result.cpu_us_per_request for result in rounds)
    print(
        f"  {name:<38} {best.requests_per_second:8.0f} req/s  p50 {best.p50_ms:6.2f} ms"
        f"  p99 {best.p99_ms:6.2f} ms  CPU {cpu:5.0f} us/req  non-2xx {best.errors}"
    )
    return best


def main() -> None:
    if shutil.which("wrk") is None:
        print("bench_http: wrk is not installed (scripts/system-deps installs it); skipped")
        return
    print(
        f"bench_http: wrk -t1 -c{CONNECTIONS}, {ROUNDS} alternating rounds of {DURATION_SECONDS} s,"
        f" servers on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}"
    )
    with hello_app() as bare, engine() as served:
        targets = [(bare, bare.url + "/"), (served, served.url + CHARACTER_PATH)]
        for _, url in targets:
            wrk(url, WARM_UP_SECONDS)
        rounds: list[list[LoadResult]] = [[], []]
        for _ in range(ROUNDS):
            for measured, (server, url) in zip(rounds, targets, strict=True):
                measured.append(measure(server, url))
    baseline = report("bare aiohttp hello", rounds[0])
    cached = report(f"engine GET {CHARACTER_PATH}", rounds[1])
    ratio = cached.requests_per_second / baseline.requests_per_second
    per_round = statistics.median(
        engine_round.requests_per_second / bare_round.requests_per_second
        for bare_round, engine_round in zip(rounds[0], rounds[1], strict=True)
    )
    cpu_ratio = statistics.median(r.cpu_us_per_request for r in rounds[0]) / statistics.median(
        r.cpu_us_per_request for r in rounds[1]
    )
    verdict = "meets" if ratio >= GOAL_RATIO else "misses"
    print(
        f"  engine / bare = {ratio:.2f}x best rates, {per_round:.2f}x median round,"
        f" {cpu_ratio:.2f}x by CPU per request ({verdict} the {GOAL_RATIO}x goal)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hello", type=int, metavar="PORT", help="serve the bare app only")
    arguments = parser.parse_args()
    if arguments.hello:
        serve_hello(arguments.hello)
    else:
        main()
