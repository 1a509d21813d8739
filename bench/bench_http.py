"""HTTP throughput: cached GET /v1/characters/{id} on the engine against a bare aiohttp app.

The bare app serves the same bytes: the engine's response body for the character, fetched
from the engine when it is up, with the same Content-Type, on the same route template
(`/v1/characters/{id}`). What separates the two is the engine's own per-request work.

Both servers run as separate processes pinned to the same CPU; wrk runs pinned to the other CPU
with 64 connections. A warm-up run comes first (for the engine it fills the in-process cache, as
any first request does). Then two kinds of rounds of the same duration:
- in turn: each server alone, with the CPU to itself. Reported per server: the median round
  (req/s, p50, p99) and the server CPU time per request (from /proc/<pid>/stat); the p99 goal is
  judged on the median over rounds of the engine/bare p99 ratios.
- side by side: both servers at once, each with a wrk of its own, so that they share the CPU at
  the same moments. On a shared machine a core's speed changes by half from one round to the
  next, which rounds taken in turn feel unequally; side by side both feel it alike, and the
  engine/bare ratio of req/s is the ratio of what a request costs each (when the scheduler
  shares the CPU between them evenly, which the ratio of CPU time per request shows). The req/s
  goal is judged on its median over rounds. (Latency is not: it includes the other server's
  time slices.)
Each ratio is printed with its range over the rounds.
Goals: at least 0.75x the bare app's requests per second (aim: 0.85x), p99 at most 1.3x.

Run: `python -m bench.bench_http` (needs wrk: `scripts/system-deps`).
"""

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CONNECTIONS = 64
DURATION_SECONDS = 4
WARM_UP_SECONDS = 3
ROUNDS = 9
GOAL_RATIO = 0.75
AIM_RATIO = 0.85
GOAL_P99_RATIO = 1.3
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
def engine_on(data_dir: str, *args: str, cpu: str | None = SERVER_CPU) -> Iterator[Server]:
    """The engine on ``data_dir`` (the sample library is loaded into a new one) on a free
    port."""
    port = free_port()
    command = [
        sys.executable, "-m", "novel_engine", "--port", str(port),
        "--data-dir", data_dir, "--log-level", "WARNING", *args,
    ]  # fmt: skip
    with running(pinned(command, cpu) if cpu else command, "/readyz", port) as server:
        yield server


@contextmanager
def engine(*args: str, cpu: str | None = SERVER_CPU) -> Iterator[Server]:
    """The engine with a fresh data directory (the sample library) on a free port."""
    with (
        tempfile.TemporaryDirectory(prefix="novel-engine-bench-") as data_dir,
        engine_on(data_dir, *args, cpu=cpu) as server,
    ):
        yield server


@contextmanager
def hello_app(kind: str = "hello", cpu: str | None = SERVER_CPU) -> Iterator[Server]:
    """The hello app of bench.baseline_apps, in a process of its own; ``kind`` "libraries":
    the same after importing the engine's libraries."""
    port = free_port()
    command = [sys.executable, "-m", "bench.baseline_apps", kind, str(port)]
    with running(pinned(command, cpu) if cpu else command, "/", port) as server:
        yield server


@contextmanager
def same_bytes_app(body: bytes, content_type: str, cpu: str = SERVER_CPU) -> Iterator[Server]:
    """A bare app answering GET /v1/characters/{id} with ``body`` as ``content_type``, in a process
    of its own (bench.baseline_apps)."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="novel-engine-bench-body-") as body_file:
        body_file.write(body)
        body_file.flush()
        command = [
            sys.executable, "-m", "bench.baseline_apps", "same-bytes", str(port),
            body_file.name, content_type,
        ]  # fmt: skip
        with running(pinned(command, cpu), CHARACTER_PATH, port) as server:
            yield server


def fetch(url: str) -> tuple[bytes, str]:
    """The body and Content-Type of a GET."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers["Content-Type"]


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


def wrk_command(url: str, seconds: int) -> list[str]:
    """wrk at CONNECTIONS connections, one thread, pinned to LOAD_CPU."""
    return pinned(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url], LOAD_CPU)


def wrk(url: str, seconds: int) -> LoadResult:
    output = subprocess.run(
        wrk_command(url, seconds), capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> LoadResult:
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


def measure(targets: Sequence[tuple[Server, str]]) -> list[LoadResult]:
    """One wrk per server, all at once (one server: that server alone), with the CPU time each
    server spent per request."""
    before = [cpu_seconds(server.pid) for server, _ in targets]
    loads = [
        subprocess.Popen(wrk_command(url, DURATION_SECONDS), stdout=subprocess.PIPE, text=True)
        for _, url in targets
    ]
    outputs = [load.communicate()[0] for load in loads]
    if any(load.returncode for load in loads):
        raise RuntimeError(f"wrk failed:\n{outputs}")
    results = [parse_wrk(output) for output in outputs]
    for result, (server, _), started in zip(results, targets, before, strict=True):
        result.cpu_us_per_request = (cpu_seconds(server.pid) - started) / result.requests * 1e6
    return results


def rate_of(result: LoadResult) -> float:
    return result.requests_per_second


def p99_of(result: LoadResult) -> float:
    return result.p99_ms


def cpu_of(result: LoadResult) -> float:
    return result.cpu_us_per_request


def ratios(
    rounds: Sequence[Sequence[LoadResult]], value: Callable[[LoadResult], float]
) -> list[float]:
    """engine/bare for ``value``, round by round (rounds: the bare app's, the engine's)."""
    bare, ours = rounds
    return [value(engine) / value(base) for base, engine in zip(bare, ours, strict=True)]


def spread(values: Sequence[float]) -> str:
    """The median of ``values`` and their range."""
    return f"{statistics.median(values):.2f}x (rounds {min(values):.2f} to {max(values):.2f})"


def report(name: str, rounds: list[LoadResult]) -> None:
    """The median round by rate, and the median CPU time per request."""
    middle = sorted(rounds, key=lambda result: result.requests_per_second)[len(rounds) // 2]
    cpu = statistics.median(result.cpu_us_per_request for result in rounds)
    print(
        f"  {name:<38} {middle.requests_per_second:8.0f} req/s  p50 {middle.p50_ms:6.2f} ms"
        f"  p99 {middle.p99_ms:6.2f} ms  CPU {cpu:5.0f} us/req  non-2xx {middle.errors}"
    )


def main() -> None:
    if shutil.which("wrk") is None:
        print("bench_http: wrk is not installed (scripts/system-deps installs it); skipped")
        return
    print(
        f"bench_http: wrk -t1 -c{CONNECTIONS}, {ROUNDS} rounds of {DURATION_SECONDS} s in turn"
        f" and {ROUNDS} side by side, servers on CPU {SERVER_CPU},"
        f" wrk on CPU {LOAD_CPU}"
    )
    with engine() as served:
        body, content_type = fetch(served.url + CHARACTER_PATH)
        with same_bytes_app(body, content_type) as bare:
            targets = [(bare, bare.url + CHARACTER_PATH), (served, served.url + CHARACTER_PATH)]
            for _, url in targets:
                wrk(url, WARM_UP_SECONDS)
            alone: list[list[LoadResult]] = [[], []]
            together: list[list[LoadResult]] = [[], []]
            for _ in range(ROUNDS):
                for measured, target in zip(alone, targets, strict=True):
                    measured.extend(measure([target]))
                for measured, result in zip(together, measure(targets), strict=True):
                    measured.append(result)
    print("  in turn, each server alone:")
    report(f"bare aiohttp, same {len(body)} bytes", alone[0])
    report(f"engine GET {CHARACTER_PATH}", alone[1])
    print("  side by side:")
    report(f"bare aiohttp, same {len(body)} bytes", together[0])
    report(f"engine GET {CHARACTER_PATH}", together[1])
    rate, p99 = ratios(together, rate_of), ratios(alone, p99_of)
    rate_verdict = "meets" if statistics.median(rate) >= GOAL_RATIO else "misses"
    p99_verdict = "meets" if statistics.median(p99) <= GOAL_P99_RATIO else "misses"
    cpu = [1 / ratio for ratio in ratios(together, cpu_of)]
    print(
        f"  engine / bare, medians of the per-round ratios:\n"
        f"    req/s side by side  {spread(rate)}: {rate_verdict} the {GOAL_RATIO}x goal"
        f" (aim {AIM_RATIO}x)\n"
        f"    by CPU per request  {spread(cpu)} (side by side)\n"
        f"    p99 in turn         {spread(p99)}: {p99_verdict} the {GOAL_P99_RATIO}x goal\n"
        f"    req/s in turn       {spread(ratios(alone, rate_of))}"
    )


if __name__ == "__main__":
    main()
