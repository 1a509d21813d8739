"""CacheDegraded end to end: a real engine process behind the NovelEngine's kwok pod, with a
real password-protected redis-server on loopback, scraped by the operator through its address
map; a wrong password shows on the NovelEngine with its reason, and clears once Redis accepts
it."""

from __future__ import annotations

from pathlib import Path

import pytest
from engines import REDIS_BINARY, PodsToEngines, RedisServer, running_engines
from harness import Cluster, StartOperator, condition_status, wait_condition
from redis import Redis

from novel_operator import names

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def test_a_refused_redis_password_degrades_the_cache_until_redis_accepts_it(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str, tmp_path: Path
) -> None:
    if REDIS_BINARY is None:
        pytest.skip("redis-server is not installed (scripts/system-deps installs it)")
    ns, name = testbed_namespace, "cached"
    (tmp_path / "redis").mkdir()
    redis_server = RedisServer(REDIS_BINARY, tmp_path / "redis", password="the-right-one")
    redis_server.start()
    # No engine targets: the NovelEngine is scraped for its L2 tier alone, on this period.
    operator = start_operator("--namespace", ns, options=["--cache-check-seconds", "1"])
    try:
        with (
            running_engines(
                tmp_path / "engines",
                1,
                "--redis-url",
                redis_server.url,
                env={"NOVEL_ENGINE_REDIS_PASSWORD": "a-wrong-one"},
            ) as engines,
            PodsToEngines(cluster, operator.addresses, ns, name, engines),
        ):
            cluster.create_novelengine(
                ns, name, {"replicas": 1, "cache": {"l2": {"mode": "managed"}}}
            )
            degraded = wait_condition(cluster, ns, name, names.CONDITION_CACHE_DEGRADED, "True")
            assert degraded["reason"] == names.REASON_L2_AUTH_FAILED
            assert "1 of 1 engine pods" in degraded["message"]
            assert "Redis refuses the configured credentials" in degraded["message"]
            # It still serves: Ready follows the engine and managed Redis rollouts, which kwok
            # may finish after the first cache check, and a degraded L2 does not hold it back.
            wait_condition(cluster, ns, name, names.CONDITION_READY, "True")
            obj = cluster.novelengine(ns, name)
            assert obj is not None
            assert condition_status(obj, names.CONDITION_CACHE_DEGRADED) == "True"

            admin = Redis.from_url(redis_server.url, password="the-right-one")
            try:
                admin.config_set("requirepass", "a-wrong-one")  # Redis now takes that password
            finally:
                admin.close()
            fixed = wait_condition(cluster, ns, name, names.CONDITION_CACHE_DEGRADED, "False")
            assert fixed["reason"] == names.REASON_L2_AVAILABLE

            log = engines[0].log()
            assert log.count("auth_failed") == 1  # one error when the state changed
            assert "a-wrong-one" not in log
            assert "the-right-one" not in log
    finally:
        redis_server.stop()
