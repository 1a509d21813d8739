"""A keyed work queue for level-based reconciles, in the manner of client-go's workqueue.

- A key waits in the queue at most once, however many events name it meanwhile.
- One worker handles a key at a time; a key added while it is handled runs once more after.
- A failed key comes back after an exponential backoff; a success resets its backoff. The
  failure is logged as an error with its traceback, or, for the `expected` kinds of failure
  (a refused or failed API request: its message says what went wrong), as a one-line warning.
- A handler may ask for its key to come back after a delay (e.g. to re-check later).
- A key added `prompt` goes before every key that is not: the status of objects already running
  follows their changes while a burst of new ones waits (a waiting key added again `prompt`
  moves up). Prompt keys come from bounded sources (events about objects already handled), so
  the others wait only while those are being worked off.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

#: What a handler returns: seconds after which to handle the key again, or None.
Handler = Callable[[K], Awaitable[float | None]]


class WorkQueue(Generic[K]):
    def __init__(
        self,
        handler: Handler[K],
        *,
        workers: int,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        on_depth: Callable[[int], None] = lambda depth: None,
        expected: tuple[type[Exception], ...] = (),
        describe: Callable[[K], tuple[str, Mapping[str, Any]]] = lambda key: (str(key), {}),
    ) -> None:
        """``describe``: a key's name in a log line and the ``extra`` of that line."""
        self._handler = handler
        self._expected = expected
        self._describe = describe
        self._workers = workers
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._on_depth = on_depth
        self._prompt: deque[K] = deque()
        self._later: deque[K] = deque()
        self._queued = asyncio.Semaphore(0)  # one release per key in the two deques
        self._waiting: dict[K, bool] = {}  # key -> prompt
        self._active: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: K, *, prompt: bool = False) -> None:
        """Handle `key` soon (once, however often it is added before a worker takes it);
        `prompt`: before the keys that are not."""
        if key in self._waiting:
            if prompt and not self._waiting[key]:
                self._waiting[key] = True
                if key not in self._active:
                    self._later.remove(key)
                    self._prompt.append(key)
            return
        self._waiting[key] = prompt
        if key not in self._active:
            self._enqueue(key)
        self._on_depth(len(self._waiting))

    def _enqueue(self, key: K) -> None:
        (self._prompt if self._waiting[key] else self._later).append(key)
        self._queued.release()

    def add_after(self, key: K, delay: float) -> None:
        """Handle `key` in `delay` seconds (the earliest of several pending delays wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= when:
                return
            pending.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: K) -> None:
        """Drop the backoff and any delayed handling of `key` (its object is gone)."""
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def run(self) -> None:
        """Run the workers until cancelled; pending delayed keys are dropped then."""
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self._workers):
                    group.create_task(self._work(), name=f"reconcile-worker-{index}")
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    async def _work(self) -> None:
        while True:
            await self._queued.acquire()
            key = self._prompt.popleft() if self._prompt else self._later.popleft()
            del self._waiting[key]
            self._active.add(key)
            self._on_depth(len(self._waiting))
            try:
                again = await self._handler(key)
            except Exception as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._backoff_base * 2 ** (failures - 1), self._backoff_max)
                failed = "%s failed (attempt %d), retry in %.1fs"
                name, extra = self._describe(key)
                if isinstance(error, self._expected):
                    log.warning(
                        failed + ": %s: %s",
                        name, failures, delay, type(error).__name__, error,
                        extra=extra,
                    )  # fmt: skip
                else:
                    log.exception(failed, name, failures, delay, extra=extra)
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if again is not None:
                    self.add_after(key, again)
            finally:
                self._active.discard(key)
                if key in self._waiting:
                    self._enqueue(key)
