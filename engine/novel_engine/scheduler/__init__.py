"""Priority scheduling of engine work (CRITICAL > HIGH > NORMAL > LOW, with aging)."""

from novel_engine.scheduler.queue import AgingQueue
from novel_engine.scheduler.scheduler import Scheduler
from novel_engine.scheduler.types import (
    DeadlineExceeded,
    ExecutorKind,
    Priority,
    QueueFull,
    SchedulerStopped,
)

__all__ = [
    "AgingQueue",
    "DeadlineExceeded",
    "ExecutorKind",
    "Priority",
    "QueueFull",
    "Scheduler",
    "SchedulerStopped",
]
