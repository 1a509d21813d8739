"""Draining: the state between "stop taking new work" and "process exits".

Readiness reports 503 while draining, and shutdown gives running work what is left of the drain
budget.
"""

import time


class DrainState:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._started: float | None = None

    @property
    def draining(self) -> bool:
        return self._started is not None

    def begin(self) -> None:
        if self._started is None:
            self._started = time.monotonic()

    def remaining(self) -> float:
        """Seconds left of the drain budget (the full budget before draining began)."""
        if self._started is None:
            return self.timeout
        return max(0.0, self.timeout - (time.monotonic() - self._started))
