"""Memory: resident set size of the serving engine process, idle and under load.

Idle: a fresh engine with the sample library, after its first requests and a short rest.
Under load: wrk on cached character reads while another client posts uncached simulations
(each one a new result in the caches); RSS is sampled from /proc/<pid>/status (VmRSS) during
the run, and VmHWM gives the peak. Goal: idle RSS <= 50 MB. Worker processes of the process
pool are separate processes and not counted (the default threshold keeps simulations in the
serving process anyway).

Run: `python -m bench.bench_rss` (needs wrk: `scripts/system-deps`).
"""

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from bench.bench_http import CHARACTER_PATH, CONNECTIONS, engine, pinned

GOAL_IDLE_MB = 50
LOAD_SECONDS = 15
SIMULATION = {
    "character_ids": ["ilse-varn", "seren-ashdown", "dagny-kross", "wren-aldane"],
    "campaign_id": "siege-of-emberfall",
    "turns": 20,
}


def status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


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
    with engine(cpu=None) as served:
        for path in ("/readyz", CHARACTER_PATH, "/v1/characters", "/metrics"):
            with urllib.request.urlopen(served.url + path) as response:
                response.read()
        time.sleep(2)
        idle = status_mb(served.pid, "VmRSS")

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
            samples.append(status_mb(served.pid, "VmRSS"))
            time.sleep(0.2)
        stop.set()
        poster.join()
        peak = status_mb(served.pid, "VmHWM")
        after = status_mb(served.pid, "VmRSS")

    verdict = "meets" if idle <= GOAL_IDLE_MB else "misses"
    print("bench_rss: resident memory of the serving engine process")
    print(f"  idle                         {idle:7.1f} MiB ({verdict} the {GOAL_IDLE_MB} MB goal)")
    print(
        f"  under load (max sampled)     {max(samples):7.1f} MiB  ({LOAD_SECONDS} s of wrk"
        f" -c{CONNECTIONS} on GET {CHARACTER_PATH} + {posted[0]} uncached simulations)"
    )
    print(f"  peak (VmHWM)                 {peak:7.1f} MiB")
    print(f"  after load                   {after:7.1f} MiB")


if __name__ == "__main__":
    main()
