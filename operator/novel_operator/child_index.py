"""Which of the operator's children exist, as the watches of their kinds last reported them:
a reconcile need not ask the apiserver about children its spec does not want and no watch has
seen (one created meanwhile is reported, and its owner reconciled, when its event comes).

It also tells which events can change a reconcile's outcome. The reconcile reads the status of
workloads (rollout progress decides Ready) and of no other child: a change to the status of an
HPA, a PodDisruptionBudget or a Service alone (their controllers write it all the time) starts
no reconcile; any other change to them (a hand edit, a deletion) does."""

import json
from collections.abc import Mapping
from typing import Any

#: A child: (kind, namespace, name).
ChildKey = tuple[str, str, str]

#: Kinds whose status the reconcile reads: every change to them counts.
_STATUS_READ = frozenset({"Deployment", "StatefulSet"})


class ChildIndex:
    """The operator's children that exist, as the watches of their kinds last reported them.
    The watches select the operator's label server-side, so a child stripped of it by hand
    drops out (the watch reports it deleted)."""

    def __init__(self) -> None:
        # With a digest of what a reconcile reads of each (None: the whole object).
        self._children: dict[ChildKey, int | None] = {}

    def seen(self, child: Mapping[str, Any], *, deleted: bool) -> bool:
        """Record a watch event; whether it can change the owner's reconcile."""
        meta = child.get("metadata") or {}
        kind = str(child.get("kind"))
        key = (kind, str(meta.get("namespace")), str(meta.get("name")))
        if deleted:
            self._children.pop(key, None)
            return True
        digest = None if kind in _STATUS_READ else _digest_without_status(child)
        changed = digest is None or self._children.get(key) != digest
        self._children[key] = digest
        return changed

    def __contains__(self, key: ChildKey) -> bool:
        return key in self._children


def _digest_without_status(child: Mapping[str, Any]) -> int:
    """A digest of the child without its status and what a status write changes besides: the
    resourceVersion and the writer's managedFields entry (its time)."""
    meta = dict(child.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [
        entry for entry in meta.get("managedFields") or [] if entry.get("subresource") != "status"
    ]
    rest = {field: value for field, value in child.items() if field not in ("status", "metadata")}
    return hash(json.dumps([meta, rest], sort_keys=True))
