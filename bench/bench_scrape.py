"""How fast a saturated engine answers the autoscaler's scrape.

    python -m bench.bench_scrape

One engine process (fresh data directory) runs sync simulations of the most characters for
the most turns, 8 in flight at a time, which keeps its process pool (and the machine's cores)
busy. Meanwhile the autoscaler's scrape (`/metrics?name[]=...`, the two families it reads) is
timed, 30 times, against the baseline of the whole exposition (`/metrics`, what Prometheus
reads), interleaved, on the same engine under the same load; then both again with the engine idle.
"""

import asyncio
import itertools
import statistics
import time

import aiohttp

from bench.bench_http import engine
from novel_engine.content.loader import sample_content
from novel_engine.simulation.request import MAX_CHARACTERS, MAX_TURNS
from novel_operator.scrape import METRICS_QUERY

SAMPLES = 30
IN_FLIGHT = 8


def heavy_simulation() -> dict[str, object]:
    """The most characters of the sample library, the most turns: a process-pool simulation."""
    files = sample_content()
    return {
        "character_ids": [str(doc.id) for file in files for doc in file.characters][
            :MAX_CHARACTERS
        ],
        "campaign_id": next(str(doc.id) for file in files for doc in file.campaigns),
        "turns": MAX_TURNS,
    }


async def timed_get(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


async def measure(url: str, in_flight: int) -> tuple[list[float], list[float]]:
    """(scrape, whole exposition) seconds with `in_flight` simulations kept running."""
    seeds = itertools.count(1)
    simulation = heavy_simulation()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def simulate() -> None:
            while not stop.is_set():
                body = {**simulation, "seed": next(seeds)}
                async with session.post(f"{url}/v1/simulations", json=body) as response:
                    await response.read()
                    assert response.status == 200, response.status  # real load, not errors

        load = [asyncio.create_task(simulate()) for _ in range(in_flight)]
        await asyncio.sleep(3 if in_flight else 0)  # the pool busy
        scrape, whole = [], []
        for _ in range(SAMPLES):
            scrape.append(await timed_get(session, f"{url}/metrics?{METRICS_QUERY}"))
            whole.append(await timed_get(session, f"{url}/metrics"))
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*load)
    return scrape, whole


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


def main() -> None:
    with engine(cpu=None) as server:
        loaded = asyncio.run(measure(server.url, IN_FLIGHT))
        idle = asyncio.run(measure(server.url, 0))
    print(f"scrape benchmark (one engine, {SAMPLES} interleaved samples)")
    for label, (scrape, whole) in (
        (f"{IN_FLIGHT} simulations in flight", loaded),
        ("idle", idle),
    ):
        ratio = statistics.median(scrape) / statistics.median(whole)
        print(
            f"  {label:<28} autoscaler scrape {ms(scrape)} | whole /metrics {ms(whole)} "
            f"| ratio {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
