"""CacheDegraded from the L2 states the engine pods report: table tests, no cluster."""

import pytest

from novel_operator import names
from novel_operator.cache_health import CacheMemory, CacheVerdict, cache_verdict


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({}, None),  # nothing read: keep what is known
        ({"a": "ok", "b": "ok"}, ("False", names.REASON_L2_AVAILABLE)),
        ({"a": "ok", "b": "unreachable"}, ("True", names.REASON_L2_UNREACHABLE)),
        ({"a": "unreachable", "b": "auth_failed"}, ("True", names.REASON_L2_AUTH_FAILED)),
        ({"a": "a-state-of-a-newer-engine"}, ("True", names.REASON_L2_UNREACHABLE)),
    ],
)
def test_the_verdict_follows_the_worst_pod(
    states: dict[str, str], expected: tuple[str, str] | None
) -> None:
    verdict = cache_verdict(states)
    assert (None if verdict is None else (verdict.status, verdict.reason)) == expected


def test_the_message_counts_and_names_the_degraded_pods() -> None:
    states = {f"pod-{n}": "auth_failed" for n in range(7)} | {"pod-ok": "ok"}
    verdict = cache_verdict(states)
    assert verdict is not None
    assert verdict.message.startswith("7 of 8 engine pods")
    assert "Redis refuses the configured credentials" in verdict.message
    assert "pod-0 (auth_failed)" in verdict.message
    assert "pod-5" not in verdict.message  # five are named
    assert "pod-ok" not in verdict.message


def test_memory_reports_changes_only_and_a_seed_never_overrides() -> None:
    memory = CacheMemory()
    key = ("stories", "tale")
    degraded = CacheVerdict("True", names.REASON_L2_UNREACHABLE, "down")
    memory.seed(key, degraded)  # from the status, after a restart
    assert memory.verdict(key) == degraded
    assert not memory.update(key, None)
    assert not memory.update(key, degraded)
    fine = CacheVerdict("False", names.REASON_L2_AVAILABLE, "up")
    assert memory.update(key, fine)
    memory.seed(key, degraded)
    assert memory.verdict(key) == fine
    memory.forget(key)
    assert memory.verdict(key) is None
