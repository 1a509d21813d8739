"""Does a server-side apply of `desired` change the live object? Pure functions, no I/O.

An apply that would change nothing must not be sent: even a no-op apply is a write request.
Two questions decide it:

1. Does every value in `desired` already hold in `live`? Fields the apiserver defaulted or
   other managers own are extra in `live` and ignored; lists of named items are matched by
   name (a mutating webhook may add items); other lists compare position by position.
2. Does our field manager own any field that `desired` no longer has? Then the apply must be
   sent to remove it (e.g. an env var dropped from the container), which (1) cannot see.

Only our own manager's entries count: the replicas handover manager (see
`replicas_handover_needed`) and every other manager own fields that are not ours to remove.

One change an apply cannot make, a port renumbered by hand, gets a JSON Patch first
(`renumbered_port_repairs`).
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import InvalidOperation
from typing import Any

from kubernetes.utils.quantity import parse_quantity

#: Keys whose values are resource quantities: the apiserver rewrites them into canonical
#: form ("1024Mi" -> "1Gi", "0.5" -> "500m"), so they compare by amount.
_QUANTITY_PARENTS = frozenset({"limits", "requests", "capacity", "hard"})
_QUANTITY_KEYS = frozenset({"sizeLimit", "storage"})

JsonPatchOp = dict[str, Any]


def first_difference(desired: Mapping[str, Any], live: Mapping[str, Any]) -> str | None:
    """The path of the first value in `desired` that `live` does not hold, or None."""
    return _value_difference(desired, live, "", quantity=False)


def unwanted_owned_fields(
    managed_fields: Sequence[Mapping[str, Any]], manager: str, desired: Mapping[str, Any]
) -> list[str]:
    """Paths `manager` owns through server-side apply (managedFields) that `desired` lacks."""
    paths: list[str] = []
    for entry in managed_fields:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            paths.extend(_unwanted(entry.get("fieldsV1") or {}, desired, ""))
    return paths


def replicas_handover_needed(
    desired: Mapping[str, Any], live: Mapping[str, Any], manager: str
) -> bool:
    """Whether `manager` applied `live`'s spec.replicas and `desired` no longer sets them.

    Applying `desired` as is would then remove the field, which the apiserver resets to its
    default (1 for a Deployment or StatefulSet); another manager must share ownership first."""
    if "replicas" in (desired.get("spec") or {}):
        return False
    if (live.get("spec") or {}).get("replicas") is None:
        return False
    managed = live.get("metadata", {}).get("managedFields") or []
    return any(
        entry.get("manager") == manager
        and entry.get("operation") == "Apply"
        and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        for entry in managed
    )


def identity(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An apply body naming `obj` and setting nothing: applied as is, its manager gives up
    every field it owned."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }


def replicas_handover(live: Mapping[str, Any]) -> dict[str, Any]:
    """An apply body that claims only `live`'s spec.replicas, at their current value."""
    return {**identity(live), "spec": {"replicas": live["spec"]["replicas"]}}


def apply_needed(desired: Mapping[str, Any], live: Mapping[str, Any], manager: str) -> str | None:
    """Why applying `desired` would change `live` (a path and a reason), or None if it would not."""
    differs = first_difference(desired, live)
    if differs is not None:
        return f"{differs} differs"
    managed = live.get("metadata", {}).get("managedFields") or []
    unwanted = unwanted_owned_fields(managed, manager, desired)
    if unwanted:
        return f"{unwanted[0]} is no longer wanted"
    return None


def renumbered_port_repairs(
    desired: Mapping[str, Any], live: Mapping[str, Any]
) -> list[JsonPatchOp]:
    """JSON Patch operations that put back the ports of `live` that were renumbered by hand.

    Ports (a Service's, a container's) are keyed by number and protocol, not by name, so an
    apply cannot match a port renumbered by hand with its own: it would add its port beside
    it, under the same name, which the apiserver refuses. (Nor can the port be removed first:
    a Service must have one.) Each replacement is preceded by a test of the entry, so that the
    patch fails rather than overwrite an entry that moved meanwhile."""
    operations: list[JsonPatchOp] = []
    for path, found, wanted in _renumbered_ports(desired, live, ""):
        operations += [
            {"op": "test", "path": path, "value": found},
            {"op": "replace", "path": path, "value": wanted},
        ]
    return operations


def _renumbered_ports(
    desired: Any, live: Any, path: str
) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(path, live entry, desired entry) of each port that `live` has under the name of a
    desired one, with another number or protocol."""
    if isinstance(desired, Mapping) and isinstance(live, Mapping):
        for key, want in desired.items():
            if key not in live:
                continue
            sub = f"{path}/{key.replace('~', '~0').replace('/', '~1')}"  # (a JSON Pointer)
            if key == "ports" and isinstance(want, list) and isinstance(live[key], list):
                wanted = {port["name"]: port for port in want if port.get("name")}
                for index, port in enumerate(live[key]):
                    name = port.get("name")
                    if name in wanted and _port_key(port) != _port_key(wanted[name]):
                        yield f"{sub}/{index}", port, wanted[name]
            else:
                yield from _renumbered_ports(want, live[key], sub)
    elif isinstance(desired, list) and isinstance(live, list):
        # Named items (containers): matched by name, as the apply matches them.
        live_index = {
            item["name"]: index
            for index, item in enumerate(live)
            if isinstance(item, Mapping) and "name" in item
        }
        for item in desired:
            if isinstance(item, Mapping) and item.get("name") in live_index:
                index = live_index[item["name"]]
                yield from _renumbered_ports(item, live[index], f"{path}/{index}")


def _port_key(port: Mapping[str, Any]) -> tuple[Any, str]:
    """A port's list-map key: its number (a Service's `port`, a container's `containerPort`)
    and protocol."""
    return port.get("port", port.get("containerPort")), port.get("protocol", "TCP")


def _is_empty(value: Any) -> bool:
    """Values the apiserver leaves out of the object it serves (Go's `omitempty` on a string, map
    or list). A `false` or 0 is not one of them: the fields the builders set so are pointers
    (e.g. allowPrivilegeEscalation), served as set, so a missing one was removed by hand."""
    return value is None or (not isinstance(value, bool | int | float) and value in ("", {}, []))


def _quantities_equal(a: Any, b: Any) -> bool:
    try:
        return bool(parse_quantity(a) == parse_quantity(b))  # type: ignore[no-untyped-call]
    except (ValueError, InvalidOperation, TypeError):
        return False


def _value_difference(desired: Any, live: Any, path: str, *, quantity: bool) -> str | None:
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return None if live is None and not desired else path or "."
        for key, want in desired.items():
            sub = f"{path}.{key}"
            if key not in live or live[key] is None:
                if not _is_empty(want):
                    return sub
                continue
            is_quantity = path.rsplit(".", 1)[-1] in _QUANTITY_PARENTS or key in _QUANTITY_KEYS
            found = _value_difference(want, live[key], sub, quantity=is_quantity)
            if found is not None:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list):
            return None if live is None and not desired else path
        return _list_difference(desired, live, path)
    if isinstance(desired, bool) or isinstance(live, bool):
        return None if desired is live else path
    if desired == live or (quantity and _quantities_equal(desired, live)):
        return None
    return path


def _list_difference(desired: list[Any], live: list[Any], path: str) -> str | None:
    if desired and all(isinstance(item, Mapping) and "name" in item for item in desired):
        # Named items (containers, env, volumes, ports...) are keyed by name for apply;
        # items other managers added are not ours to judge.
        by_name = {item.get("name"): item for item in live if isinstance(item, Mapping)}
        for item in desired:
            sub = f"{path}[name={item['name']}]"
            if item["name"] not in by_name:
                return sub
            found = _value_difference(item, by_name[item["name"]], sub, quantity=False)
            if found is not None:
                return found
        return None
    if len(desired) != len(live):
        return f"{path}[]"
    for index, (want, have) in enumerate(zip(desired, live, strict=True)):
        found = _value_difference(want, have, f"{path}[{index}]", quantity=False)
        if found is not None:
            return found
    return None


def _unwanted(fields: Mapping[str, Any], desired: Any, path: str) -> Iterator[str]:
    """Walk a fieldsV1 tree (f:field, k:{key}, v:value, i:index) alongside `desired`."""
    for token, children in fields.items():
        kind, _, rest = token.partition(":")
        if kind == "f":
            sub = f"{path}.{rest}"
            if not isinstance(desired, Mapping) or rest not in desired:
                yield sub
            else:
                yield from _unwanted(children or {}, desired[rest], sub)
        elif kind == "k":
            key = json.loads(rest)
            sub = f"{path}[{rest}]"
            item = _find_keyed(desired, key)
            if item is None:
                yield sub
            else:
                yield from _unwanted(children or {}, item, sub)
        elif kind == "v":
            if not isinstance(desired, list) or json.loads(rest) not in desired:
                yield f"{path}[{rest}]"
        elif kind == "i":
            index = int(rest)
            if not isinstance(desired, list) or index >= len(desired):
                yield f"{path}[{index}]"
            else:
                yield from _unwanted(children or {}, desired[index], f"{path}[{index}]")
        # "." marks the item itself as owned: nothing below it to check.


def _find_keyed(desired: Any, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The item of `desired` (a list) that the associative-list key names.

    Key fields the apiserver defaults (e.g. a port's protocol) may be absent from `desired`;
    at least one key field must be present and every present one must match.
    """
    if not isinstance(desired, list):
        return None
    for item in desired:
        if not isinstance(item, Mapping):
            continue
        present = [field for field in key if field in item]
        if present and all(item[field] == key[field] for field in present):
            return item
    return None
