"""The scheduler's vocabulary: priorities, executor kinds and the errors callers handle."""

from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Lower value runs first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, text: str) -> "Priority":
        """Priority from its case-insensitive name, e.g. "high"."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(member.label for member in cls)
            raise ValueError(f"unknown priority {text!r}; expected one of {names}") from None

    @property
    def label(self) -> str:
        """The metric label value, e.g. "high"."""
        return self.name.lower()


class ExecutorKind(StrEnum):
    """Where a task runs: awaited on the loop, in a thread, or in a worker process."""

    INLINE = "inline"
    THREAD = "thread"
    PROCESS = "process"


class QueueFull(Exception):  # noqa: N818 -- the name other modules map to 429
    """The queue holds queue_limit tasks; retry_after estimates when there will be room."""

    def __init__(self, retry_after: float, limit: int) -> None:
        super().__init__(f"the scheduler queue is full ({limit} tasks); retry in {retry_after:g} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):  # noqa: N818 -- the name other modules map to an error
    """The task did not finish (queueing included) within its deadline."""


class SchedulerStopped(Exception):  # noqa: N818 -- reads as the state it reports
    """The scheduler stopped before the task could finish; submitting after stop() too."""
