"""One reconcile of one NovelEngine, by level (never by event):
spec -> desired children -> apply what differs, delete what must not exist -> read back -> status.

A reconcile that finds everything as desired sends no write at all: children are compared
before they are applied and the status is applied only when it changed.
"""

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from novel_operator import names
from novel_operator.autoscaler import ScalingTarget, has_l2, scales_on_engine_metrics
from novel_operator.builders import (
    ChildRef,
    DesiredState,
    StartupInputs,
    build_redis_secret,
    child_refs,
    desired_state,
)
from novel_operator.builders.common import NO_STARTUP_INPUTS
from novel_operator.builders.workload import workload_kind
from novel_operator.cache_health import CacheMemory, CacheVerdict
from novel_operator.child_index import ChildIndex
from novel_operator.kube.client import (
    ApiError,
    ChildAction,
    ChildResult,
    KubeClient,
    Manifest,
    describe,
    is_controlled_by,
)
from novel_operator.metrics import OperatorMetrics
from novel_operator.model import (
    AutoscalingStatus,
    NovelEngineSpec,
    NovelEngineStatus,
    Owner,
    field_errors,
)
from novel_operator.scaling import (
    Key,
    ScaleDecision,
    ScaleTarget,
    ScalingMemory,
    ScalingVerdict,
    clamp_replicas,
)
from novel_operator.status import (
    FAILED_CREATE,
    Rollout,
    claim_blockers,
    compute_status,
    failed_create_blockers,
    pod_blockers,
    read_rollout,
    replicas_ignored,
    replicas_note,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Children and referenced objects as served, by (kind, name); None: absent.
Live = dict[tuple[str, str], Manifest | None]

#: How soon a NovelEngine stalled by an API refusal (not a missing reference) is tried again:
#: an RBAC fix or an operator upgrade may cure it, and nothing else would wake it up.
REFUSED_RETRY_SECONDS = 60.0
#: How long a rollout may go without finishing before the reconcile looks for what holds it
#: up (pods, volume claims), and how often it looks again while it does not finish: a pod
#: that cannot pull its image changes nothing the operator watches.
BLOCKER_CHECK_SECONDS = 10.0
#: How often a run of failures that goes on with the same message is posted again as a
#: ReconcileFailed Event: half the apiserver's default Event TTL (--event-ttl, 1 h), so that one
#: is always there to be seen while the failures last.
FAILURE_EVENT_REPEAT = timedelta(minutes=30)
#: ScalingActive while the NovelEngine is stalled: the autoscaler leaves it alone until the
#: spec applies (it would scale a workload the spec no longer describes).
STALLED_SCALING = ScalingVerdict(
    "False",
    names.REASON_STALLED,
    "the operator scales nothing while the NovelEngine is stalled (see the Stalled condition); "
    "an HPA keeps scaling within the bounds it has",
)
#: The kinds a NovelEngine may reference. Each reconcile reads the referenced objects; those
#: labelled `novelengine.io/watch: "enabled"` are also watched, so a change reaches it at once.
CONFIG_MAP = "ConfigMap"
SECRET = "Secret"
REFERENCE_KINDS = (CONFIG_MAP, SECRET)


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
    scaling: ScalingTarget | None = None  # for the scrape loop; None: do not scrape it


def references_of(spec: NovelEngineSpec) -> dict[Reference, str | None]:
    """Objects the spec refers to, each with the key it needs (None: the object only)."""
    refs: dict[Reference, str | None] = {}
    if spec.content is not None:
        refs[Reference(CONFIG_MAP, spec.content.config_map_name)] = None
    external = spec.cache.l2.external
    if spec.cache.l2.mode == "external" and external is not None:
        for ref in external.secret_refs:
            refs[Reference(SECRET, ref.name)] = ref.key
    return refs


def credential_secrets(owner: Owner, spec: NovelEngineSpec) -> list[str]:
    """Names of the Secrets the Redis credentials come from: the generated one, or the user's."""
    l2 = spec.cache.l2
    if l2.mode == "managed":
        return [names.redis_secret_name(owner.name)]
    if l2.mode == "external" and l2.external is not None:
        return [ref.name for ref in l2.external.secret_refs]
    return []


def secret_version(secrets: Iterable[Manifest | None]) -> str | None:
    """A short token that changes whenever one of `secrets` (as served; None: absent) is replaced
    or rewritten, None if there are none. It is made of their uids and resourceVersions only,
    never their data, so it tells nothing about a password; and the same Secrets give the same
    token in every reconcile and after an operator restart, so it never rolls pods needlessly."""
    identities = sorted(
        {
            f"{secret['metadata']['uid']}/{secret['metadata']['resourceVersion']}"
            for secret in secrets
            if secret is not None
        }
    )
    if not identities:
        return None
    return hashlib.sha256("\n".join(identities).encode()).hexdigest()[:16]


def content_version(config_map: Manifest | None) -> str | None:
    """A digest of a content ConfigMap's data (None: no ConfigMap). The engine loads its content
    only at start, so the digest goes on its pod template: an edit of the data rolls the pods,
    and a change of anything else (labels, annotations) does not."""
    if config_map is None:
        return None
    data = {key: config_map.get(key) or {} for key in ("data", "binaryData")}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def is_repair(previous: NovelEngineStatus, generation: int) -> bool:
    """Whether a change to a child now undoes drift: this spec was already fully applied."""
    stalled = previous.condition(names.CONDITION_STALLED)
    return (
        previous.observed_generation == generation
        and previous.condition(names.CONDITION_READY) is not None
        and (stalled is None or stalled.status != "True")
    )


def _serves(workload: Manifest | None) -> bool:
    """Whether the engine workload (as served) runs its current template on every replica it
    wants, all ready."""
    return workload is not None and read_rollout(workload).complete


def _result_of(status: NovelEngineStatus, paused: bool) -> Result:
    if paused:
        return Result.PAUSED
    stalled = status.condition(names.CONDITION_STALLED)
    if stalled is not None and stalled.status == "True":
        return Result.STALLED
    ready = status.condition(names.CONDITION_READY)
    return Result.READY if ready is not None and ready.status == "True" else Result.PROGRESSING


@dataclass
class _Written:
    """The children one reconcile has created (as served) and whether it changed any other."""

    created: list[Manifest] = field(default_factory=list)
    updated: bool = False

    def record(self, result: ChildResult) -> None:
        if result.action is ChildAction.CREATED and result.live is not None:
            self.created.append(result.live)
        elif result.action is ChildAction.UPDATED and (result.live or {}).get("kind") != CONFIG_MAP:
            # (the engine reads its settings ConfigMap only at start: changed alone, it
            # changes no running pod)
            self.updated = True


class Reconciler:
    def __init__(
        self,
        kube: KubeClient,
        metrics: OperatorMetrics,
        memory: ScalingMemory,
        cache_memory: CacheMemory,
        *,
        operator_namespace: str,
        children: ChildIndex,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`operator_namespace`: where the operator's own pods run (the engine NetworkPolicy
        lets them in from there). `children`: the children the watches have seen."""
        self._kube = kube
        self._children = children
        self._metrics = metrics
        self._operator_namespace = operator_namespace
        self._memory = memory
        self._cache_memory = cache_memory
        self._clock = clock or (lambda: datetime.now(UTC))
        # For each NovelEngine whose reconciles fail and are retried: the apiserver's message
        # and when it was last posted as an Event.
        self._failing: dict[Key, tuple[str, datetime]] = {}

    def forget(self, key: Key) -> None:
        """Drop what is remembered of a NovelEngine that is gone (its autoscaler's history and
        report, its cache verdict, its failure)."""
        self._memory.forget(key)
        self._cache_memory.forget(key)
        self._failing.pop(key, None)

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        """Reconcile one NovelEngine. An apiserver error the reconcile cannot turn into status
        (a webhook answering 500, throttling) is raised, for the caller to retry; the first one
        of a run of failures, each new message, and the same message every
        FAILURE_EVENT_REPEAT is a ReconcileFailed Warning Event. A conflict is not: it is a race
        with another writer that the next reconcile resolves."""
        key = (namespace, name)
        obj = None
        try:
            obj = await self._kube.get(names.API_VERSION, names.KIND, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return Outcome(Result.GONE)
            outcome = await self._reconcile(obj)
        except ApiError as error:
            if error.not_found:  # deleted meanwhile; its children go with it
                return Outcome(Result.GONE)
            if obj is not None and not error.conflict and self._newsworthy(key, str(error)):
                # (the log has every failure: the work queue logs what it retries)
                self._report_failure(key, obj, error)
            raise
        self._failing.pop(key, None)
        return outcome

    def _newsworthy(self, key: Key, failure: str) -> bool:
        """Whether a failure is to be posted: not if the same one was, less than
        FAILURE_EVENT_REPEAT ago."""
        posted = self._failing.get(key)
        return (
            posted is None
            or posted[0] != failure
            or self._clock() - posted[1] >= FAILURE_EVENT_REPEAT
        )

    def _report_failure(self, key: Key, obj: Manifest, error: ApiError) -> None:
        """A ReconcileFailed Warning Event; if it cannot be recorded (the apiserver may be
        throttling Events too), the next failure tries again."""
        self._failing[key] = failure = (str(error), self._clock())
        message = f"the apiserver answered {error.status}, retrying with backoff: {error}"
        posted = self._kube.record_event(obj, "Warning", "ReconcileFailed", message)

        def forget_unposted(task: asyncio.Task[bool]) -> None:
            if (task.cancelled() or not task.result()) and self._failing.get(key) == failure:
                del self._failing[key]

        posted.add_done_callback(forget_unposted)

    async def _reconcile(self, obj: Manifest) -> Outcome:
        kube = self._kube
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
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

        references: dict[Reference, str | None] = references_of(spec) if spec else {}
        live = await self._read(owner, spec, references) if spec is not None else {}
        for ref, key in references.items():
            problem = _reference_problem(namespace, ref, key, live[ref.kind, ref.name])
            if problem:
                problems.append(problem)

        engine_key = (namespace, name)
        engine_scaled = spec is not None and scales_on_engine_metrics(spec)
        if engine_scaled:  # after an operator restart, the status is all that is known
            scaling_active = previous.condition(names.CONDITION_SCALING_ACTIVE)
            self._memory.seed(engine_key, previous.autoscaling, ScalingVerdict.of(scaling_active))
        else:
            self._memory.forget(engine_key)
        watches_cache = spec is not None and has_l2(spec)
        if watches_cache:
            degraded = previous.condition(names.CONDITION_CACHE_DEGRADED)
            self._cache_memory.seed(engine_key, CacheVerdict.of(degraded))
        else:
            self._cache_memory.forget(engine_key)
        workload: Manifest | None = None
        blocking = _foreign_children(owner, spec, live, self._operator_namespace) if spec else []
        if blocking:  # another's objects: create nothing beside them
            problems.extend(blocking)
            stalled_reason = names.REASON_APPLY_FAILED
            retry_after = REFUSED_RETRY_SECONDS
        if spec is not None:
            if not (paused or problems):
                try:
                    workload = await self._apply(obj, owner, spec, previous, live)
                    if workload is not None and spec.replicas_writer != "spec":
                        workload = await self._keep_within_bounds(obj, engine_key, spec, workload)
                except _RefusedError as refused:
                    problems.append(str(refused))
                    stalled_reason = names.REASON_APPLY_FAILED
                    retry_after = REFUSED_RETRY_SECONDS
            if paused or problems:  # the status still counts the replicas that run
                workload = live[workload_kind(spec), names.engine_name(name)]
                if workload is not None and not is_controlled_by(
                    workload, owner.uid, owner.name, names.FIELD_MANAGER
                ):
                    workload = None  # another's: its replicas are not this one's
        # Paused or stalled, nothing of the spec was applied: what the status says of the
        # children (autoscaling, cache health, ignored replicas) stays as it was.
        applied = spec if not (paused or problems) else None
        autoscaling, scaling_verdict = self._autoscaling_report(
            engine_key, applied, engine_scaled, previous, stalled=bool(problems) and not paused
        )
        blockers: list[str] = []
        rollout: Rollout | None = None
        if workload is not None:
            rollout = read_rollout(workload)
            if not rollout.complete and not (paused or problems):
                if self._rollout_waited(previous):
                    blockers = await self._blockers(namespace, name, workload, rollout)
                retry_after = BLOCKER_CHECK_SECONDS
        managed_redis = live.get(("Deployment", names.redis_name(name)))
        redis_blockers: list[str] = []
        if (
            applied is not None
            and applied.cache.l2.mode == "managed"
            and managed_redis is not None
            and not read_rollout(managed_redis).complete
            and rollout is not None
            and rollout.complete  # (until then Ready speaks of the engine's rollout alone)
        ):
            if self._rollout_waited(previous):
                selector = names.selector_string(names.redis_selector(name))
                redis_blockers = pod_blockers(await kube.list_pods(namespace, selector))
            retry_after = BLOCKER_CHECK_SECONDS
        ignored_replicas = (
            applied.replicas if applied is not None and applied.replicas_writer != "spec" else None
        )

        status = compute_status(
            spec_generation=owner.generation,
            workload=workload,
            problems=problems,
            paused=paused,
            previous=previous,
            now=self._clock(),
            endpoint=(
                None
                if blocking  # nothing of its own serves; never name another's Service
                else names.endpoint(name, namespace, spec.service.port)
                if spec is not None and not (paused or problems)
                else previous.endpoint  # the Service as last applied
            ),
            stalled_reason=stalled_reason,
            autoscaling=autoscaling,
            scaling_active=scaling_verdict,
            spec=spec,
            cache_degraded=(
                self._cache_memory.verdict(engine_key)
                if applied is not None
                else CacheVerdict.of(previous.condition(names.CONDITION_CACHE_DEGRADED))
            ),
            blockers=blockers,
            ignored_spec_replicas=ignored_replicas,
            managed_redis=managed_redis,
            redis_blockers=redis_blockers,
        )
        if await kube.apply_status(obj, status.to_k8s()):
            self._report_stall(obj, previous, status)
            self._report_ignored_replicas(obj, previous, ignored_replicas, rollout)
        scaling = (
            ScalingTarget(obj, spec, workload_kind(spec))
            if spec is not None
            and (engine_scaled or watches_cache)
            and workload is not None
            and not (paused or problems)
            else None
        )
        return Outcome(_result_of(status, paused), frozenset(references), retry_after, scaling)

    def _autoscaling_report(
        self,
        key: Key,
        spec: NovelEngineSpec | None,
        engine_scaled: bool,
        previous: NovelEngineStatus,
        *,
        stalled: bool,
    ) -> tuple[AutoscalingStatus | None, ScalingVerdict | None]:
        """status.autoscaling and ScalingActive: the autoscaler's report with engine targets,
        nothing without (turning autoscaling off clears them), as they were for a spec not
        applied (`spec` None: paused, stalled, or one the operator cannot read); while stalled,
        nothing is scaled, and ScalingActive says so."""
        if spec is None:
            before = previous.condition(names.CONDITION_SCALING_ACTIVE)
            if stalled and (engine_scaled or before is not None):
                return previous.autoscaling, STALLED_SCALING
            return previous.autoscaling, ScalingVerdict.of(before)
        if not engine_scaled:
            return None, None
        return self._memory.report(key), self._memory.verdict(key)

    def _rollout_waited(self, previous: NovelEngineStatus) -> bool:
        """Whether the rollout has gone unfinished (Ready False, Progressing or past its
        deadline) for BLOCKER_CHECK_SECONDS or more, by the previous status."""
        ready = previous.condition(names.CONDITION_READY)
        return (
            ready is not None
            and ready.status == "False"
            and ready.reason in (names.REASON_PROGRESSING, names.REASON_PROGRESS_DEADLINE_EXCEEDED)
            and self._clock() - ready.last_transition_time
            >= timedelta(seconds=BLOCKER_CHECK_SECONDS)
        )

    async def _blockers(
        self, namespace: str, name: str, workload: Manifest, rollout: Rollout
    ) -> list[str]:
        """What holds up the engine rollout: its pods that cannot be placed or started, and
        (StatefulSet) its volume claims that do not bind, with the volume controller's word,
        and while it has fewer pods than it wants, its controller's latest failure to create
        one (a Deployment's is in its ReplicaFailure condition)."""
        selector = names.selector_string(names.engine_selector(name))
        kube = self._kube
        pods = await kube.list_pods(namespace, selector)
        found = pod_blockers(pods)
        if rollout.kind == "StatefulSet":
            claims = await kube.list_objects(
                "v1", "PersistentVolumeClaim", namespace, label_selector=selector
            )
            unbound = [
                claim["metadata"]["name"]
                for claim in claims
                if (claim.get("status") or {}).get("phase") != "Bound"
            ]
            events = await asyncio.gather(
                *(
                    kube.list_objects(
                        "v1",
                        "Event",
                        namespace,
                        field_selector="involvedObject.kind=PersistentVolumeClaim,"
                        f"involvedObject.name={claim}",
                    )
                    for claim in unbound
                )
            )
            found = claim_blockers(claims, [e for listed in events for e in listed]) + found
            if rollout.replicas < rollout.desired:  # only a missing pod makes a failure news
                meta = workload["metadata"]
                failures = await kube.list_objects(
                    "v1",
                    "Event",
                    namespace,
                    # The uid leaves out the Events of an earlier StatefulSet of that name.
                    field_selector=f"involvedObject.kind=StatefulSet,"
                    f"involvedObject.name={meta['name']},involvedObject.uid={meta['uid']},"
                    f"reason={FAILED_CREATE}",
                )
                found = failed_create_blockers(failures, pods) + found
        return found

    async def _read(
        self, owner: Owner, spec: NovelEngineSpec, references: Iterable[Reference]
    ) -> Live:
        """Every child the spec wants, every child it does not want that a watch has seen (the
        others are absent: one created meanwhile is reported, and reconciled, when its event
        comes) and every referenced object, read concurrently."""
        unwanted = set(self._desired(owner, spec).absent)
        children = [
            ref
            for ref in child_refs(owner.name)
            if ref not in unwanted or (ref.kind, owner.namespace, ref.name) in self._children
        ]
        referenced = [ChildRef("v1", ref.kind, ref.name) for ref in references]
        unique = list(dict.fromkeys([*children, *referenced]))
        found = await self._kube.get_all(
            [(ref.api_version, ref.kind, owner.namespace, ref.name) for ref in unique]
        )
        live: Live = {(ref.kind, ref.name): None for ref in unwanted}
        live.update({(ref.kind, ref.name): obj for ref, obj in zip(unique, found, strict=True)})
        return live

    def _desired(
        self,
        owner: Owner,
        spec: NovelEngineSpec,
        floor: int | None = None,
        startup_inputs: StartupInputs = NO_STARTUP_INPUTS,
    ) -> DesiredState:
        return desired_state(
            owner,
            spec,
            engine_replicas_owned_elsewhere=spec.replicas_writer != "spec",
            operator_namespace=self._operator_namespace,
            hpa_min_replicas=floor,
            startup_inputs=startup_inputs,
        )

    async def _apply(
        self,
        obj: Manifest,
        owner: Owner,
        spec: NovelEngineSpec,
        previous: NovelEngineStatus,
        live: Live,
    ) -> Manifest | None:
        """Bring every child to the desired state; the engine workload as served afterwards.

        A name found taken midway (another NovelEngine created the object since this reconcile
        read it) undoes what this reconcile created, so that, as when the name was taken
        before, nothing of this NovelEngine stands beside, or points at, the other's objects.
        Its settings ConfigMap stays (the operator deletes no ConfigMap; alone it does nothing)
        and goes with the NovelEngine. Missing children are created before existing ones
        change (the settings ConfigMap aside); nothing is undone once this pass has changed a
        workload, Service or other child that existed before (its pods may already read what
        was created)."""
        written = _Written()
        try:
            return await self._apply_children(obj, owner, spec, previous, live, written)
        except _NameTakenError as taken:
            if not written.updated:
                await self._undo(obj, owner, written.created, live, str(taken))
            raise

    async def _undo(
        self, obj: Manifest, owner: Owner, created: list[Manifest], live: Live, why: str
    ) -> None:
        """Delete the children in `created` (as served) but the ConfigMap, each with a
        `Deleted` Event; one the apiserver will not delete is logged and left."""
        for child in reversed(created):
            if child["kind"] == CONFIG_MAP:
                continue
            try:
                deleted = await self._kube.delete_owned(child, owner.uid, owner.name)
            except ApiError as error:
                log.warning(
                    "could not delete %s: %s", describe(child), error, extra={"k8s_ref": _ref(obj)}
                )
                continue
            if deleted:
                live[_key(child)] = None
                self._event(obj, "Deleted", f"Deleted {describe(child)}: {why}")

    async def _apply_children(
        self,
        obj: Manifest,
        owner: Owner,
        spec: NovelEngineSpec,
        previous: NovelEngineStatus,
        live: Live,
        written: _Written,
    ) -> Manifest | None:
        """`_apply`, recording in `written` each child it creates or changes.

        The managed Redis password Secret comes first: the pods that read the credentials carry
        the version of their Secrets, so a replaced Secret rolls them."""
        kube = self._kube
        repair = is_repair(previous, owner.generation)
        secret = build_redis_secret(owner, spec)
        if secret is not None:
            name = secret["metadata"]["name"]
            ensured = await _refusable(
                kube.ensure_password_secret(secret, names.REDIS_PASSWORD_KEY, live[SECRET, name])
            )
            self._child_event(obj, ensured.action, secret, ensured.detail, repair)
            live[SECRET, name] = ensured.live
            written.record(ensured)
        report = self._memory.report((owner.namespace, owner.name))
        floor = report.floor if report is not None else None
        floor_moved = report is not None and floor != (
            previous.autoscaling.floor if previous.autoscaling else None
        )
        desired = self._desired(
            owner,
            spec,
            floor,
            StartupInputs(
                redis_credentials=secret_version(
                    live[SECRET, secret_name] for secret_name in credential_secrets(owner, spec)
                ),
                content=content_version(
                    live[CONFIG_MAP, spec.content.config_map_name] if spec.content else None
                ),
            ),
        )
        workload = (workload_kind(spec), names.engine_name(owner.name))
        engine_workloads = {(kind, workload[1]) for kind in ("Deployment", "StatefulSet")}
        live_workload: Manifest | None = None
        # Missing children first (in order among themselves): a name another NovelEngine took
        # meanwhile is met before a running workload changes to point at it. The settings
        # ConfigMap stays ahead of the workloads that a pod started from reads.
        missing_first = sorted(
            desired.apply,
            key=lambda child: child["kind"] != CONFIG_MAP and live[_key(child)] is not None,
        )
        for manifest in missing_first:
            key = _key(manifest)
            result = await _refusable(kube.sync_child(manifest, live[key]))
            if result.action is ChildAction.FOREIGN and result.live is not None:
                raise _NameTakenError(_taken_message(manifest, result.live))
            written.record(result)
            if not (floor_moved and manifest["kind"] == "HorizontalPodAutoscaler"):
                # (a new floor in the HPA was announced by the autoscaler's Scaled Event)
                self._child_event(obj, result.action, manifest, result.detail, repair)
            live[key] = result.live  # as applied: the status reads the managed Redis from here
            if key == workload:
                live_workload = result.live
        if live_workload is not None and spec.replicas_writer != "spec":
            live_workload = await self._take_over_replicas(obj, owner, spec, live_workload, live)
        for ref in desired.absent:
            if (ref.kind, ref.name) in engine_workloads and not _serves(live_workload):
                # The engine changes kind (L3 persistence): the old workload keeps serving
                # until the new one does; a change of its status reconciles again.
                continue
            if await _refusable(kube.delete_owned(live[ref.kind, ref.name], owner.uid, owner.name)):
                live[ref.kind, ref.name] = None
                message = f"Deleted {ref.kind}/{ref.name}: no longer wanted"
                self._event(obj, "Deleted", message)
        return live_workload

    async def _take_over_replicas(
        self, obj: Manifest, owner: Owner, spec: NovelEngineSpec, workload: Manifest, live: Live
    ) -> Manifest:
        """Under autoscaling, a new engine workload of the other kind (L3 persistence changed)
        takes the replicas of the one it replaces, once, while it is as created (generation
        1): starting at the API default of 1, it would leave the engine short when the old one
        goes. The workload as now asked for."""
        name = workload["metadata"]["name"]
        other = "StatefulSet" if workload["kind"] == "Deployment" else "Deployment"
        predecessor = live.get((other, name))
        if (
            predecessor is None
            or not is_controlled_by(predecessor, owner.uid, owner.name, names.FIELD_MANAGER)
            or workload["metadata"].get("generation", 1) != 1
        ):
            return workload
        wanted = min(int(predecessor["spec"].get("replicas", 1)), spec.autoscaling.max_replicas)
        current = int(workload["spec"].get("replicas", 1))
        if current >= wanted:
            return workload
        scaled = await self._scale(workload, wanted)
        message = (
            f"Scaled {describe(workload)} from {current} to {wanted} replicas: "
            f"those of {describe(predecessor)}, which it replaces"
        )
        self._event(obj, "Scaled", message)
        if spec.replicas_writer == "operator":  # a change the scaler's rate policies count
            now = self._clock().timestamp()
            history = self._memory.history((owner.namespace, owner.name), floor=False)
            history.record_change(now, current, wanted)
        return scaled

    async def _scale(self, workload: Manifest, replicas: int) -> Manifest:
        """Set the workload's replicas through its scale subresource; the workload as now
        asked for."""
        scale = await _refusable(self._kube.scale(workload, replicas))
        return {**workload, "spec": {**workload["spec"], **scale["spec"]}}

    async def _keep_within_bounds(
        self, obj: Manifest, key: Key, spec: NovelEngineSpec, workload: Manifest
    ) -> Manifest:
        """Under autoscaling, bring the replicas within [minReplicas, maxReplicas] through the
        workload's scale subresource at once (`clamp_replicas` says when): a new workload starts
        at the API default of 1, and an HPA never scales one at 0. A count within the bounds is
        the autoscaler's business. The workload as now asked for; with engine targets the
        change goes into the operator's autoscaler memory (its history, and status.autoscaling)."""
        current = int(workload["spec"].get("replicas", 1))
        decision = clamp_replicas(current, spec)
        if decision is not None:
            workload = await self._scale(workload, decision.target)
            self._metrics.scale_decisions.labels(ScaleTarget.REPLICAS, decision.reason).inc()
            self._event(obj, "Scaled", f"Scaled {describe(workload)} {decision.describe()}")
        if spec.replicas_writer == "operator":
            self._remember_bound(key, current, decision)
        return workload

    def _remember_bound(self, key: Key, current: int, decision: ScaleDecision | None) -> None:
        """The operator's autoscaler learns of a bound it applied: its history and report."""
        report = self._memory.report(key) or AutoscalingStatus(recommended_replicas=current)
        if decision is not None:
            now = self._clock()
            history = self._memory.history(key, floor=False)
            history.record_change(now.timestamp(), current, decision.target)
            report = report.model_copy(
                update={
                    "recommended_replicas": decision.target,
                    "last_scale_time": now.replace(microsecond=0),  # Kubernetes: whole seconds
                    "last_scale_reason": decision.explain(),
                }
            )
        self._memory.update(key, report, None)

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

    def _report_ignored_replicas(
        self,
        obj: Manifest,
        previous: NovelEngineStatus,
        spec_replicas: int | None,
        rollout: Rollout | None,
    ) -> None:
        """A Normal Event when a spec change leaves spec.replicas ignored (`kubectl scale` with
        autoscaling on): once per new value of spec.replicas (not when only the autoscaler's
        count or the autoscaling settings change), never for a NovelEngine's first status."""
        generation = obj["metadata"].get("generation")
        note = replicas_note(spec_replicas, rollout)
        if note is None or spec_replicas is None:
            return
        if previous.observed_generation in (None, generation):
            return
        before = previous.condition(names.CONDITION_READY)
        if before is None or replicas_ignored(spec_replicas) not in before.message:
            self._event(obj, "ReplicasIgnored", note)

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


class _NameTakenError(_RefusedError):
    """A child's name is held by an object that belongs to someone else."""


async def _refusable(call: Awaitable[T]) -> T:
    try:
        return await call
    except ApiError as error:
        if error.needs_a_human:
            raise _RefusedError(str(error)) from error
        raise


def _foreign_children(
    owner: Owner, spec: NovelEngineSpec, live: Live, operator_namespace: str
) -> list[str]:
    """The objects that hold names this spec's children need and belong to someone else
    (another NovelEngine's Redis named like this one's engine, an object made by hand): while
    any exists, nothing is created, so no child ends up beside, or pointing at, another's."""
    wanted = desired_state(
        owner,
        spec,
        engine_replicas_owned_elsewhere=spec.replicas_writer != "spec",
        operator_namespace=operator_namespace,
    ).apply
    secret = build_redis_secret(owner, spec)
    found = []
    for child in [*wanted, *([secret] if secret is not None else [])]:
        existing = live.get((child["kind"], child["metadata"]["name"]))
        if existing is None or is_controlled_by(
            existing, owner.uid, owner.name, names.FIELD_MANAGER
        ):
            continue
        found.append(_taken_message(child, existing))
    return found


def _key(child: Manifest) -> tuple[str, str]:
    """The (kind, name) a child is found under in `Live`."""
    return child["kind"], child["metadata"]["name"]


def _taken_message(child: Manifest, existing: Manifest) -> str:
    """Says that `existing` (as served), another's, holds the name of `child`, and whose it is."""
    holder = next(
        (
            f"{ref['kind']}/{ref['name']}"
            for ref in existing["metadata"].get("ownerReferences") or []
            if ref.get("controller")
        ),
        None,
    )
    return f"{describe(child)} already exists and belongs to " + (
        holder if holder is not None else "someone else (no controller)"
    )


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
