"""One reconcile of one NovelEngine, by level (never by event):
spec -> desired children -> apply what differs, delete what must not exist -> read back -> status.

A reconcile that finds everything as desired sends no write at all: children are compared
before they are applied and the status is applied only when it changed.
"""

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from novel_operator import names
from novel_operator.builders import DesiredState, desired_state
from novel_operator.builders.common import manifest as child_manifest
from novel_operator.kube.client import ApiError, ChildAction, KubeClient, Manifest, describe
from novel_operator.model import NovelEngineSpec, NovelEngineStatus, Owner, field_errors
from novel_operator.status import compute_status

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Children and referenced objects as served, by (kind, name); None: absent.
Live = dict[tuple[str, str], Manifest | None]

#: How soon a NovelEngine stalled by an API refusal (not a missing reference) is tried again:
#: an RBAC fix or an operator upgrade may cure it, and nothing else would wake it up.
REFUSED_RETRY_SECONDS = 60.0
#: The kinds a NovelEngine may reference, watched so that it recovers when they appear.
CONFIG_MAP = "ConfigMap"
SECRET = "Secret"


class Result(StrEnum):
    """How a reconcile ended (the label of the reconcile counter)."""

    READY = "ready"
    PROGRESSING = "progressing"
    STALLED = "stalled"
    PAUSED = "paused"
    GONE = "gone"


@dataclass(frozen=True)
class Reference:
    """An object a NovelEngine needs but does not own (a ConfigMap or Secret), same namespace."""

    kind: str
    name: str


@dataclass(frozen=True)
class Outcome:
    result: Result
    references: frozenset[Reference] = field(default_factory=frozenset)
    retry_after: float | None = None


def references_of(spec: NovelEngineSpec) -> dict[Reference, str | None]:
    """Objects the spec refers to, each with the key it needs (None: the object only)."""
    refs: dict[Reference, str | None] = {}
    if spec.content is not None:
        refs[Reference(CONFIG_MAP, spec.content.config_map_name)] = None
    external = spec.cache.l2.external
    if spec.cache.l2.mode == "external" and external is not None:
        for ref in (external.url_secret_ref, external.password_secret_ref):
            if ref is not None:
                refs[Reference(SECRET, ref.name)] = ref.key
    return refs


def is_repair(previous: NovelEngineStatus, generation: int) -> bool:
    """Whether a change to a child now undoes drift: this spec was already fully applied."""
    stalled = previous.condition(names.CONDITION_STALLED)
    return (
        previous.observed_generation == generation
        and previous.condition(names.CONDITION_READY) is not None
        and (stalled is None or stalled.status != "True")
    )


def _result_of(status: NovelEngineStatus, paused: bool) -> Result:
    if paused:
        return Result.PAUSED
    stalled = status.condition(names.CONDITION_STALLED)
    if stalled is not None and stalled.status == "True":
        return Result.STALLED
    ready = status.condition(names.CONDITION_READY)
    return Result.READY if ready is not None and ready.status == "True" else Result.PROGRESSING


class Reconciler:
    def __init__(self, kube: KubeClient, clock: Callable[[], datetime] | None = None) -> None:
        self._kube = kube
        self._clock = clock or (lambda: datetime.now(UTC))

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        try:
            return await self._reconcile(namespace, name)
        except ApiError as error:
            if error.not_found:  # deleted meanwhile; its children go with it
                return Outcome(Result.GONE)
            raise

    async def _reconcile(self, namespace: str, name: str) -> Outcome:
        kube = self._kube
        obj = await kube.get(names.API_VERSION, names.KIND, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return Outcome(Result.GONE)
        meta = obj["metadata"]
        owner = Owner.from_metadata(meta)
        previous = NovelEngineStatus.model_validate(obj.get("status") or {})
        paused = (meta.get("annotations") or {}).get(names.PAUSED_ANNOTATION) == "true"
        problems: list[str] = []
        stalled_reason = names.REASON_INVALID_REFERENCE
        retry_after = None
        try:
            spec: NovelEngineSpec | None = NovelEngineSpec.model_validate(obj.get("spec") or {})
        except ValidationError as error:
            spec = None
            stalled_reason = names.REASON_INVALID_SPEC
            problems.extend(str(problem) for problem in field_errors(error))

        desired = (
            desired_state(
                owner,
                spec,
                engine_replicas_owned_elsewhere=spec.replicas_writer != "spec",
                hpa_min_replicas=previous.autoscaling.floor if previous.autoscaling else None,
            )
            if spec is not None
            else None
        )
        references: dict[Reference, str | None] = references_of(spec) if spec else {}
        live = await self._read(namespace, desired, references)
        for ref, key in references.items():
            problem = _reference_problem(namespace, ref, key, live[ref.kind, ref.name])
            if problem:
                problems.append(problem)

        workload: Manifest | None = None
        if desired is not None:
            if paused or problems:
                workload = _engine_workload(desired, live)
            else:
                repair = is_repair(previous, owner.generation)
                try:
                    workload = await self._apply(obj, desired, live, repair)
                except _RefusedError as refused:
                    problems.append(str(refused))
                    stalled_reason = names.REASON_APPLY_FAILED
                    retry_after = REFUSED_RETRY_SECONDS

        status = compute_status(
            spec_generation=owner.generation,
            workload=workload,
            problems=problems,
            paused=paused,
            previous=previous,
            now=self._clock(),
            endpoint=(
                names.endpoint(name, namespace, spec.service.port)
                if spec
                else previous.endpoint or ""
            ),
            stalled_reason=stalled_reason,
        )
        if await kube.apply_status(obj, status.to_k8s()):
            self._report_stall(obj, previous, status)
        return Outcome(_result_of(status, paused), frozenset(references), retry_after)

    async def _read(
        self, namespace: str, desired: DesiredState | None, references: Iterable[Reference]
    ) -> Live:
        """Every child (wanted or not) and every referenced object, read concurrently."""
        wanted: list[tuple[str, str, str]] = [("v1", ref.kind, ref.name) for ref in references]
        if desired is not None:
            wanted += [(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in desired.apply]
            wanted += [(ref.api_version, ref.kind, ref.name) for ref in desired.absent]
            if desired.redis_secret is not None:
                wanted.append(("v1", SECRET, desired.redis_secret))
        unique = list(dict.fromkeys(wanted))
        found = await self._kube.get_all([(v, kind, namespace, name) for v, kind, name in unique])
        return {(kind, name): obj for (_, kind, name), obj in zip(unique, found, strict=True)}

    async def _apply(
        self, obj: Manifest, desired: DesiredState, live: Live, repair: bool
    ) -> Manifest | None:
        """Bring every child to the desired state; the engine workload as served afterwards."""
        kube = self._kube
        meta = obj["metadata"]
        engine = _engine_workload_manifest(desired)
        live_workload: Manifest | None = None
        if desired.redis_secret is not None:
            secret = child_manifest(
                "v1",
                SECRET,
                Owner.from_metadata(meta),
                desired.redis_secret,
                app=names.REDIS_APP,
                component=names.COMPONENT_CACHE,
            )
            existing = live[SECRET, desired.redis_secret]
            created = kube.ensure_password_secret(secret, names.REDIS_PASSWORD_KEY, existing)
            if await _refusable(created):
                self._child_event(obj, ChildAction.CREATED, secret, "", repair)
        for manifest in desired.apply:
            current = live[manifest["kind"], manifest["metadata"]["name"]]
            result = await _refusable(kube.sync_child(manifest, current))
            if result.action is ChildAction.FOREIGN:
                raise _RefusedError(result.detail)
            self._child_event(obj, result.action, manifest, result.detail, repair)
            if manifest is engine:
                live_workload = result.live
        for ref in desired.absent:
            if await _refusable(kube.delete_owned(live[ref.kind, ref.name], meta["uid"])):
                message = f"Deleted {ref.kind}/{ref.name}: no longer wanted"
                self._event(obj, "Deleted", message)
        return live_workload

    def _child_event(
        self, obj: Manifest, action: ChildAction, child: Manifest, detail: str, repair: bool
    ) -> None:
        """Created / Updated, or Repaired when the spec had been applied already (drift)."""
        if action is ChildAction.CREATED:
            verb = "Recreated" if repair else "Created"
            self._event(obj, "Repaired" if repair else "Created", f"{verb} {describe(child)}")
        elif action is ChildAction.UPDATED:
            verb = "Repaired" if repair else "Updated"
            self._event(obj, verb, f"{verb} {describe(child)}: {detail}")

    def _event(self, obj: Manifest, reason: str, message: str) -> None:
        log.info(message, extra={"k8s_ref": _ref(obj), "reason": reason})
        self._kube.record_event(obj, "Normal", reason, message)

    def _report_stall(
        self, obj: Manifest, previous: NovelEngineStatus, status: NovelEngineStatus
    ) -> None:
        """A Warning Event when the Stalled condition turns true or its message changes."""
        now = status.condition(names.CONDITION_STALLED)
        before = previous.condition(names.CONDITION_STALLED)
        if now is None or now.status != "True":
            return
        if before is not None and before.status == "True" and before.message == now.message:
            return
        log.warning("Stalled: %s", now.message, extra={"k8s_ref": _ref(obj), "reason": now.reason})
        self._kube.record_event(obj, "Warning", now.reason, now.message)


class _RefusedError(Exception):
    """The apiserver refused a child (or it belongs to someone else): a human must act."""


async def _refusable(call: Awaitable[T]) -> T:
    try:
        return await call
    except ApiError as error:
        if error.needs_a_human:
            raise _RefusedError(str(error)) from error
        raise


def _engine_workload_manifest(desired: DesiredState) -> Manifest | None:
    for manifest in desired.apply:
        if manifest["kind"] in ("Deployment", "StatefulSet") and (
            manifest["metadata"]["labels"].get(names.LABEL_NAME) == names.ENGINE_APP
        ):
            return manifest
    return None


def _engine_workload(desired: DesiredState, live: Live) -> Manifest | None:
    """The engine Deployment/StatefulSet as served, if it exists."""
    manifest = _engine_workload_manifest(desired)
    return None if manifest is None else live[manifest["kind"], manifest["metadata"]["name"]]


def _reference_problem(
    namespace: str, ref: Reference, key: str | None, found: Manifest | None
) -> str:
    if found is None:
        return f'{ref.kind} "{ref.name}" not found in namespace "{namespace}"'
    if key is not None and key not in (found.get("data") or {}):
        return f'{ref.kind} "{ref.name}" has no key "{key}"'
    return ""


def _ref(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj["metadata"]
    return {"kind": obj["kind"], "namespace": meta["namespace"], "name": meta["name"]}
