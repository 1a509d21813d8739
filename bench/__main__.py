"""`python -m bench`: the benchmarks in turn, each printing its figures and its baseline
(bench_autoscaler and bench_operator_memory are run on their own)."""

import importlib
import time

# Cheapest first; the HTTP and memory benchmarks start processes and drive them with wrk, the
# operator's starts a test bed and a fleet of 200 NovelEngines.
BENCHMARKS = (
    "bench.bench_cache",
    "bench.bench_scheduler",
    "bench.bench_simulation",
    "bench.bench_http",
    "bench.bench_rss",
    "bench.bench_scrape",
    "bench.bench_l2_recovery",
    "bench.bench_operator",
)


def main() -> None:
    for name in BENCHMARKS:
        started = time.monotonic()
        importlib.import_module(name).main()
        print(f"({name} took {time.monotonic() - started:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
