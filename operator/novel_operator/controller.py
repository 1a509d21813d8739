"""Turns watch events into reconciles: which NovelEngine an event concerns, a keyed work queue,
and one operator-wide periodic resync (instead of per-object timers, which need finalizers).
Each reconcile tells the autoscaler whether to scale its NovelEngine; a deletion stops it.

Only events that can change a reconcile's outcome start one: a NovelEngine event whose
spec, annotations and deletion are as before (the operator's own status write) does not, nor
does a status write to a child whose status the reconcile does not read (`ChildIndex`). Events
about NovelEngines already known (their children, references and edits) are handled before the
first reconcile of new ones and before resyncs, so that a burst of new NovelEngines does not hold
up the status of those whose pods just turned ready. Child events also keep the `ChildIndex` the
reconcile reads.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from novel_operator import names
from novel_operator.autoscaler import Autoscaler
from novel_operator.child_index import ChildIndex
from novel_operator.kube.client import REQUEST_ERRORS
from novel_operator.metrics import OperatorMetrics
from novel_operator.reconcile import Outcome, Reference, Result
from novel_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)

#: A NovelEngine: (namespace, name).
Key = tuple[str, str]
#: The reconcile of one NovelEngine (`Reconciler.reconcile`).
Reconcile = Callable[[str, str], Awaitable[Outcome]]


def _describe(key: Key) -> tuple[str, Mapping[str, Any]]:
    """A NovelEngine as a log line names it: namespace/name, and kopf's `object` field."""
    namespace, name = key
    return f"{namespace}/{name}", {
        "k8s_ref": {"kind": names.KIND, "namespace": namespace, "name": name}
    }


def owner_of(child: Mapping[str, Any]) -> str | None:
    """Name of the NovelEngine a child belongs to: its controller reference, else its instance
    label (a hand edit may have stripped one of the two)."""
    meta = child.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        group = str(ref.get("apiVersion", "")).split("/")[0]
        if ref.get("controller") and ref.get("kind") == names.KIND and group == names.GROUP:
            return str(ref["name"])
    instance = (meta.get("labels") or {}).get(names.LABEL_INSTANCE)
    return str(instance) if instance else None


def reconcile_inputs(novelengine: Mapping[str, Any]) -> int:
    """A digest of what a reconcile reads from a NovelEngine besides its status, which only the
    operator writes: its identity, spec (by generation), annotations (pause) and deletion. (A
    digest: annotations may hold a copy of the whole object, e.g. kubectl's last-applied one.)"""
    meta = novelengine.get("metadata") or {}
    annotations = tuple(sorted((meta.get("annotations") or {}).items()))
    return hash(
        (meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp"), annotations)
    )


class Controller:
    def __init__(
        self,
        reconcile: Reconcile,
        metrics: OperatorMetrics,
        *,
        workers: int,
        resync_seconds: float,
        children: ChildIndex,
        autoscaler: Autoscaler | None = None,
        forget: Callable[[Key], None] | None = None,
    ) -> None:
        """`children`: the index child events keep up to date (the reconcile reads it);
        `forget(key)`: drop what the reconcile remembers of a NovelEngine that is gone."""
        self._reconcile = reconcile
        self._forget = forget
        self._children = children
        self._autoscaler = autoscaler
        self._metrics = metrics
        self._resync_seconds = resync_seconds
        self._queue: WorkQueue[Key] = WorkQueue(
            self._handle,
            workers=workers,
            on_depth=metrics.queue_depth.set,
            expected=REQUEST_ERRORS,
            describe=_describe,
        )
        self._known: dict[Key, int] = {}  # with their reconcile_inputs
        self._references: dict[Key, frozenset[Reference]] = {}
        self._referrers: dict[tuple[str, Reference], set[Key]] = {}
        self._last_resync = time.monotonic()
        self._running = False

    # ------------------------------------------------------------------ events in

    def novelengine_seen(self, novelengine: Mapping[str, Any], *, deleted: bool) -> None:
        meta = novelengine["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        if deleted:
            self._gone(key)
        else:
            inputs = reconcile_inputs(novelengine)
            before = self._known.get(key)
            if before != inputs:
                self._known[key] = inputs
                self._queue.add(key, prompt=before is not None)
        self._metrics.known_resources.set(len(self._known))

    def _gone(self, key: Key) -> None:
        """Forget a NovelEngine that is gone, and all that is remembered of it (a new one of
        the same name starts afresh)."""
        self._known.pop(key, None)
        self._set_references(key, frozenset())
        self._queue.forget(key)
        if self._autoscaler is not None:
            self._autoscaler.forget(key)
        if self._forget is not None:
            self._forget(key)
        self._metrics.known_resources.set(len(self._known))

    def child_seen(self, child: Mapping[str, Any], *, deleted: bool) -> None:
        if not self._children.seen(child, deleted=deleted):
            return
        owner = owner_of(child)
        namespace = (child.get("metadata") or {}).get("namespace")
        if owner and namespace and (namespace, owner) in self._known:
            self._queue.add((namespace, owner), prompt=True)

    def referenced_object_seen(self, kind: str, namespace: str, name: str) -> None:
        """A ConfigMap or Secret changed: reconcile the NovelEngines that refer to it."""
        for key in self._referrers.get((namespace, Reference(kind, name)), ()):
            self._queue.add(key, prompt=True)

    def _scaling_changed(self, key: Key) -> None:
        """The autoscaler decided (a new HPA floor, a condition to write): reconcile `key`
        ahead of creations and resyncs, like any change that needs acting on."""
        self._queue.add(key, prompt=True)

    # ------------------------------------------------------------------ running

    def healthy(self) -> bool:
        """Workers run and the resync and autoscaler loops are not stuck (an overdue tick means
        a wedged loop)."""
        overdue = time.monotonic() - self._last_resync > 2 * self._resync_seconds + 30
        scaling = self._autoscaler is None or self._autoscaler.healthy()
        return self._running and not overdue and scaling

    async def run(self) -> None:
        """Reconcile until cancelled."""
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._queue.run(), name="reconcile-workers")
                group.create_task(self._resync(), name="resync")
                if self._autoscaler is not None:
                    group.create_task(
                        self._autoscaler.run(self._scaling_changed), name="autoscaler"
                    )
        finally:
            self._running = False

    async def _resync(self) -> None:
        while True:
            self._last_resync = time.monotonic()
            await asyncio.sleep(self._resync_seconds)
            for key in sorted(self._known):
                self._queue.add(key)

    async def _handle(self, key: Key) -> float | None:
        started = time.perf_counter()
        inputs = self._known.get(key)
        try:
            outcome = await self._reconcile(*key)
        except Exception:
            self._metrics.reconcile_errors.inc()
            self._metrics.reconciles.labels("error").inc()
            raise
        finally:
            self._metrics.reconcile_duration.observe(time.perf_counter() - started)
        if outcome.result is Result.GONE:
            # Also when its DELETED event never came (a watch that resumed by listing again
            # reports only what exists), unless a new one of the same name was seen meanwhile.
            if self._known.get(key) == inputs:
                self._gone(key)
            return outcome.retry_after
        self._metrics.reconciles.labels(outcome.result.value).inc()
        known = key in self._known
        self._set_references(key, outcome.references if known else frozenset())
        if self._autoscaler is not None:
            self._autoscaler.set_target(key, outcome.scaling if known else None)
        return outcome.retry_after

    def _set_references(self, key: Key, references: frozenset[Reference]) -> None:
        namespace = key[0]
        for ref in self._references.pop(key, frozenset()) - references:
            referrers = self._referrers.get((namespace, ref))
            if referrers is not None:
                referrers.discard(key)
                if not referrers:
                    del self._referrers[(namespace, ref)]
        for ref in references:
            self._referrers.setdefault((namespace, ref), set()).add(key)
        if references:
            self._references[key] = references
