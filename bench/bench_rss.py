"""Memory: resident set size of the serving engine process, idle and under load.

Idle: a fresh engine with the sample library, after its first requests and a short rest.
Also idle, for where the memory goes: the engine restarted on a data directory that already
holds the samples (a restart skips that pass), before and after its first /metrics scrape.
Under load: wrk on cached character reads while another client posts uncached simulations
(each one a new result in the caches); RSS is sampled from /proc/<pid>/status (VmRSS) during
the run, and VmHWM gives the peak. The simulations are of the largest size the engine runs in
the serving process (inline); larger ones go to the process pool, whose workers are separate
processes and not counted.

Two processes started the same way (same python, idle after a few requests) give the same-run
baselines: a bare aiohttp hello app, and the same app after importing the libraries the engine
is built on (pydantic with one model built, prometheus_client, aiosqlite, yaml) and no engine
code: the libraries-only floor. Both run from bench.baseline_apps, which imports nothing of the
benches' own machinery. Goal: the engine idles at most 3 MiB above that floor. The kernel
reports KiB; figures are printed in MiB and MB.

Run: `python -m bench.bench_rss` (needs wrk: `scripts/system-deps`).
"""

import compileall
import importlib.util
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench.baseline_apps import ENGINE_LIBRARIES
from bench.bench_http import (
    CHARACTER_PATH,
    CONNECTIONS,
    Server,
    engine,
    engine_on,
    hello_app,
    pinned,
)

MIB = 1024 * 1024
GOAL_OVER_FLOOR_BYTES = 3 * MIB
LOAD_SECONDS = 15
IDLE_SECONDS = 2
FIRST_REQUESTS = ("/readyz", CHARACTER_PATH, "/v1/characters")
# 2 x 20 = 40 agent-turns: the most the engine runs in the serving process itself (inline).
SIMULATION = {
    "character_ids": ["ilse-varn", "seren-ashdown"],
    "campaign_id": "siege-of-emberfall",
    "turns": 20,
}


def status_bytes(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def sizes(size: int) -> str:
    return f"{size / MIB:6.1f} MiB {size / 1e6:6.1f} MB"


def idle_memory(server: Server, paths: Sequence[str]) -> dict[str, int]:
    """VmRSS after ``paths`` and a rest, and its two parts: RssAnon (the process's own memory:
    Python objects, heaps, stacks) and RssFile (mapped files, mostly library code pages)."""
    for path in paths:
        with urllib.request.urlopen(server.url + path) as response:
            response.read()
    time.sleep(IDLE_SECONDS)
    return {field: status_bytes(server.pid, field) for field in ("VmRSS", "RssAnon", "RssFile")}


def compile_engine() -> None:
    """Write the engine's bytecode, as installing the package does (pip compiles at install).

    An editable checkout run with PYTHONDONTWRITEBYTECODE (set in the image too) would compile
    every engine module at each start, and that transient memory would count as idle RSS.
    """
    spec = importlib.util.find_spec("novel_engine")
    if spec is not None and spec.submodule_search_locations:
        compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)


def post_simulations(url: str, stop: threading.Event) -> int:
    posted = 0
    while not stop.is_set():
        body = json.dumps({**SIMULATION, "seed": posted}).encode()
        request = urllib.request.Request(
            url + "/v1/simulations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        posted += 1
    return posted


def main() -> None:
    if shutil.which("wrk") is None:
        print("bench_rss: wrk is not installed (scripts/system-deps installs it); skipped")
        return
    compile_engine()
    with hello_app(cpu=None) as bare:
        bare_idle = idle_memory(bare, ["/"] * 4)["VmRSS"]
    with hello_app("libraries", cpu=None) as libraries:
        floor = idle_memory(libraries, ["/"] * 4)
    with engine(cpu=None) as served:
        engine_idle = idle_memory(served, [*FIRST_REQUESTS, "/metrics"])

        stop = threading.Event()
        posted: list[int] = []
        poster = threading.Thread(
            target=lambda: posted.append(post_simulations(served.url, stop)), daemon=True
        )
        load = subprocess.Popen(
            pinned(
                [
                    "wrk",
                    "-t1",
                    f"-c{CONNECTIONS}",
                    f"-d{LOAD_SECONDS}s",
                    served.url + CHARACTER_PATH,
                ],
                "1",
            ),
            stdout=subprocess.DEVNULL,
        )
        poster.start()
        samples = []
        while load.poll() is None:
            samples.append(status_bytes(served.pid, "VmRSS"))
            time.sleep(0.2)
        stop.set()
        poster.join()
        peak = status_bytes(served.pid, "VmHWM")
        after = status_bytes(served.pid, "VmRSS")

    with tempfile.TemporaryDirectory(prefix="novel-engine-bench-") as data_dir:
        with engine_on(data_dir, cpu=None):
            pass  # loads the samples
        with engine_on(data_dir, cpu=None) as restarted:
            unscraped = idle_memory(restarted, FIRST_REQUESTS)["VmRSS"]
            scraped = idle_memory(restarted, ["/metrics"])["VmRSS"]

    libraries_idle, idle = floor["VmRSS"], engine_idle["VmRSS"]
    verdict = "meets" if idle - libraries_idle <= GOAL_OVER_FLOOR_BYTES else "misses"
    anonymous, files = (engine_idle[field] - floor[field] for field in ("RssAnon", "RssFile"))
    print(
        "bench_rss: resident memory (VmRSS); goal: engine idle at most"
        f" {GOAL_OVER_FLOOR_BYTES / MIB:.0f} MiB over the libraries-only floor"
    )
    print(f"  bare aiohttp hello app, idle        {sizes(bare_idle)}")
    print(
        f"  hello app + engine libraries, idle  {sizes(libraries_idle)}"
        f"  {libraries_idle / bare_idle:4.2f}x bare ({', '.join(ENGINE_LIBRARIES)})"
    )
    print(
        f"  engine, idle                        {sizes(idle)}  {idle / bare_idle:4.2f}x bare,"
        f" {(idle - libraries_idle) / MIB:+.1f} MiB over its libraries ({verdict} the goal)"
    )
    print(
        f"    of which anonymous {anonymous / MIB:+.1f} MiB (objects, heaps, stacks),"
        f" file-backed {files / MIB:+.1f} MiB (library code pages)"
    )
    print(
        f"  engine restarted on its data, idle  {sizes(scraped)}"
        f"  {(scraped - libraries_idle) / MIB:+.1f} MiB over its libraries, of which its first"
        f" /metrics scrape {(scraped - unscraped) / MIB:+.1f} MiB"
    )
    print(
        f"  engine under load (max sampled)     {sizes(max(samples))}  ({LOAD_SECONDS} s of wrk"
        f" -c{CONNECTIONS} on GET {CHARACTER_PATH} + {posted[0]} uncached simulations)"
    )
    print(f"  engine peak (VmHWM)                 {sizes(peak)}")
    print(f"  engine after load                   {sizes(after)}")


if __name__ == "__main__":
    main()
