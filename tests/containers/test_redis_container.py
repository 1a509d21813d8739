"""The managed Redis container under the operator's pod spec (CI: Debian's redis-server 7.0)."""

import pytest

try:
    from pods import PodContainer, SampleChildren, redis_cli
except ModuleNotFoundError:  # tests/containers imported as a package
    from .pods import PodContainer, SampleChildren, redis_cli  # type: ignore[no-redef]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def test_redis_refuses_a_client_without_the_password(redis_pod: PodContainer) -> None:
    assert redis_cli(redis_pod, None, "PING").startswith("NOAUTH")
    assert "WRONGPASS" in redis_cli(redis_pod, "wrong-password", "PING")


def test_redis_accepts_the_password_from_the_secret(
    redis_pod: PodContainer, sample: SampleChildren
) -> None:
    assert redis_cli(redis_pod, sample.redis_password, "SET", "greeting", "hello") == "OK"
    assert redis_cli(redis_pod, sample.redis_password, "GET", "greeting") == "hello"


def test_redis_runs_as_the_pod_user_with_nothing_to_escalate(redis_pod: PodContainer) -> None:
    status = redis_pod.process_status()
    assert status["Uid"].split()[0] == "999"
    assert int(status["CapEff"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert "Read-only file system" in redis_pod.exec("touch", "/redis-was-here", check=False)
