"""A priority queue with aging: FIFO per priority, waiting raises a task's priority."""

from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Generic, Protocol, TypeVar

from novel_engine.scheduler.types import Priority


class Queued(Protocol):
    @property
    def priority(self) -> Priority: ...
    @property
    def enqueued(self) -> float: ...


Q = TypeVar("Q", bound=Queued)


class AgingQueue(Generic[Q]):
    """pop() returns the item whose aged priority is best, the longest-waiting on a tie.

    An item's aged priority is its priority raised one level per aging_seconds waited (never
    above CRITICAL), so low-priority work cannot starve. Each priority is a FIFO, so only the
    heads compete: push, pop and len are O(1); remove_if() is O(n), for items that leave the
    queue early (deadline, cancellation).
    """

    def __init__(self, aging_seconds: float) -> None:
        if aging_seconds <= 0:
            raise ValueError("aging_seconds must be positive")
        self._aging_seconds = aging_seconds
        self._fifos: tuple[deque[Q], ...] = tuple(deque() for _ in Priority)
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Q]:
        """Every queued item, priority by priority."""
        return chain.from_iterable(self._fifos)

    def push(self, item: Q) -> None:
        self._fifos[item.priority].append(item)
        self._length += 1

    def pop(self, now: float) -> Q | None:
        """The next item to run at time `now` (same clock as the items' enqueued), or None."""
        best: deque[Q] | None = None
        best_rank = 0
        best_enqueued = 0.0
        for priority, fifo in enumerate(self._fifos):
            if not fifo:
                continue
            enqueued = fifo[0].enqueued
            rank = max(0, priority - int((now - enqueued) / self._aging_seconds))
            if best is None or rank < best_rank or (rank == best_rank and enqueued < best_enqueued):
                best, best_rank, best_enqueued = fifo, rank, enqueued
        if best is None:
            return None
        self._length -= 1
        return best.popleft()

    def remove_if(self, predicate: Callable[[Q], bool]) -> list[Q]:
        """Take out and return every item the predicate selects (O(n))."""
        removed: list[Q] = []
        for fifo in self._fifos:
            kept: list[Q] = []
            for item in fifo:
                (removed if predicate(item) else kept).append(item)
            if len(kept) != len(fifo):
                fifo.clear()
                fifo.extend(kept)
        self._length -= len(removed)
        return removed

    def drain(self) -> list[Q]:
        """Remove and return every item, in priority order."""
        items = [item for fifo in self._fifos for item in fifo]
        for fifo in self._fifos:
            fifo.clear()
        self._length = 0
        return items
