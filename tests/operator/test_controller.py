"""Which NovelEngine a watch event concerns, and what gets reconciled because of it."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from novel_operator import names
from novel_operator.child_index import ChildIndex
from novel_operator.controller import Controller, owner_of
from novel_operator.kube.client import ApiError
from novel_operator.metrics import OperatorMetrics
from novel_operator.reconcile import Outcome, Reference, Result


def child(namespace: str = "ns", **metadata: Any) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": "x", "namespace": namespace, **metadata}}


def novelengine(name: str, generation: int = 1, **metadata: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": generation}
    return {"kind": names.KIND, "metadata": {**meta, **metadata}}


def owner_ref(kind: str = names.KIND, api_version: str = names.API_VERSION) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": "tale", "controller": True}


def test_owner_comes_from_the_controller_reference() -> None:
    assert owner_of(child(ownerReferences=[owner_ref()])) == "tale"


def test_owner_falls_back_to_the_instance_label_when_references_were_stripped() -> None:
    assert owner_of(child(labels={names.LABEL_INSTANCE: "saga"})) == "saga"


def test_other_controllers_are_not_owners() -> None:
    foreign = child(ownerReferences=[owner_ref(kind="ReplicaSet", api_version="apps/v1")])
    assert owner_of(foreign) is None


class RecordingReconciler:
    """Stands in for the reconcile (the subject here is the routing): records the keys."""

    def __init__(self, references: dict[tuple[str, str], frozenset[Reference]]) -> None:
        self.references = references
        self.seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.gone: set[tuple[str, str]] = set()  # what the apiserver no longer has
        self.forgotten: list[tuple[str, str]] = []

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        self.seen.put_nowait((namespace, name))
        if (namespace, name) in self.gone:
            return Outcome(Result.GONE)
        refs = self.references.get((namespace, name), frozenset())
        return Outcome(Result.READY, refs)

    def forget(self, key: tuple[str, str]) -> None:
        self.forgotten.append(key)

    async def next(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.seen.get(), 5)


@asynccontextmanager
async def running(
    reconciler: RecordingReconciler, metrics: OperatorMetrics
) -> AsyncIterator[Controller]:
    """A controller with one worker and no resync, running on `reconciler`."""
    controller = Controller(
        reconciler.reconcile,
        metrics,
        workers=1,
        resync_seconds=3600,
        children=ChildIndex(),
        forget=reconciler.forget,
    )
    task = asyncio.create_task(controller.run())
    try:
        yield controller
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_reach_the_novelengine_they_concern() -> None:
    content = Reference("ConfigMap", "stories")
    reconciler = RecordingReconciler({("ns", "tale"): frozenset({content})})
    metrics = OperatorMetrics(CollectorRegistry())
    async with running(reconciler, metrics) as controller:
        controller.novelengine_seen(novelengine("tale"), deleted=False)
        controller.novelengine_seen(novelengine("saga"), deleted=False)
        assert {await reconciler.next(), await reconciler.next()} == {
            ("ns", "tale"),
            ("ns", "saga"),
        }

        controller.child_seen(child(ownerReferences=[owner_ref()]), deleted=False)
        assert await reconciler.next() == ("ns", "tale")

        controller.referenced_object_seen("ConfigMap", "ns", "stories")
        controller.referenced_object_seen("ConfigMap", "other", "stories")  # another namespace
        controller.referenced_object_seen("Secret", "ns", "stories")  # another kind
        controller.child_seen(
            child(namespace="other", ownerReferences=[owner_ref()]), deleted=False
        )
        controller.novelengine_seen(novelengine("saga", generation=2), deleted=False)
        assert await reconciler.next() == ("ns", "tale")
        assert await reconciler.next() == ("ns", "saga")  # nothing else came between

        controller.novelengine_seen(novelengine("tale"), deleted=True)
        controller.child_seen(child(ownerReferences=[owner_ref()]), deleted=False)
        controller.referenced_object_seen("ConfigMap", "ns", "stories")
        controller.novelengine_seen(novelengine("saga", generation=3), deleted=False)
        assert await reconciler.next() == ("ns", "saga")  # the deleted one is not reconciled
        assert metrics.registry.get_sample_value("novel_operator_novelengines") == 1


async def test_a_novelengine_gone_without_its_deleted_event_is_forgotten_all_the_same() -> None:
    # A watch that resumes by listing again reports what exists, never what went meanwhile.
    reconciler = RecordingReconciler({})
    metrics = OperatorMetrics(CollectorRegistry())
    async with running(reconciler, metrics) as controller:
        controller.novelengine_seen(novelengine("tale"), deleted=False)
        controller.novelengine_seen(novelengine("saga"), deleted=False)
        await reconciler.next()
        await reconciler.next()
        reconciler.gone.add(("ns", "tale"))
        controller.child_seen(child(ownerReferences=[owner_ref()]), deleted=False)
        assert await reconciler.next() == ("ns", "tale")  # and the apiserver says it is gone
        controller.novelengine_seen(novelengine("saga", generation=2), deleted=False)
        assert await reconciler.next() == ("ns", "saga")

        assert reconciler.forgotten == [("ns", "tale")]
        assert metrics.registry.get_sample_value("novel_operator_novelengines") == 1
        controller.child_seen(child(ownerReferences=[owner_ref()]), deleted=False)
        controller.novelengine_seen(novelengine("saga", generation=3), deleted=False)
        assert await reconciler.next() == ("ns", "saga")  # the gone one is not reconciled


async def test_a_deleted_novelengine_is_forgotten() -> None:
    reconciler = RecordingReconciler({})
    async with running(reconciler, OperatorMetrics(CollectorRegistry())) as controller:
        controller.novelengine_seen(novelengine("tale"), deleted=False)
        await reconciler.next()
        controller.novelengine_seen(novelengine("tale"), deleted=True)
        assert reconciler.forgotten == [("ns", "tale")]


async def test_a_novelengine_event_that_changes_only_its_status_starts_no_reconcile() -> None:
    reconciler = RecordingReconciler({})
    async with running(reconciler, OperatorMetrics(CollectorRegistry())) as controller:
        controller.novelengine_seen(novelengine("tale"), deleted=False)
        assert await reconciler.next() == ("ns", "tale")

        ready = {**novelengine("tale", resourceVersion="2"), "status": {"replicas": 1}}
        controller.novelengine_seen(ready, deleted=False)  # the operator's own status write
        paused = novelengine("tale", annotations={names.PAUSED_ANNOTATION: "true"})
        controller.novelengine_seen(paused, deleted=False)
        assert await reconciler.next() == ("ns", "tale")
        controller.novelengine_seen(novelengine("tale", generation=2), deleted=False)
        assert await reconciler.next() == ("ns", "tale")  # the status write came in between
        assert reconciler.seen.empty()


def hpa(resource_version: str, current: int, written: str, **labels: str) -> dict[str, Any]:
    """The engine HPA as its watch reports it: applied by the operator, its status written by
    the HPA controller at `written`."""
    managed_fields = [
        {"manager": "novel-engine-operator", "operation": "Apply", "time": "2026-01-01T00:00:00Z"},
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "subresource": "status",
            "time": written,
        },
    ]
    meta = {
        "resourceVersion": resource_version,
        "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY, **labels},
        "managedFields": managed_fields,
        "ownerReferences": [owner_ref()],
    }
    return {
        **child(**meta),
        "kind": "HorizontalPodAutoscaler",
        "spec": {"minReplicas": 1, "maxReplicas": 4},
        "status": {"currentReplicas": current, "desiredReplicas": current},
    }


async def test_a_status_write_to_a_child_starts_a_reconcile_only_if_the_reconcile_reads_it() -> (
    None
):
    """The HPA controller rewrites an HPA's status every time its metrics move; the reconcile
    reads only the status of workloads."""
    reconciler = RecordingReconciler({})
    async with running(reconciler, OperatorMetrics(CollectorRegistry())) as controller:
        controller.novelengine_seen(novelengine("tale"), deleted=False)
        controller.novelengine_seen(novelengine("saga"), deleted=False)
        assert {await reconciler.next(), await reconciler.next()} == {
            ("ns", "tale"),
            ("ns", "saga"),
        }

        controller.child_seen(hpa("2", 1, "2026-01-01T00:00:01Z"), deleted=False)
        assert await reconciler.next() == ("ns", "tale")  # first seen
        controller.child_seen(hpa("3", 2, "2026-01-01T00:00:16Z"), deleted=False)
        controller.novelengine_seen(novelengine("saga", generation=2), deleted=False)
        assert await reconciler.next() == ("ns", "saga")  # the HPA's status write started none

        edited = hpa("4", 2, "2026-01-01T00:00:16Z", team="story")  # a label added by hand
        controller.child_seen(edited, deleted=False)
        assert await reconciler.next() == ("ns", "tale")
        controller.child_seen(edited, deleted=True)
        assert await reconciler.next() == ("ns", "tale")

        rolling = child(ownerReferences=[owner_ref()], resourceVersion="5")
        controller.child_seen({**rolling, "status": {"readyReplicas": 1}}, deleted=False)
        assert await reconciler.next() == ("ns", "tale")
        controller.child_seen({**rolling, "status": {"readyReplicas": 2}}, deleted=False)
        assert await reconciler.next() == ("ns", "tale")  # a Deployment's status decides Ready


def test_the_child_index_holds_what_the_watches_reported_and_not_what_they_deleted() -> None:
    index = ChildIndex()
    index.seen(child(), deleted=False)
    index.seen(child(namespace="other"), deleted=False)
    index.seen(child(namespace="other"), deleted=True)
    assert ("Deployment", "ns", "x") in index
    assert ("Deployment", "other", "x") not in index
    assert ("Service", "ns", "x") not in index


class DecidingAutoscaler:
    """Stands in for the autoscaler (the subject is the queue order): hands out its
    `on_change` so the test can report a decision."""

    def __init__(self) -> None:
        self.on_change: asyncio.Future[Callable[[tuple[str, str]], None]] = (
            asyncio.get_running_loop().create_future()
        )

    async def run(self, on_change: Callable[[tuple[str, str]], None]) -> None:
        self.on_change.set_result(on_change)
        await asyncio.Event().wait()

    def set_target(self, key: tuple[str, str], target: object) -> None:
        pass

    def forget(self, key: tuple[str, str]) -> None:
        pass

    def healthy(self) -> bool:
        return True


async def test_an_autoscaler_decision_is_reconciled_before_a_burst_of_new_novelengines() -> None:
    # In HPA mode the reconcile that follows a decision is what writes the new floor.
    gate = asyncio.Event()

    class GatedReconciler(RecordingReconciler):
        async def reconcile(self, namespace: str, name: str) -> Outcome:
            await gate.wait()
            return await super().reconcile(namespace, name)

    reconciler = GatedReconciler({})
    autoscaler = DecidingAutoscaler()
    controller = Controller(
        reconciler.reconcile,
        OperatorMetrics(CollectorRegistry()),
        workers=1,
        resync_seconds=3600,
        children=ChildIndex(),
        autoscaler=autoscaler,  # type: ignore[arg-type]  # its run, and nothing it scrapes
    )
    task = asyncio.create_task(controller.run())
    try:
        controller.novelengine_seen(novelengine("scaled"), deleted=False)
        gate.set()
        assert await reconciler.next() == ("ns", "scaled")
        gate.clear()
        for index in range(5):  # created while the one worker is busy with the first
            controller.novelengine_seen(novelengine(f"new-{index}"), deleted=False)
        (await autoscaler.on_change)(("ns", "scaled"))
        gate.set()
        order = [await reconciler.next() for _ in range(6)]
        # (the worker may have taken the first new one already)
        assert order.index(("ns", "scaled")) < order.index(("ns", "new-1"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_reconcile_is_logged_naming_the_novelengine_as_kopf_lines_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: asyncio.Queue[int] = asyncio.Queue()

    async def refused(namespace: str, name: str) -> Outcome:
        attempts.put_nowait(1)
        raise ApiError(500, "etcdserver: request timed out")

    controller = Controller(
        refused,
        OperatorMetrics(CollectorRegistry()),
        workers=1,
        resync_seconds=3600,
        children=ChildIndex(),
        forget=lambda key: None,
    )
    task = asyncio.create_task(controller.run())
    try:
        with caplog.at_level(logging.WARNING, logger="novel_operator.workqueue"):
            controller.novelengine_seen(novelengine("tale"), deleted=False)
            await asyncio.wait_for(attempts.get(), 5)
            await asyncio.sleep(0)  # the worker logs right after the handler raised
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    [record] = caplog.records
    assert record.getMessage().startswith("ns/tale failed (attempt 1), retry in 0.5s: ApiError")
    # (what kopf's JSON formatter turns into the line's `object` field)
    assert record.k8s_ref == {"kind": names.KIND, "namespace": "ns", "name": "tale"}
