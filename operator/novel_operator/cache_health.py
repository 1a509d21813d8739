"""The CacheDegraded condition: do the engine pods reach their shared L2 tier? Pure.

The engines export the state of their L2 tier (`ok`, `unreachable`, `auth_failed`) on
/metrics; the scrape loop reads it from the ready pods (scrape.PodScrape.l2_state), decides
here, and keeps the verdict in `CacheMemory` for the reconcile to write. CacheDegraded is an
abnormal-true condition: True while some engine pod reports its L2 tier unreachable or
refusing credentials, False once every pod read reports it answering, absent before any pod
was read (and without an L2 tier).
"""

from collections.abc import Mapping

from novel_operator import names
from novel_operator.scaling import ConditionVerdict, Key

#: State exported by the engine -> (reason, what the message says about it); the first
#: listed state found among the pods gives the reason (a state not listed counts as unreachable).
_DEGRADED: Mapping[str, tuple[str, str]] = {
    "auth_failed": (names.REASON_L2_AUTH_FAILED, "Redis refuses the configured credentials"),
    "unreachable": (names.REASON_L2_UNREACHABLE, "Redis does not answer"),
}
_LISTED_PODS = 5


class CacheVerdict(ConditionVerdict):
    """The CacheDegraded condition: do the engine pods reach their L2 tier."""


def cache_verdict(states: Mapping[str, str]) -> CacheVerdict | None:
    """CacheDegraded from the L2 states the engine pods reported ({pod: state}); None (keep
    what is known) when no pod reported one."""
    if not states:
        return None
    degraded = {pod: state for pod, state in states.items() if state != "ok"}
    if not degraded:
        return CacheVerdict(
            "False", names.REASON_L2_AVAILABLE, "the engine pods reach their L2 cache tier"
        )
    found = set(degraded.values())
    reason, why = next(
        (_DEGRADED[state] for state in _DEGRADED if state in found), _DEGRADED["unreachable"]
    )
    listed = ", ".join(f"{pod} ({state})" for pod, state in sorted(degraded.items())[:_LISTED_PODS])
    return CacheVerdict(
        "True",
        reason,
        f"{len(degraded)} of {len(states)} engine pods report their L2 cache tier degraded"
        f" ({why}); they serve from L1/L3: {listed}",
    )


class CacheMemory:
    """The last CacheDegraded verdict per NovelEngine (namespace, name): written by the scrape
    loop, read by the reconcile. Lost on an operator restart: seeded again from the status."""

    def __init__(self) -> None:
        self._verdicts: dict[Key, CacheVerdict] = {}

    def verdict(self, key: Key) -> CacheVerdict | None:
        return self._verdicts.get(key)

    def seed(self, key: Key, verdict: CacheVerdict | None) -> None:
        """Start from what the status showed (after a restart), unless already known."""
        if verdict is not None:
            self._verdicts.setdefault(key, verdict)

    def update(self, key: Key, verdict: CacheVerdict | None) -> bool:
        """Store a new verdict (None: nothing new); True if it changed."""
        if verdict is None or self._verdicts.get(key) == verdict:
            return False
        self._verdicts[key] = verdict
        return True

    def forget(self, key: Key) -> None:
        self._verdicts.pop(key, None)
