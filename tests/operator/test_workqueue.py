"""The reconcile work queue: one waiting entry per key, one worker per key, retries.

With one worker the queue is FIFO, so handling a last "end" key proves that everything added
before it has been handled: no test waits on the clock for something not to happen.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from novel_operator.workqueue import WorkQueue


@asynccontextmanager
async def running(queue: WorkQueue[str]) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Recorder:
    """A handler that records the keys it handled, in order."""

    def __init__(self, behaviour: Callable[[str, int], Awaitable[float | None]] | None = None):
        self.handled: list[str] = []
        self._seen: asyncio.Queue[str] = asyncio.Queue()
        self._behaviour = behaviour

    async def __call__(self, key: str) -> float | None:
        self.handled.append(key)
        self._seen.put_nowait(key)
        if self._behaviour is None:
            return None
        return await self._behaviour(key, self.handled.count(key))

    async def until(self, key: str) -> None:
        async with asyncio.timeout(5):
            while await self._seen.get() != key:
                pass


async def test_a_key_added_many_times_while_waiting_is_handled_once() -> None:
    recorder = Recorder()
    queue = WorkQueue(recorder, workers=1)
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    async with running(queue):
        queue.add("end")
        await recorder.until("end")
    assert recorder.handled == ["a", "b", "end"]


async def test_a_key_added_during_handling_runs_again_after_never_alongside() -> None:
    release = asyncio.Event()
    active: set[str] = set()
    overlapped = False

    async def slow_first_run(key: str, run: int) -> None:
        nonlocal overlapped
        overlapped = overlapped or key in active
        active.add(key)
        if key == "a" and run == 1:
            await release.wait()
        active.discard(key)
        return None

    recorder = Recorder(slow_first_run)
    queue = WorkQueue(recorder, workers=4)
    queue.add("a")
    async with running(queue):
        await recorder.until("a")
        queue.add("a")
        queue.add("a")
        release.set()
        await recorder.until("a")
        queue.add("end")
        await recorder.until("end")
    assert recorder.handled.count("a") == 2
    assert not overlapped


async def test_a_failing_key_is_retried_until_it_succeeds() -> None:
    async def fail_twice(key: str, run: int) -> None:
        if key == "a" and run < 3:
            raise RuntimeError("apiserver unavailable")
        return None

    recorder = Recorder(fail_twice)
    queue = WorkQueue(recorder, workers=1, backoff_base=0.01)
    queue.add("a")
    async with running(queue):
        for _ in range(3):
            await recorder.until("a")
        queue.add("end")
        await recorder.until("end")
    assert recorder.handled == ["a", "a", "a", "end"]


async def test_an_expected_failure_is_a_warning_and_any_other_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    passed: set[str] = set()
    both_passed = asyncio.Event()

    async def fail_once(key: str, run: int) -> None:
        if run == 1:
            raise (ConnectionRefusedError if key == "a" else KeyError)(f"{key} failed")
        passed.add(key)
        if passed == {"a", "b"}:
            both_passed.set()
        return None

    recorder = Recorder(fail_once)
    queue = WorkQueue(recorder, workers=1, backoff_base=0.01, expected=(OSError,))
    queue.add("a")
    queue.add("b")
    with caplog.at_level(logging.WARNING, logger="novel_operator.workqueue"):
        async with running(queue):
            await asyncio.wait_for(both_passed.wait(), 5)
    expected, unexpected = caplog.records
    assert (expected.levelno, expected.exc_info) == (logging.WARNING, None)
    assert expected.getMessage() == (
        "a failed (attempt 1), retry in 0.0s: ConnectionRefusedError: a failed"
    )
    assert unexpected.levelno == logging.ERROR
    assert unexpected.exc_info is not None
    assert unexpected.exc_info[0] is KeyError


async def test_a_handler_can_ask_to_see_its_key_again_later() -> None:
    async def again_once(key: str, run: int) -> float | None:
        return 0.01 if key == "a" and run == 1 else None

    recorder = Recorder(again_once)
    queue = WorkQueue(recorder, workers=1)
    queue.add("a")
    async with running(queue):
        await recorder.until("a")
        await recorder.until("a")
        queue.add("end")
        await recorder.until("end")
    assert recorder.handled == ["a", "a", "end"]


async def test_forgetting_a_key_cancels_its_retry() -> None:
    async def fail_a(key: str, run: int) -> None:
        if key == "a":
            raise RuntimeError("boom")
        return None

    recorder = Recorder(fail_a)
    queue = WorkQueue(recorder, workers=1, backoff_base=0.05)
    queue.add("a")
    async with running(queue):
        await recorder.until("a")
        queue.forget("a")
        # "end" comes after the retry would have: a retried "a" would be handled before it.
        queue.add_after("end", 0.2)
        await recorder.until("end")
    assert recorder.handled == ["a", "end"]


async def test_prompt_keys_go_before_the_others_and_a_waiting_key_can_move_up() -> None:
    recorder = Recorder()
    queue = WorkQueue(recorder, workers=1)
    for key in ("new-1", "new-2", "new-3"):
        queue.add(key)
    queue.add("running-1", prompt=True)
    queue.add("new-3", prompt=True)  # waiting already: moves up, still once
    queue.add("running-2", prompt=True)
    queue.add("running-1")  # waiting already, prompt: stays where it is
    assert len(queue) == 5
    async with running(queue):
        queue.add("end")
        await recorder.until("end")
    assert recorder.handled == ["running-1", "new-3", "running-2", "new-1", "new-2", "end"]


async def test_a_prompt_key_added_during_its_handling_runs_again_before_the_others() -> None:
    release = asyncio.Event()

    async def slow_first_run(key: str, run: int) -> None:
        if key == "a" and run == 1:
            await release.wait()
        return None

    recorder = Recorder(slow_first_run)
    queue = WorkQueue(recorder, workers=1)
    queue.add("a")
    async with running(queue):
        await recorder.until("a")
        queue.add("b")
        queue.add("a", prompt=True)
        release.set()
        await recorder.until("b")
    assert recorder.handled == ["a", "a", "b"]
