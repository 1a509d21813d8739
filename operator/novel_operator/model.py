"""The NovelEngine resource as pydantic models: shape, defaults, descriptions and cross-field rules.

The CRD is generated from these models (see crd.py), so every field's description is its
`kubectl explain` text and every cross-field rule is written once, in CEL: the apiserver evaluates
it from the CRD and pydantic evaluates the same expression (see cel.py).
"""

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Annotated, Any, ClassVar, Literal, Self

from kubernetes.utils import parse_quantity
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from novel_operator import names
from novel_operator.cel import UNSIGNED_QUANTITY, CelRule

# Kubernetes' own quantity syntax (the one controller-gen emits for resource.Quantity), unsigned.
QUANTITY_PATTERN = f"^{UNSIGNED_QUANTITY}$"
PERCENT_PATTERN = r"^([1-9][0-9]?|100)%$"
# Bounds keep CEL cost estimates finite and match the apiserver's own limits.
MAX_QUANTITY_LENGTH = 64
MAX_NAME_LENGTH = 253  # DNS subdomain (ConfigMap/Secret names)
MAX_IMAGE_LENGTH = 512
MAX_LIST_ITEMS = 64


def _integer_as_text(value: object) -> object:
    # YAML `cpu: 2` arrives as an int; Kubernetes accepts int-or-string quantities.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


_NANOS = Decimal(10**9)
#: The apiserver reads any quantity from this one (2^63 - 1) up as this one: a child given more
#: is stored with less, and would differ from the spec at every reconcile.
QUANTITY_CEILING = "9223372036854775807"


def quantity_value(quantity: str) -> Decimal:
    """The number a Kubernetes quantity stands for (`512Mi` -> 536870912, `250m` -> 0.25)."""
    value: Decimal = parse_quantity(quantity)  # type: ignore[no-untyped-call]
    return value


@dataclass(frozen=True)
class QuantityBound:
    """A bound on a quantity field: at least ``bound``, or else below it; checked by pydantic
    and by the same rule in the CRD's CEL, with the same message."""

    bound: str
    at_least: bool = False

    @property
    def message(self) -> str:
        if self.at_least:
            return f"must be at least {self.bound}"
        return f"must be less than {self.bound}"

    @property
    def cel(self) -> str:
        # Malformed quantities are reported by the schema's pattern; skip them here.
        operator = ">=" if self.at_least else "<"
        return (
            "!isQuantity(string(self))"
            f" || quantity(string(self)).compareTo(quantity('{self.bound}')) {operator} 0"
        )

    def _check(self, value: str) -> str:
        # As the apiserver reads it: finer than a nano, rounded up to one.
        amount = (quantity_value(value) * _NANOS).to_integral_value(ROUND_CEILING) / _NANOS
        bound = quantity_value(self.bound)
        if (amount < bound) if self.at_least else (amount >= bound):
            raise PydanticCustomError("quantity_bound", self.message)
        return value

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        rules = json_schema.setdefault("x-kubernetes-validations", [])
        rules.append({"rule": self.cel, "message": self.message})
        return json_schema


# Floors that refuse what cannot work, not what may be tight: Redis does not run in less (and a
# maxmemory of 0 is no limit to it), a volume smaller than a MiB holds no SQLite database, and
# the engine's in-process cache needs a byte at least.
MIN_REDIS_MEMORY = "16Mi"
MIN_VOLUME = "1Mi"
MIN_L1_BYTES = "1"

Quantity = Annotated[
    str,
    BeforeValidator(_integer_as_text),
    StringConstraints(pattern=QUANTITY_PATTERN, max_length=MAX_QUANTITY_LENGTH),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "maxLength": MAX_QUANTITY_LENGTH,
        }
    ),
    QuantityBound(QUANTITY_CEILING),
]
"""A Kubernetes resource quantity such as `250m`, `512Mi` or `2`."""


def _count_or_percent(value: int | str) -> int | str:
    if isinstance(value, int) and value < 1:
        raise ValueError("a count must be at least 1")
    if isinstance(value, str) and re.fullmatch(PERCENT_PATTERN, value) is None:
        raise ValueError("a percentage must be written 1% to 100%")
    return value


IntOrPercent = Annotated[
    int | str,
    AfterValidator(_count_or_percent),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "minimum": 1,
            "pattern": PERCENT_PATTERN,
            "maxLength": 4,
        }
    ),
]
"""A count of at least 1, or a percentage from `1%` to `100%`."""

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes object passed through unchanged; the apiserver validates it where it is used."""

ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
LabelMap = Annotated[dict[str, str], Field(max_length=MAX_LIST_ITEMS)]


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule over several fields, written once in CEL: the CRD carries it for the apiserver and
    pydantic evaluates the same expression (compiled once, when the model is defined)."""

    cel: str
    message: str
    field_path: str  # relative to the object the rule sits on, e.g. ".minReplicas"; "" = itself
    compiled: CelRule = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", CelRule(self.cel))


@dataclass(frozen=True)
class TransitionRule:
    """A rule on how a stored object may change, in CEL over `self` and `oldSelf`: the CRD
    carries it for the apiserver alone, as only the apiserver sees the object being replaced."""

    cel: str
    message: str
    field_path: str  # as for CrossFieldRule


@dataclass(frozen=True)
class FieldError:
    """One invalid field, in Kubernetes' field-path notation (`spec.cache.l2.external`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _rules_into_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    schema.pop("title", None)
    rules: tuple[CrossFieldRule | TransitionRule, ...] = (
        *getattr(cls, "cross_field_rules", ()),
        *getattr(cls, "transition_rules", ()),
    )
    if rules:
        schema["x-kubernetes-validations"] = [
            {"rule": rule.cel, "message": rule.message}
            | ({"fieldPath": rule.field_path} if rule.field_path else {})
            for rule in rules
        ]


class KubeModel(BaseModel):
    """Base: camelCase field names, unknown fields refused, immutable, cross-field rules checked."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra=_rules_into_schema,
    )
    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()
    transition_rules: ClassVar[tuple[TransitionRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cross_field_rules(self) -> Self:
        if not self.cross_field_rules:
            return self
        obj_json = self.model_dump_json(by_alias=True, exclude_none=True)
        for rule in self.cross_field_rules:
            if not rule.compiled.holds(obj_json):
                raise PydanticCustomError(
                    "cross_field_rule", rule.message, {"field_path": rule.field_path}
                )
        return self

    def to_k8s(self) -> dict[str, Any]:
        """The object as Kubernetes JSON: camelCase, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def nested(model: type[KubeModel], description: str) -> Any:
    """A sub-object that is always present: left out, it takes its fields' defaults (the CRD
    carries the whole defaulted object, since the apiserver checks a default against the rules)."""
    return Field(
        default_factory=model,
        description=description,
        json_schema_extra={"default": model().to_k8s()},
    )


def empty(kind: type[list[Any]] | type[dict[str, Any]], description: str) -> Any:
    """An empty list or map by default, in pydantic and (so the two agree) in the CRD."""
    return Field(
        default_factory=kind, description=description, json_schema_extra={"default": kind()}
    )


def field_errors(error: ValidationError, root: str = "spec") -> list[FieldError]:
    """pydantic's errors as Kubernetes-style field paths, e.g. `spec.pod.tolerations[0].effect`."""
    found = []
    for detail in error.errors():
        path = root
        for part in detail["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        path += detail.get("ctx", {}).get("field_path", "")
        found.append(FieldError(path, detail["msg"]))
    return found


def _cel_quantity_at_most(field: str) -> str:
    # Malformed quantities are reported by the schema's pattern; skip them here.
    low, high = f"string(self.requests.{field})", f"string(self.limits.{field})"
    return (
        f"!has(self.requests.{field}) || !has(self.limits.{field})"
        f" || !isQuantity({low}) || !isQuantity({high})"
        f" || quantity({low}).compareTo(quantity({high})) <= 0"
    )


# --- Spec ---------------------------------------------------------------------------------------


class ResourceAmounts(KubeModel):
    """CPU and memory amounts of a container."""

    cpu: Quantity | None = Field(
        None, description='CPU, e.g. `250m` or `2`; a fraction is a string (`"0.5"`).'
    )
    memory: Quantity | None = Field(None, description="Memory, e.g. `256Mi` or `1Gi`.")


DEFAULT_CPU_REQUEST = "250m"
DEFAULT_MEMORY_REQUEST = "256Mi"
#: The memory limit when `limits.memory` is unset, unless `requests.memory` is larger.
DEFAULT_MEMORY_LIMIT = "512Mi"


class ResourceRequests(ResourceAmounts):
    """What the scheduler reserves for each engine container."""

    cpu: Quantity | None = Field(
        DEFAULT_CPU_REQUEST,
        description='CPU reserved per engine pod, e.g. `250m`; a fraction is a string (`"0.5"`).',
    )
    memory: Quantity | None = Field(
        DEFAULT_MEMORY_REQUEST, description="Memory reserved per engine pod."
    )


class ResourceLimits(ResourceAmounts):
    """Hard caps for each engine container. No CPU limit unless set (throttling hurts latency);
    the memory limit also sizes the engine's in-process cache when `cache.l1.maxBytes` is unset."""

    memory: Quantity | None = Field(
        None,
        description=f"Memory limit per engine pod; unset: the larger of {DEFAULT_MEMORY_LIMIT} "
        "and requests.memory.",
    )


class ResourcesSpec(KubeModel):
    """Compute resources of the engine container; requests must not exceed limits."""

    requests: ResourceRequests = nested(ResourceRequests, "Resources reserved per engine pod.")
    limits: ResourceLimits = nested(ResourceLimits, "Resource limits per engine pod.")

    cross_field_rules = (
        CrossFieldRule(
            _cel_quantity_at_most("cpu"),
            "requests.cpu must not exceed limits.cpu "
            f"(requests.cpu is {DEFAULT_CPU_REQUEST} when not set)",
            ".requests.cpu",
        ),
        CrossFieldRule(
            _cel_quantity_at_most("memory"),
            "requests.memory must not exceed limits.memory "
            f"(requests.memory is {DEFAULT_MEMORY_REQUEST} when not set)",
            ".requests.memory",
        ),
    )

    def for_container(self) -> dict[str, Any]:
        """The container's `resources`, with the memory limit filled in when unset: the larger
        of DEFAULT_MEMORY_LIMIT and the memory request (a request alone is never refused)."""
        resources = self.to_k8s()
        if self.limits.memory is None:
            request = self.requests.memory
            larger = (
                request
                if request is not None
                and quantity_value(request) > quantity_value(DEFAULT_MEMORY_LIMIT)
                else DEFAULT_MEMORY_LIMIT
            )
            resources.setdefault("limits", {})["memory"] = larger
        return resources


class EngineSettings(KubeModel):
    """Settings of the engine process: written into its config file, except the drain timeout,
    which goes on its command line (a change of any of them rolls the pods)."""

    queue_limit: int = Field(
        256, ge=1, le=1_000_000, description="Queued tasks per pod before new work gets 429."
    )
    scheduler_workers: int = Field(
        8, ge=1, le=1024, description="Concurrent inline (async) tasks per pod."
    )
    thread_workers: int = Field(4, ge=1, le=256, description="Threads for blocking tasks per pod.")
    process_workers: int = Field(
        2, ge=1, le=256, description="Worker processes for CPU-heavy simulations per pod."
    )
    task_deadline_seconds: int = Field(
        30, ge=1, le=86_400, description="Seconds a task may take, queueing included."
    )
    db_pool_size: int = Field(
        4,
        ge=1,
        le=64,
        description="Most SQLite connections open at once per pod (opened as needed).",
    )
    db_acquire_timeout_seconds: int = Field(
        5, ge=1, le=600, description="Seconds to wait for a database connection before a 503."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, le=1_073_741_824, description="Largest accepted request body, in bytes."
    )
    drain_timeout_seconds: int = Field(
        20,
        ge=1,
        le=3600,
        description="Seconds a stopping pod finishes in-flight work; the pod's termination grace "
        "period is set above it.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Engine logging threshold."
    )


class ContentSpec(KubeModel):
    """Content library loaded read-only into every pod, on top of the built-in samples."""

    config_map_name: ObjectName = Field(
        description="ConfigMap in the same namespace whose keys are content files (YAML/JSON). "
        "Until it exists the resource is Stalled; it recovers by itself once it appears."
    )


class L1CacheSpec(KubeModel):
    """In-process cache of each pod (LRU with a time to live)."""

    max_entries: int = Field(10_000, ge=1, le=10_000_000, description="Entries kept per pod.")
    max_bytes: Annotated[Quantity, QuantityBound(MIN_L1_BYTES, at_least=True)] | None = Field(
        None,
        description="Byte budget per pod, e.g. `64Mi`; unset: derived from the memory limit.",
    )
    ttl_seconds: int = Field(300, ge=1, le=604_800, description="Lifetime of an entry, seconds.")


class SecretKeyRef(KubeModel):
    """A key of a Secret in the same namespace."""

    name: ObjectName = Field(description="Secret name.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)] = Field(
        description="Key within the Secret."
    )


class ManagedRedisSpec(KubeModel):
    """One password-protected Redis pod run by the operator for this engine, no persistence."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=MAX_IMAGE_LENGTH)] = Field(
        names.DEFAULT_REDIS_IMAGE, description="Redis container image."
    )
    memory: Annotated[Quantity, QuantityBound(MIN_REDIS_MEMORY, at_least=True)] = Field(
        "256Mi",
        description="Memory request and limit of the Redis pod; Redis' maxmemory is set to 80% "
        "of it (the rest is headroom for fragmentation and connections). At least `16Mi`.",
    )
    maxmemory_policy: Literal[
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
        "noeviction",
    ] = Field(
        "volatile-lru",
        description="What Redis evicts when maxmemory is reached. The default evicts only keys "
        "with a TTL: the cache entries, never the async job records (which the engines delete "
        "themselves). With an `allkeys-*` policy job records may be evicted, and a replica "
        "that did not accept a job may then answer 404 for it.",
    )


class ExternalRedisSpec(KubeModel):
    """A Redis the user runs; its URL (and password, if any) come from Secrets."""

    url_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the Redis URL, e.g. `redis://redis.example:6379/0`."
    )
    password_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the Redis password, if the URL carries none."
    )

    @property
    def secret_refs(self) -> list[SecretKeyRef]:
        """The Secret keys the credentials come from: the URL's, then the password's if set."""
        return [ref for ref in (self.url_secret_ref, self.password_secret_ref) if ref is not None]


class L2CacheSpec(KubeModel):
    """Shared Redis tier: with it, any replica answers for any simulation."""

    mode: Literal["none", "managed", "external"] = Field(
        "none",
        description="`none`: no shared tier (results live in the replica that computed them); "
        "`managed`: the operator runs a Redis for this engine; `external`: use your own Redis.",
    )
    ttl_seconds: int = Field(
        86_400, ge=1, le=31_536_000, description="Lifetime of a shared entry, seconds."
    )
    managed: ManagedRedisSpec = nested(ManagedRedisSpec, "Settings for `mode: managed`.")
    external: ExternalRedisSpec | None = Field(
        None, description="Settings for `mode: external` (required there)."
    )

    cross_field_rules = (
        CrossFieldRule(
            "self.mode != 'external' || has(self.external)",
            "external is required when mode is external",
            ".external",
        ),
    )


class L3CacheSpec(KubeModel):
    """On-disk SQLite tier of each pod, in its data directory."""

    enabled: bool = Field(True, description="Keep computed results on disk.")
    max_entries: int = Field(
        100_000, ge=1, le=100_000_000, description="Rows kept per pod before the oldest go."
    )
    persistence: Literal["emptyDir", "pvc"] = Field(
        "emptyDir",
        description="`emptyDir`: the data directory lives as long as the pod (Deployment); "
        "`pvc`: one PersistentVolumeClaim per replica survives restarts (StatefulSet), deleted "
        "with it. A change replaces the workload: the old one serves until every replica of "
        "the new one is ready.",
    )
    size: Annotated[Quantity, QuantityBound(MIN_VOLUME, at_least=True)] = Field(
        "1Gi",
        description="Size of each replica's data volume: the emptyDir's `sizeLimit`, or the "
        "volume claim's storage request (`pvc`, fixed while it stays `pvc`). With `enabled`, "
        "the engine keeps its SQLite database (file, free pages and WAL) within three quarters "
        "of it by evicting the oldest entries. At least `1Mi`.",
    )
    storage_class_name: ObjectName | None = Field(
        None,
        description="StorageClass of the volume claims (`pvc`, fixed while it stays `pvc`); "
        "unset: the default class.",
    )

    cross_field_rules = (
        CrossFieldRule(
            "self.persistence == 'pvc' || !has(self.storageClassName)",
            "storageClassName needs persistence: pvc",
            ".storageClassName",
        ),
        CrossFieldRule(
            "self.enabled || self.persistence == 'emptyDir'",
            "persistence: pvc needs enabled: true",
            ".persistence",
        ),
    )
    # A StatefulSet's volume claim templates cannot change: the apiserver would refuse the
    # workload, and every child after it, until the spec went back.
    transition_rules = (
        TransitionRule(
            "self.persistence != 'pvc' || oldSelf.persistence != 'pvc' || ("
            "(!isQuantity(string(self.size)) || !isQuantity(string(oldSelf.size))"
            " || quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) == 0)"
            " && (has(self.storageClassName) ? has(oldSelf.storageClassName)"
            " && self.storageClassName == oldSelf.storageClassName"
            " : !has(oldSelf.storageClassName)))",
            "size and storageClassName are fixed while persistence stays pvc (volume claims "
            "cannot change); to recreate the claims, empty, switch persistence to emptyDir, wait "
            "until the NovelEngine is Ready, then back to pvc",
            ".size",
        ),
    )

    @property
    def wants_volume_claims(self) -> bool:
        """True when each replica needs its own PVC (the engine then runs as a StatefulSet)."""
        return self.enabled and self.persistence == "pvc"


class CacheSpec(KubeModel):
    """The engine's three cache tiers, read in order L1 -> L2 -> L3 -> compute."""

    l1: L1CacheSpec = nested(L1CacheSpec, "In-process cache of each pod.")
    l2: L2CacheSpec = nested(L2CacheSpec, "Shared Redis tier.")
    l3: L3CacheSpec = nested(L3CacheSpec, "On-disk SQLite tier of each pod.")


class EngineTargets(KubeModel):
    """Targets on the engine's own metrics. Every `syncPeriodSeconds` the operator scrapes the
    ready engine pods' /metrics, averages each metric over them and computes the HPA's
    `ceil(replicas * average / target)` (no change within 10% of the target); the larger of
    the two metrics wins."""

    in_flight_per_pod: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Target HTTP requests in flight per pod (probes and scrapes not counted).",
    )
    queue_depth_per_pod: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Target scheduler queue depth per pod, all priorities together.",
    )


class ScalingPolicy(KubeModel):
    """How much may change within one period (as in an HPA's behavior)."""

    type: Literal["Pods", "Percent"] = Field(description="`Pods` or `Percent`.")
    value: int = Field(ge=1, le=10_000, description="Pods, or percent of current replicas.")
    period_seconds: int = Field(ge=1, le=1800, description="Window the change is counted over.")


class ScalingRules(KubeModel):
    """Scaling behavior in one direction; unset fields take the HPA defaults."""

    stabilization_window_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="Seconds of past recommendations considered: a scale-down goes no lower "
        "than the highest recommendation within the window, a scale-up no higher than the "
        "lowest (HPA defaults: 0 up, 300 down).",
    )
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        None,
        description="`Max` (default): the policy allowing the largest change wins; `Min`: the "
        "smallest; `Disabled`: no change in this direction.",
    )
    policies: Annotated[list[ScalingPolicy], Field(min_length=1, max_length=10)] | None = Field(
        None,
        description="Rate limits on the change, counted over the changes made within each "
        "policy's period (HPA defaults: up, 4 pods or 100% per 15 s; down, 100% per 15 s).",
    )


class ScalingBehavior(KubeModel):
    """Scale-up and scale-down behavior, shared by the HPA (copied into it) and the operator's
    engine-metric scaler (applied to the replicas it sets, or to the floor it gives the HPA)."""

    scale_up: ScalingRules | None = Field(None, description="Rules for scaling up.")
    scale_down: ScalingRules | None = Field(None, description="Rules for scaling down.")


class AutoscalingSpec(KubeModel):
    """Replica autoscaling. With a CPU or memory target an HPA scales the workload (it needs
    metrics-server) and the engine targets' recommendation becomes its minReplicas floor; with
    engine targets only, the operator sets the workload's replicas itself through the scale
    subresource. While enabled, `spec.replicas` is ignored."""

    enabled: bool = Field(False, description="Scale replicas automatically.")
    min_replicas: int = Field(1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(5, ge=1, le=1000, description="Most replicas.")
    target_cpu_utilization_percentage: int | None = Field(
        None,
        ge=1,
        le=1000,
        alias="targetCPUUtilizationPercentage",
        description="Target average CPU use, percent of the request (an HPA is created).",
    )
    target_memory_utilization_percentage: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Target average memory use, percent of the request (an HPA is created).",
    )
    engine: EngineTargets = nested(EngineTargets, "Targets on the engine's own metrics.")
    behavior: ScalingBehavior = nested(ScalingBehavior, "Scale-up and scale-down behavior.")
    sync_period_seconds: int = Field(
        15,
        ge=1,
        le=3600,
        description="How often the operator scrapes the ready engine pods' metrics and "
        "decides (engine targets only).",
    )

    cross_field_rules = (
        CrossFieldRule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must not exceed maxReplicas",
            ".minReplicas",
        ),
        CrossFieldRule(
            "!self.enabled || has(self.targetCPUUtilizationPercentage)"
            " || has(self.targetMemoryUtilizationPercentage)"
            " || (has(self.engine) && (has(self.engine.inFlightPerPod)"
            " || has(self.engine.queueDepthPerPod)))",
            "enabled autoscaling needs a target: targetCPUUtilizationPercentage, "
            "targetMemoryUtilizationPercentage, engine.inFlightPerPod or engine.queueDepthPerPod",
            ".enabled",
        ),
    )

    @property
    def uses_hpa(self) -> bool:
        """True when an HPA owns the workload's replicas (a CPU or memory target is set)."""
        return self.enabled and (
            self.target_cpu_utilization_percentage is not None
            or self.target_memory_utilization_percentage is not None
        )


class ServiceSpec(KubeModel):
    """The Service clients use to reach the engine."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Service type."
    )
    port: int = Field(names.ENGINE_PORT, ge=1, le=65535, description="Service port.")
    annotations: LabelMap = empty(dict, "Annotations on the Service (e.g. for load balancers).")


class DisruptionBudgetSpec(KubeModel):
    """PodDisruptionBudget for voluntary disruptions (node drains). It is only created when at
    least 2 replicas are wanted (`replicas`, or `autoscaling.minReplicas` when autoscaling), so a
    single replica never blocks a drain."""

    enabled: bool = Field(
        True,
        description="Create the budget when 2+ replicas are wanted (`replicas`, or "
        "`autoscaling.minReplicas` when autoscaling).",
    )
    max_unavailable: IntOrPercent = Field(
        1, description="Pods that may be down at once: a count or a percentage such as `25%`."
    )


class Toleration(KubeModel):
    """A Kubernetes toleration."""

    # A qualified name: a DNS subdomain prefix (253), "/" and a name (63).
    key: Annotated[str, StringConstraints(max_length=317)] | None = Field(
        None, description="Taint key; unset with operator Exists matches every taint."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="`Equal` (default) or `Exists`."
    )
    value: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        None, description="Taint value for `Equal`."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; unset matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class PodOverrides(KubeModel):
    """Extra settings for the engine pods. Labels never replace the operator's own labels.
    The placement (nodeSelector, tolerations, affinity) applies to the managed Redis pod too."""

    labels: LabelMap = empty(dict, "Extra pod labels.")
    annotations: LabelMap = empty(dict, "Extra pod annotations.")
    node_selector: LabelMap = empty(dict, "Pod nodeSelector.")
    tolerations: Annotated[list[Toleration], Field(max_length=MAX_LIST_ITEMS)] = empty(
        list, "Pod tolerations."
    )
    affinity: FreeForm | None = Field(
        None, description="Pod affinity (a Kubernetes Affinity object, passed through)."
    )
    priority_class_name: ObjectName | None = Field(
        None, description="PriorityClass of the engine pods."
    )
    tmp_size_limit: Annotated[Quantity, QuantityBound(MIN_VOLUME, at_least=True)] = Field(
        "64Mi",
        description="`sizeLimit` of the engine's /tmp emptyDir (SQLite's and Python's temporary "
        "files). Each engine pod requests the ephemeral storage of its emptyDirs: this plus "
        "`cache.l3.size` unless the data volume is a claim. At least `1Mi`.",
    )


class NetworkPolicySpec(KubeModel):
    """NetworkPolicies for this engine: clients reach the engine port only, and the managed Redis
    is reachable only from this engine's pods."""

    enabled: bool = Field(False, description="Create the NetworkPolicies.")
    allowed_clients: Annotated[list[FreeForm], Field(max_length=MAX_LIST_ITEMS)] | None = Field(
        None,
        description="NetworkPolicyPeers allowed to reach the engine port; unset: any client. The "
        "operator's own pods are always allowed too (for metric scrapes), by one added peer: pods "
        "labelled app.kubernetes.io/name=novel-engine-operator in the operator's namespace only "
        "(the namespace named by the label kubernetes.io/metadata.name).",
    )


class NovelEngineSpec(KubeModel):
    """Desired state of a NovelEngine: the engine workload, its cache tiers and scaling."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=MAX_IMAGE_LENGTH)] = Field(
        names.DEFAULT_ENGINE_IMAGE, description="Engine container image."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the kubelet pulls the image."
    )
    image_pull_secrets: Annotated[list[ObjectName], Field(max_length=MAX_LIST_ITEMS)] = empty(
        list, "Names of Secrets for pulling the engine image and the managed Redis image."
    )
    replicas: int = Field(
        1,
        ge=0,
        le=1000,
        description="Engine pods when autoscaling is disabled (`kubectl scale` sets it); 0 keeps "
        "the configuration but serves nothing.",
    )
    resources: ResourcesSpec = nested(ResourcesSpec, "Compute resources of the engine container.")
    engine: EngineSettings = nested(EngineSettings, "Settings of the engine process.")
    content: ContentSpec | None = Field(
        None, description="Extra content from a ConfigMap; unset: built-in samples only."
    )
    cache: CacheSpec = nested(CacheSpec, "The engine's three cache tiers.")
    autoscaling: AutoscalingSpec = nested(AutoscalingSpec, "Replica autoscaling.")
    service: ServiceSpec = nested(ServiceSpec, "The Service clients use to reach the engine.")
    disruption_budget: DisruptionBudgetSpec = nested(
        DisruptionBudgetSpec, "PodDisruptionBudget for voluntary disruptions (node drains)."
    )
    pod: PodOverrides = nested(PodOverrides, "Extra settings for the engine pods.")
    network_policy: NetworkPolicySpec = nested(
        NetworkPolicySpec, "NetworkPolicies for this engine."
    )

    @property
    def replicas_writer(self) -> Literal["spec", "hpa", "operator"]:
        """Who sets the workload's replicas: `spec.replicas`, the HPA, or the operator's scaler."""
        if not self.autoscaling.enabled:
            return "spec"
        return "hpa" if self.autoscaling.uses_hpa else "operator"

    @property
    def minimum_replicas(self) -> int:
        """Fewest replicas the spec asks for (decides whether a disruption budget makes sense)."""
        return self.autoscaling.min_replicas if self.autoscaling.enabled else self.replicas


# --- Status -------------------------------------------------------------------------------------


class StatusModel(KubeModel):
    """Base of status objects: fields written by older operator versions are ignored."""

    model_config = ConfigDict(extra="ignore")


class Condition(StatusModel):
    """A kstatus-compatible condition."""

    type: str = Field(
        description="`Ready`, `Reconciling`, `Stalled`, `ScalingActive` (with engine targets), "
        "`JobsShared` (when more than one replica may run) or `CacheDegraded` (with an L2 tier)."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(description="Human-readable detail.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        None,
        description="The spec generation the condition describes: while reconciliation is "
        "paused, the last one applied; while the spec is not applied (stalled or paused), "
        "JobsShared and CacheDegraded keep the one they were observed at.",
    )


class AutoscalingStatus(StatusModel):
    """What the operator's engine-metric scaler last saw and decided (engine targets only).
    Rewritten when the recommendation, the floor or ScalingActive changes, or an average moves
    by more than 10% of its target; not at every scrape."""

    in_flight_per_pod: float | None = Field(
        None,
        description="Average in-flight requests per ready pod that answered the last scrapes; "
        "set only when autoscaling.engine.inFlightPerPod is a target, unset when no pod answered.",
    )
    queue_depth_per_pod: float | None = Field(
        None,
        description="Average scheduler queue depth (all priorities) per ready pod that answered "
        "the last scrapes; set only when autoscaling.engine.queueDepthPerPod is a target, unset "
        "when no pod answered.",
    )
    recommended_replicas: int | None = Field(
        None,
        description="Replicas the engine metrics call for, within [minReplicas, maxReplicas], "
        "before the stabilisation windows and rate policies; with engine targets only and no "
        "metric yet, the replicas within the bounds.",
    )
    floor: int | None = Field(
        None,
        description="minReplicas given to the HPA (CPU/memory mode with engine targets): the "
        "recommendation after the stabilisation windows and rate policies.",
    )
    last_scale_time: datetime | None = Field(
        None, description="When the operator last changed replicas or the floor."
    )
    last_scale_reason: str | None = Field(
        None,
        description="Why, e.g. `in-flight requests 25 per pod, target 8` or `below minReplicas 3`.",
    )


class NovelEngineStatus(StatusModel):
    """Observed state of a NovelEngine."""

    observed_generation: int | None = Field(
        None, description="The spec generation last acted upon."
    )
    replicas: int | None = Field(None, description="Engine pods that exist.")
    ready_replicas: int | None = Field(None, description="Engine pods that are ready.")
    desired_replicas: int | None = Field(
        None, description="Replicas the workload is asked for (by the spec or the autoscaler)."
    )
    selector: str | None = Field(None, description="Label selector of the engine pods.")
    endpoint: str | None = Field(None, description="In-cluster address: Service DNS name:port.")
    conditions: Annotated[list[Condition], Field(max_length=8)] = Field(
        default_factory=list,
        description=(
            "Ready, Reconciling and Stalled; ScalingActive with engine targets; JobsShared when"
            " more than one replica may run (False: async jobs stay in the replica that accepted"
            " them, as there is no L2 tier); CacheDegraded (True while engine pods report their L2"
            " tier unreachable or refusing the credentials) with an L2 tier."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    autoscaling: AutoscalingStatus | None = Field(
        None, description="Engine-metric autoscaling details."
    )

    def condition(self, condition_type: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions if c.type == condition_type), None)


# --- Owner --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The NovelEngine a child belongs to: what builders need for names and ownerReferences."""

    name: str
    namespace: str
    uid: str
    generation: int = 0

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Owner":
        """From a NovelEngine's metadata as the API returns it."""
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=metadata.get("generation", 0),
        )
