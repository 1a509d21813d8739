"""Log lines for recurring failures: one per kind and interval, and the count of the rest."""

import logging

import pytest

from novel_engine.throttled_log import ThrottledLog

LOGGER = "tests.throttled"


def test_a_kind_is_logged_once_per_interval_then_with_how_many_went_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = 0.0
    throttled = ThrottledLog(logging.getLogger(LOGGER), 60.0, clock=lambda: now)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for write in range(5):
            throttled.warning("full", "write %d refused", write)
        throttled.warning("read-only", "a write to a read-only volume")  # a kind of its own
        now = 59.9
        throttled.warning("full", "write %d refused", 5)
        now = 60.0
        throttled.warning("full", "write %d refused", 6)
        throttled.warning("full", "write %d refused", 7)
        now = 120.0
        throttled.warning("full", "write %d refused", 8)
        now = 500.0
        throttled.warning("full", "write %d refused", 9)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "write 0 refused"),
        ("WARNING", "a write to a read-only volume"),
        ("WARNING", "write 6 refused (5 more of this kind since the last such line)"),
        ("WARNING", "write 8 refused (1 more of this kind since the last such line)"),
        ("WARNING", "write 9 refused"),
    ]
