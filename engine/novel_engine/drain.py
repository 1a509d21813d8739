"""Draining: the state between "stop taking new work" and "process exits".

A stop signal first makes the engine unready (readiness reports 503) while it still serves, so
that load balancers take it out of rotation; then the drain begins: the listener closes, and
in-flight requests and running work share the drain budget.
"""

import asyncio
import time
from collections.abc import Callable

# How often the drain looks whether the requests in flight have finished.
_POLL_SECONDS = 0.02


class DrainState:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # Requests being served, probes and scrapes aside; the request metrics layer counts them
        # (it reports the same number as a gauge), the drain waits for them.
        self.in_flight = 0
        # Whether a connection holds a request whose head is still arriving (the server says).
        self.requests_arriving: Callable[[], bool] = lambda: False
        self._stopping = False
        self._started: float | None = None

    @property
    def draining(self) -> bool:
        """True from the stop signal on: readiness fails, though requests are still served."""
        return self._stopping

    def announce(self) -> None:
        """A stop is coming: fail readiness now, without starting the drain budget."""
        self._stopping = True

    def begin(self) -> None:
        """The drain begins: its budget counts from now."""
        self._stopping = True
        if self._started is None:
            self._started = time.monotonic()

    def remaining(self) -> float:
        """Seconds left of the drain budget (the full budget before draining began)."""
        if self._started is None:
            return self.timeout
        return max(0.0, self.timeout - (time.monotonic() - self._started))

    async def requests_finished(self) -> None:
        """Wait until no request is in flight or arriving, or the budget is spent. Polled: the
        hot path only counts."""
        while self.in_flight > 0 or self.requests_arriving():
            left = self.remaining()
            if left <= 0:
                return
            await asyncio.sleep(min(_POLL_SECONDS, left))
