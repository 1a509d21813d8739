"""The ReconcileFailed Event, against an API stand-in that injects what the real control plane
cannot be made to give on demand: a read failing with a conflict, and an Event the apiserver
does not record. (A webhook answering 500 is the integration test's, on the real control plane:
test_operator_status.py.)"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from novel_operator import names
from novel_operator.cache_health import CacheMemory
from novel_operator.child_index import ChildIndex
from novel_operator.kube.client import ApiError, KubeClient
from novel_operator.metrics import OperatorMetrics
from novel_operator.reconcile import Reconciler
from novel_operator.scaling import ScalingMemory

NOVELENGINE = {
    "apiVersion": names.API_VERSION,
    "kind": names.KIND,
    "metadata": {"name": "tale", "namespace": "ns", "uid": "uid-tale", "generation": 1},
    "spec": {},
}


class FailingApi:
    """Serves the NovelEngine, fails every read of its children with `failure`, and records
    Events only while `recording` (the apiserver may throttle Events too)."""

    def __init__(self) -> None:
        self.failure = ApiError(500, "webhook down")
        self.recording = True
        self.events: list[str] = []  # the messages recorded

    async def get(self, *_: Any) -> dict[str, Any]:
        return NOVELENGINE

    async def get_all(self, *_: Any) -> list[Any]:
        raise self.failure

    def record_event(self, obj: Any, event_type: str, reason: str, message: str) -> Any:
        assert (event_type, reason) == ("Warning", "ReconcileFailed")
        if self.recording:
            self.events.append(message)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        done.set_result(self.recording)
        return done


def reconciler_on(api: FailingApi, clock: Any = None) -> Reconciler:
    return Reconciler(
        cast(KubeClient, api),
        OperatorMetrics(CollectorRegistry()),
        ScalingMemory(),
        CacheMemory(),
        operator_namespace="novel-engine-system",
        children=ChildIndex(),
        clock=clock,
    )


async def fail(reconciler: Reconciler) -> None:
    with pytest.raises(ApiError):
        await reconciler.reconcile("ns", "tale")
    await asyncio.sleep(0)  # the Event's done callback


async def test_a_run_of_failures_is_one_event_until_the_message_changes() -> None:
    api = FailingApi()
    reconciler = reconciler_on(api)
    await fail(reconciler)
    await fail(reconciler)
    assert api.events == ["the apiserver answered 500, retrying with backoff: webhook down"]

    api.failure = ApiError(429, "too many requests")
    await fail(reconciler)
    assert api.events[1:] == [
        "the apiserver answered 429, retrying with backoff: too many requests"
    ]

    api.failure = ApiError(409, "the object has been modified")  # a race the retry resolves
    await fail(reconciler)
    assert len(api.events) == 2


async def test_an_event_the_apiserver_did_not_record_is_posted_at_the_next_failure() -> None:
    api = FailingApi()
    api.recording = False
    reconciler = reconciler_on(api)
    await fail(reconciler)
    assert api.events == []
    api.recording = True
    await fail(reconciler)
    assert api.events == ["the apiserver answered 500, retrying with backoff: webhook down"]


async def test_a_run_of_failures_that_lasts_is_posted_again_before_its_event_expires() -> None:
    # The apiserver deletes an Event an hour after its last write (--event-ttl): a user who
    # looks later must still find why the NovelEngine is not reconciled.
    now = datetime(2026, 1, 1, tzinfo=UTC)
    api = FailingApi()
    reconciler = reconciler_on(api, clock=lambda: now)
    await fail(reconciler)
    now += timedelta(minutes=29)
    await fail(reconciler)
    assert len(api.events) == 1
    now += timedelta(minutes=1)
    await fail(reconciler)
    assert len(api.events) == 2
    now += timedelta(minutes=29)
    await fail(reconciler)
    assert len(api.events) == 2
