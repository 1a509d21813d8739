"""The operator's memory does not grow with objects it has no business with: its resident memory
(idle, and the peak of a start, when every watch lists what it selects) serving all namespaces,
without and then with 1,000 unrelated 80 KB Secrets (the size of Helm release Secrets) in another
namespace.

    python -m bench.bench_operator_memory            # starts its own test bed
    NOVEL_ENGINE_TESTBED_DIR=.testbed python -m bench.bench_operator_memory

Baseline from the same run, same bed: the same operator started the same way before the Secrets
exist. Both starts find the same few NovelEngines, Ready, with their children.
"""

import base64
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.bench_operator import (
    Operator,
    is_ready,
    mib,
    novelengine,
    novelengines_path,
    prepare,
    request,
    test_bed,
    wait,
)

ENGINES_NAMESPACE = "bench-memory"
NOISE_NAMESPACE = "bench-noise"
ENGINES = 5
NOISE_SECRETS = 1000
NOISE_BYTES = 80 * 1000  # of Secret data, base64 included
#: Time for a started operator to list, watch and reconcile everything, then sit idle.
SETTLE_SECONDS = 20.0


def noise_secret(index: int) -> dict[str, Any]:
    payload = base64.b64encode(os.urandom(NOISE_BYTES * 3 // 4)).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"sh.helm.release.v1.noise-{index}.v1", "namespace": NOISE_NAMESPACE},
        "type": "helm.sh/release.v1",
        "data": {"release": payload},
    }


def create_noise(bed: Any) -> None:
    collection = f"/api/v1/namespaces/{NOISE_NAMESPACE}/secrets"
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: request(bed, "POST", collection, noise_secret(i)), range(NOISE_SECRETS)
            )
        )


def measure(kubeconfig: Path, log: Path) -> tuple[int, int]:
    """(idle, peak) resident bytes of an operator started now, serving all namespaces."""
    operator = Operator(kubeconfig, [], log)
    try:
        time.sleep(SETTLE_SECONDS)
        return operator.rss()
    finally:
        operator.stop()


def main() -> None:
    with test_bed() as bed, tempfile.TemporaryDirectory(prefix="bench-memory-log-") as logs:
        kubeconfig = prepare(bed, (ENGINES_NAMESPACE, NOISE_NAMESPACE))
        try:
            collection = novelengines_path(ENGINES_NAMESPACE)
            operator = Operator(kubeconfig, [], Path(logs) / "setup.log")
            try:
                for index in range(ENGINES):
                    request(bed, "POST", collection, novelengine(ENGINES_NAMESPACE, f"n{index}"))

                def all_ready() -> bool:
                    items = request(bed, "GET", collection)["items"]
                    return len(items) == ENGINES and all(is_ready("NovelEngine", i) for i in items)

                wait(f"{ENGINES} NovelEngines Ready", all_ready, 300)
            finally:
                operator.stop()

            quiet_idle, quiet_peak = measure(kubeconfig, Path(logs) / "quiet.log")
            started = time.perf_counter()
            create_noise(bed)
            noise_seconds = time.perf_counter() - started
            noisy_idle, noisy_peak = measure(kubeconfig, Path(logs) / "noisy.log")
        finally:
            for namespace in (ENGINES_NAMESPACE, NOISE_NAMESPACE):
                request(bed, "DELETE", f"/api/v1/namespaces/{namespace}")

    noise = f"{NOISE_SECRETS} unrelated {NOISE_BYTES // 1000} KB Secrets"
    print(
        f"operator memory, --all-namespaces, {ENGINES} NovelEngines Ready "
        f"(test bed; {noise} created in {noise_seconds:.0f} s; {SETTLE_SECONDS:.0f} s after start)"
    )
    print(
        f"  RSS idle                  with the Secrets {mib(noisy_idle)} | without "
        f"{mib(quiet_idle)} | ratio {noisy_idle / quiet_idle:.2f}"
    )
    print(
        f"  RSS peak of a (re)start   with the Secrets {mib(noisy_peak)} | without "
        f"{mib(quiet_peak)} | ratio {noisy_peak / quiet_peak:.2f}"
    )


if __name__ == "__main__":
    main()
