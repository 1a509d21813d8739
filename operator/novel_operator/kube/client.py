"""The only module that talks to the Kubernetes API for reconciles.

The kubernetes client is synchronous: every call runs on this client's own thread pool, never
on the event loop. Writes compare first and go out only when they would change something;
each write is counted in the operator's metrics.
"""

import asyncio
import functools
import json
import logging
import secrets
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError
from kubernetes.dynamic.resource import Resource

from novel_operator import names
from novel_operator.kube.compare import (
    JsonPatchOp,
    apply_needed,
    identity,
    renumbered_port_repairs,
    replicas_handover,
    replicas_handover_needed,
)
from novel_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

Manifest = dict[str, Any]

#: (connect, read) seconds for every request: a silent apiserver must not hang a reconcile.
REQUEST_TIMEOUT = (10.0, 30.0)
#: Deleting a child: dependents of a Deployment (ReplicaSets, Pods) go in the background.
_DELETE_BODY = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
#: How the apiserver words its 500 for an applied object that does not fit the kind's schema (a
#: string where an object goes, say in a passed-through affinity): a refusal, not an outage
#: (kubernetes/kubernetes#139253).
_UNTYPABLE_APPLY = "failed to create typed patch object"


class ApiError(Exception):
    """The apiserver refused a request; `status` is the HTTP code, str() its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def needs_a_human(self) -> bool:
        """Retrying the same request cannot succeed (invalid object, missing permission...)."""
        return self.status in (400, 403, 404, 405, 415, 422) or (
            self.status == 500 and str(self).startswith(_UNTYPABLE_APPLY)
        )

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """Another writer got there first (an unforced apply); the next attempt re-reads."""
        return self.status == 409


#: What a failed API request raises: the apiserver's answer, or the connection's failure (a
#: refused connection, a timeout: urllib3 wraps the socket's errors).
REQUEST_ERRORS = (ApiError, urllib3.exceptions.HTTPError)


class ChildAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FOREIGN = "foreign"  # an object of that name exists and another owner controls it


@dataclass(frozen=True)
class ChildResult:
    action: ChildAction
    live: Manifest | None
    detail: str = ""


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """UID of the object's controlling owner, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


#: Between our field manager's name and an owner's uid: the manager that creates a child.
_CREATOR_INFIX = "-create-"


def _creator(manager: str, owner_uid: str) -> str:
    """The field manager that creates a child of the owner `owner_uid` (see
    `KubeClient._create`)."""
    return f"{manager}{_CREATOR_INFIX}{owner_uid}"


def is_controlled_by(obj: Mapping[str, Any], owner_uid: str, owner_name: str, manager: str) -> bool:
    """Whether the owner (`owner_uid`, `owner_name`) controls `obj`. An object whose
    ownerReferences were stripped (by hand, or by the garbage collector orphaning it) still
    counts as the owner's if our field manager applied it and its instance label names the
    owner: that manager applies the children of every NovelEngine."""
    uid = controller_uid(obj)
    if uid is not None:
        return uid == owner_uid
    labels = obj.get("metadata", {}).get("labels") or {}
    if labels.get(names.LABEL_INSTANCE) != owner_name:
        return False
    managed = obj.get("metadata", {}).get("managedFields") or []
    ours = {manager, _creator(manager, owner_uid)}
    return any(entry.get("manager") in ours for entry in managed)


def _creators(obj: Mapping[str, Any], manager: str) -> list[str]:
    """The creating field managers (see `KubeClient._create`) still owning fields of `obj`."""
    return sorted(
        {
            str(entry["manager"])
            for entry in obj.get("metadata", {}).get("managedFields") or []
            if str(entry.get("manager", "")).startswith(manager + _CREATOR_INFIX)
        }
    )


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind/name`, as Events and messages name objects."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


def status_message(error: DynamicApiError | k8s.ApiException) -> str:
    """The message of the apiserver's Status in a refusal, else its HTTP status line."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


class _TimedDynamicClient(DynamicClient):
    """A DynamicClient whose every request is bounded by REQUEST_TIMEOUT unless it says its
    own: its discovery requests say none, and a silent apiserver would then hold the discovery
    lock, and every reconcile behind it, for good."""

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params.setdefault("_request_timeout", REQUEST_TIMEOUT)
        return super().request(method, path, body, **params)


class KubeClient:
    """Async facade over the kubernetes DynamicClient, for one field manager."""

    def __init__(
        self,
        configuration: k8s.Configuration,
        metrics: OperatorMetrics,
        *,
        field_manager: str,
        threads: int,
    ) -> None:
        self._configuration = configuration
        self._metrics = metrics
        self._field_manager = field_manager
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="kube")
        self._discovery_cache: tempfile.TemporaryDirectory[str] | None = None
        self._dynamic: DynamicClient | None = None
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovery_lock = asyncio.Lock()
        self._event_tasks: set[asyncio.Task[bool]] = set()
        self._reporting_instance = socket.gethostname()

    async def close(self) -> None:
        """Let pending Events go out (briefly), then release threads and the discovery cache."""
        if self._event_tasks:
            await asyncio.wait(set(self._event_tasks), timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._discovery_cache is not None:
            await asyncio.to_thread(self._discovery_cache.cleanup)

    # ------------------------------------------------------------------ plumbing

    async def _call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Manifest:
        """Run a DynamicClient call on the pool; its JSON body, decoded (not wrapped in
        ResourceInstance, whose recursive wrapping costs more CPU than the request)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(
            fn, *args, serialize=False, _request_timeout=REQUEST_TIMEOUT, **kwargs
        )
        try:
            response = await loop.run_in_executor(self._executor, call)
        except DynamicApiError as error:
            raise ApiError(error.status, status_message(error)) from error
        decoded: Manifest = json.loads(response.data)
        return decoded

    def _resource_sync(self, api_version: str, kind: str) -> Resource:
        if self._dynamic is None:
            # A private discovery cache: the shared default in /tmp may be stale or
            # written concurrently by other clients of the same apiserver.
            self._discovery_cache = tempfile.TemporaryDirectory(prefix="novel-operator-")
            cache = str(Path(self._discovery_cache.name) / "discovery.json")
            self._dynamic = _TimedDynamicClient(  # type: ignore[no-untyped-call]
                k8s.ApiClient(self._configuration), cache_file=cache
            )
        resource: Resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
        return resource

    async def _resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            async with self._discovery_lock:  # one discovery at a time, each kind once
                if key not in self._resources:
                    loop = asyncio.get_running_loop()
                    call = functools.partial(self._resource_sync, api_version, kind)
                    self._resources[key] = await loop.run_in_executor(self._executor, call)
        return self._resources[key]

    def _count_write(self, verb: str, resource: Resource, subresource: str = "") -> None:
        name = f"{resource.name}/{subresource}" if subresource else str(resource.name)
        self._metrics.api_writes.labels(verb, name).inc()

    # ------------------------------------------------------------------ reads

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        """The object as served, or None if it does not exist."""
        resource = await self._resource(api_version, kind)
        try:
            return await self._call(resource.get, name=name, namespace=namespace)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def get_all(self, refs: Sequence[tuple[str, str, str, str]]) -> list[Manifest | None]:
        """`get` for each (api_version, kind, namespace, name), concurrently."""
        return list(await asyncio.gather(*(self.get(*ref) for ref in refs)))

    async def list_pods(self, namespace: str, selector: str) -> list[Manifest]:
        """The pods matching the label `selector` (filtered by the apiserver) in `namespace`."""
        return await self.list_objects("v1", "Pod", namespace, label_selector=selector)

    async def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Manifest]:
        """The objects of `kind` in `namespace` matching both selectors (filtered by the
        apiserver; an empty selector matches all)."""
        resource = await self._resource(api_version, kind)
        found = await self._call(
            resource.get,
            namespace=namespace,
            label_selector=label_selector or None,
            field_selector=field_selector or None,
        )
        return list(found.get("items") or [])

    # ------------------------------------------------------------------ writes

    async def apply(
        self,
        manifest: Mapping[str, Any],
        *,
        subresource: str = "",
        field_manager: str | None = None,
        force: bool = True,
    ) -> Manifest:
        """Server-side apply `manifest` as `field_manager` (default: ours), taking over
        conflicting fields when `force`d."""
        resource = await self._resource(manifest["apiVersion"], manifest["kind"])
        target = resource.subresources[subresource] if subresource else resource
        self._count_write("apply", resource, subresource)
        return await self._call(
            target.server_side_apply,
            body=dict(manifest),
            name=manifest["metadata"]["name"],
            namespace=manifest["metadata"]["namespace"],
            field_manager=field_manager or self._field_manager,
            force_conflicts=force,
        )

    async def sync_child(self, desired: Mapping[str, Any], live: Manifest | None) -> ChildResult:
        """Make the child match `desired` with one apply (a missing child: see `_create`; ports
        renumbered by hand are first put back by a JSON patch, see `renumbered_port_repairs`);
        none if `live` (the child as served, None if absent) already does. When `desired`
        stops setting replicas we applied, a second manager first takes them over at their
        live value, so that the apply keeps them rather than resetting them to 1. An object of
        that name controlled by someone else is left alone (FOREIGN), also one created since
        `live` was read."""
        if live is None:
            created, live = await self._create(desired)
            if created:
                return ChildResult(ChildAction.CREATED, live)
        owner_name = desired["metadata"]["labels"][names.LABEL_INSTANCE]
        if not is_controlled_by(
            live, str(controller_uid(desired)), owner_name, self._field_manager
        ):
            return ChildResult(ChildAction.FOREIGN, live)
        creators = _creators(live, self._field_manager)
        if creators:  # a create cut short: take every field before its creator lets them go
            applied = await self.apply(desired)
            for creator in creators:
                applied = await self.apply(identity(applied), field_manager=creator)
            return ChildResult(ChildAction.UPDATED, applied, "its creation finished")
        reason = apply_needed(desired, live, self._field_manager)
        if reason is None:
            return ChildResult(ChildAction.UNCHANGED, live)
        if replicas_handover_needed(desired, live, self._field_manager):
            # Unforced: should an autoscaler change the replicas meanwhile, the conflict fails
            # this reconcile and the next one finds the autoscaler owning them.
            await self.apply(
                replicas_handover(live),
                field_manager=names.REPLICAS_HANDOVER_FIELD_MANAGER,
                force=False,
            )
        repairs = renumbered_port_repairs(desired, live)
        if repairs:  # else the apply would add its ports beside them, and be refused
            await self._json_patch(live, repairs)
        return ChildResult(ChildAction.UPDATED, await self.apply(desired), reason)

    async def _json_patch(self, live: Manifest, operations: Sequence[JsonPatchOp]) -> None:
        resource = await self._resource(live["apiVersion"], live["kind"])
        meta = live["metadata"]
        self._count_write("patch", resource)
        await self._call(
            resource.patch,
            body=list(operations),
            name=meta["name"],
            namespace=meta["namespace"],
            content_type="application/json-patch+json",
            field_manager=self._field_manager,
        )

    async def _create(self, desired: Mapping[str, Any]) -> tuple[bool, Manifest]:
        """Create the child `desired` by server-side apply: (True, the child as served), or
        (False, the object as served) if one of its name exists.

        Every child is applied by one field manager, so a plain apply would silently take over
        (and rewrite) a same-named object another NovelEngine created since this one read the
        name as free. The first apply is therefore made, unforced, by a field manager of this
        owner's own, which conflicts with such an object (or is refused: a second controller
        reference). Ownership then passes to the shared manager, as Kubernetes documents for
        a transfer: it applies the same fields, and the creator applies an empty object."""
        creator = _creator(self._field_manager, str(controller_uid(desired)))
        try:
            await self.apply(desired, field_manager=creator, force=False)
        except ApiError as error:
            if error.status in (409, 422):  # taken, unless the object is invalid (422 then)
                meta = desired["metadata"]
                found = await self.get(
                    desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]
                )
                if found is not None:
                    return False, found
            raise
        applied = await self.apply(desired)
        return True, await self.apply(identity(applied), field_manager=creator)

    async def delete_owned(self, live: Manifest | None, owner_uid: str, owner_name: str) -> bool:
        """Delete `live` (as served; None: absent) if the owner (`owner_uid`, `owner_name`)
        controls it; True if it was deleted. The uid precondition keeps a same-named successor
        safe."""
        if live is None or not is_controlled_by(live, owner_uid, owner_name, self._field_manager):
            return False
        resource = await self._resource(live["apiVersion"], live["kind"])
        self._count_write("delete", resource)
        meta = live["metadata"]
        body = {**_DELETE_BODY, "preconditions": {"uid": meta["uid"]}}
        try:
            await self._call(
                resource.delete, name=meta["name"], namespace=meta["namespace"], body=body
            )
        except ApiError as error:
            if not error.not_found:  # already gone is fine
                raise
        return True

    async def ensure_password_secret(
        self, secret: Mapping[str, Any], key: str, live: Manifest | None
    ) -> ChildResult:
        """Create the Secret `secret` (built without data) holding a fresh random password under
        `key` unless it exists (`live`, as served); the password never changes afterwards, unless
        a hand edit took it away (a new one is written: no pod could start without it). Its
        metadata (labels, the ownerReference that has it deleted with its owner) is applied
        again when it lost some. The result carries the Secret as served (None only if it
        vanished after a lost race)."""
        resource = await self._resource("v1", "Secret")
        meta = secret["metadata"]
        if live is not None:
            if (live.get("data") or {}).get(key):
                # `secret` has no data: applying it leaves the password (never applied) alone.
                reason = apply_needed(secret, live, self._field_manager)
                if reason is None:
                    return ChildResult(ChildAction.UNCHANGED, live)
                return ChildResult(ChildAction.UPDATED, await self.apply(secret), reason)
            self._count_write("patch", resource)
            patched = await self._call(
                resource.patch,
                body={"stringData": {key: secrets.token_urlsafe(32)}},
                name=meta["name"],
                namespace=meta["namespace"],
                content_type="application/merge-patch+json",
                field_manager=self._field_manager,
            )
            if apply_needed(secret, patched, self._field_manager) is not None:
                # In the same pass: pods read the Secret's version once, so they roll once.
                patched = await self.apply(secret)
            return ChildResult(ChildAction.UPDATED, patched, f"a new password under {key}")
        body = {**secret, "stringData": {key: secrets.token_urlsafe(32)}}
        self._count_write("create", resource)
        try:
            created = await self._call(
                resource.create,
                body=body,
                namespace=meta["namespace"],
                field_manager=self._field_manager,
            )
        except ApiError as error:
            if not error.conflict:
                raise
            # Created meanwhile (e.g. by an operator that just stopped): that one stands.
            found = await self.get("v1", "Secret", meta["namespace"], meta["name"])
            return ChildResult(ChildAction.UNCHANGED, found)
        return ChildResult(ChildAction.CREATED, created)

    async def scale(self, workload: Mapping[str, Any], replicas: int) -> Manifest:
        """Set the replicas of `workload` (a Deployment or StatefulSet as served) through its
        scale subresource, as `kubectl scale` does; the Scale as served afterwards. No
        resourceVersion precondition: the workload controller rewrites the status all the time,
        and a precondition would make most scales conflict."""
        resource = await self._resource(workload["apiVersion"], workload["kind"])
        meta = workload["metadata"]
        self._count_write("patch", resource, "scale")
        return await self._call(
            resource.subresources["scale"].patch,
            body={"spec": {"replicas": replicas}},
            name=meta["name"],
            namespace=meta["namespace"],
            content_type="application/merge-patch+json",
            field_manager=self._field_manager,
        )

    async def apply_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        """Apply `status` to the status subresource of `obj` (as served) unless it already
        holds; True if it was written."""
        desired = {**identity(obj), "status": dict(status)}
        if apply_needed(desired, obj, self._field_manager) is None:
            return False
        await self.apply(desired, subresource="status")
        return True

    def record_event(
        self, obj: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> asyncio.Task[bool]:
        """Record a Kubernetes Event about `obj` in the background (a reconcile does not wait
        for it). Best effort: failures are only logged; the task's result says whether the
        Event was recorded."""
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._field_manager},
            "reportingComponent": self._field_manager,
            "reportingInstance": self._reporting_instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        task = asyncio.create_task(self._post_event(event))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)
        return task

    async def _post_event(self, event: Manifest) -> bool:
        try:
            resource = await self._resource("v1", "Event")
            await self._call(resource.create, body=event, namespace=event["metadata"]["namespace"])
        except (ApiError, OSError, urllib3.exceptions.HTTPError) as error:
            involved = event["involvedObject"]
            log.warning(
                "could not record event %s on %s/%s: %s",
                event["reason"],
                involved["kind"],
                involved["name"],
                error,
            )
            return False
        self._metrics.events.labels(event["type"]).inc()
        return True
