"""Log lines for failures that recur with every request: one per kind and minute, not one each.

A full data volume, or a Redis that refuses writes, fails every write until someone acts; a line
per failure would flood the log and push its first line out of sight.
"""

import logging
import math
import time
from collections.abc import Callable

LOG_INTERVAL_SECONDS = 60.0


class ThrottledLog:
    """WARNING lines to ``logger``, at most one per kind of failure per ``interval_seconds``.

    The first line after a quiet spell says how many of its kind went unlogged since the one
    before, so the count of failures is never lost, only their lines.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        # Per kind: when last logged, and how many were not logged since.
        self._kinds: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        logged_at, unlogged = self._kinds.get(kind, (-math.inf, 0))
        now = self._clock()
        if now - logged_at < self._interval:
            self._kinds[kind] = (logged_at, unlogged + 1)
            return
        self._kinds[kind] = (now, 0)
        if unlogged:
            message += f" ({unlogged} more of this kind since the last such line)"
        self._logger.warning(message, *args)
