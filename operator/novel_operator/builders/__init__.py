"""Pure builders: a NovelEngine spec in, complete server-side-apply manifests out.

No client, clock or environment here; everything comes in as arguments.
"""

from dataclasses import dataclass
from typing import Final

from novel_operator import names
from novel_operator.builders.common import NO_STARTUP_INPUTS, Manifest, StartupInputs
from novel_operator.builders.configmap import build_configmap
from novel_operator.builders.hpa import build_hpa
from novel_operator.builders.networkpolicy import (
    build_engine_network_policy,
    build_redis_network_policy,
)
from novel_operator.builders.pdb import build_pdb
from novel_operator.builders.redis import (
    build_redis_deployment,
    build_redis_secret,
    build_redis_service,
)
from novel_operator.builders.service import build_service
from novel_operator.builders.workload import build_deployment, build_statefulset
from novel_operator.model import NovelEngineSpec, Owner

__all__ = [
    "CHILD_KINDS",
    "ChildRef",
    "DesiredState",
    "Manifest",
    "StartupInputs",
    "build_redis_secret",
    "child_refs",
    "desired_state",
    "ref_of",
]


@dataclass(frozen=True)
class ChildRef:
    """A child by identity; in `DesiredState.absent`, one that must not exist (the apply layer
    deletes it if it does)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class DesiredState:
    """Children to apply (in order) and children to delete. Every child the operator can create
    (`child_refs`) is in one of the two lists, except the managed Redis password Secret while it
    is wanted: the apply layer creates that one itself (`build_redis_secret`), before building
    the desired state, whose pod templates carry the Secret's version."""

    apply: list[Manifest]
    absent: list[ChildRef]


# The kinds the operator manages (watches, RBAC, garbage-collection checks).
CHILD_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)


def child_refs(instance: str) -> list[ChildRef]:
    """Every child the operator can create for the NovelEngine `instance`, whatever its spec."""
    name, redis = names.engine_name(instance), names.redis_name(instance)
    return [
        ChildRef("v1", "ConfigMap", names.config_name(instance)),
        ChildRef("apps/v1", "Deployment", name),
        ChildRef("apps/v1", "StatefulSet", name),
        ChildRef("v1", "Service", name),
        ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", name),
        ChildRef("policy/v1", "PodDisruptionBudget", name),
        ChildRef("apps/v1", "Deployment", redis),
        ChildRef("v1", "Service", redis),
        ChildRef("v1", "Secret", names.redis_secret_name(instance)),
        ChildRef("networking.k8s.io/v1", "NetworkPolicy", name),
        ChildRef("networking.k8s.io/v1", "NetworkPolicy", redis),
    ]


def ref_of(manifest: Manifest) -> ChildRef:
    """The identity of a built child."""
    return ChildRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])


def desired_state(
    owner: Owner,
    spec: NovelEngineSpec,
    *,
    engine_replicas_owned_elsewhere: bool,
    operator_namespace: str,
    hpa_min_replicas: int | None = None,
    startup_inputs: StartupInputs = NO_STARTUP_INPUTS,
) -> DesiredState:
    """Every child of one NovelEngine: what to apply (in order) and what must be absent.

    `engine_replicas_owned_elsewhere` leaves the workload's replicas to the HPA or the operator's
    scaler; `hpa_min_replicas` is the scaler's current floor for the HPA (None: the spec's
    minimum), passed back in so that a reconcile never reverts it. `startup_inputs` are the
    versions of what pods read only at start (Redis credentials, content): each goes on the pod
    templates that read it, so their pods roll when it changes. The engine's
    NetworkPolicy lets in the operator's pods from `operator_namespace`.
    """
    workloads = (
        build(
            owner,
            spec,
            replicas_owned_elsewhere=engine_replicas_owned_elsewhere,
            startup_inputs=startup_inputs,
        )
        for build in (build_deployment, build_statefulset)
    )
    built = [
        build_configmap(owner, spec),
        *workloads,
        build_service(owner, spec),
        build_hpa(owner, spec, floor=hpa_min_replicas),
        build_pdb(owner, spec),
        build_redis_deployment(owner, spec, startup_inputs=startup_inputs),
        build_redis_service(owner, spec),
        build_engine_network_policy(owner, spec, operator_namespace),
        build_redis_network_policy(owner, spec),
    ]
    apply = [manifest for manifest in built if manifest is not None]
    kept = {ref_of(manifest) for manifest in apply}
    secret = build_redis_secret(owner, spec)
    if secret is not None:
        kept.add(ref_of(secret))
    return DesiredState(apply, [ref for ref in child_refs(owner.name) if ref not in kept])
