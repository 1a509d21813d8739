"""Which of the operator's children exist, as the watches of their kinds last reported them:
a reconcile need not ask the apiserver about children its spec does not want and no watch has
seen (one created meanwhile is reported, and its owner reconciled, when its event comes)."""

from collections.abc import Mapping
from typing import Any

#: A child: (kind, namespace, name).
ChildKey = tuple[str, str, str]


class ChildIndex:
    """The operator's children that exist, as the watches of their kinds last reported them.
    The watches select the operator's label server-side, so a child stripped of it by hand
    drops out (the watch reports it deleted)."""

    def __init__(self) -> None:
        self._children: set[ChildKey] = set()

    def seen(self, child: Mapping[str, Any], *, deleted: bool) -> None:
        meta = child.get("metadata") or {}
        key = (str(child.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
        if deleted:
            self._children.discard(key)
        else:
            self._children.add(key)

    def __contains__(self, key: ChildKey) -> bool:
        return key in self._children
