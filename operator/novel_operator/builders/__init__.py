"""Pure builders: a NovelEngine spec in, complete server-side-apply manifests out.

No client, clock or environment here; everything comes in as arguments.
"""

from dataclasses import dataclass, field
from typing import Final

from novel_operator import names
from novel_operator.builders.common import Manifest
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
    "build_redis_secret",
    "desired_state",
]


@dataclass(frozen=True)
class ChildRef:
    """A child that must not exist (the apply layer deletes it if it does)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class DesiredState:
    """Children to apply (in order) and children to delete. Every child the operator can create
    appears exactly once, in one of the two lists; `redis_secret` names the Secret the apply layer
    must create once with a generated password (None when it must not exist: it is then in
    `absent`)."""

    apply: list[Manifest]
    absent: list[ChildRef]
    redis_secret: str | None = field(default=None)


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


def desired_state(
    owner: Owner,
    spec: NovelEngineSpec,
    *,
    engine_replicas_owned_elsewhere: bool,
    hpa_min_replicas: int | None = None,
) -> DesiredState:
    """Every child of one NovelEngine: what to apply (in order) and what must be absent.

    `engine_replicas_owned_elsewhere` leaves the workload's replicas to the HPA or the operator's
    scaler; `hpa_min_replicas` is the scaler's current floor for the HPA (None: the spec's
    minimum), passed back in so that a reconcile never reverts it.
    """
    name, redis = names.engine_name(owner.name), names.redis_name(owner.name)
    candidates: list[tuple[ChildRef, Manifest | None]] = [
        (ChildRef("v1", "ConfigMap", names.config_name(owner.name)), build_configmap(owner, spec)),
        (
            ChildRef("apps/v1", "Deployment", name),
            build_deployment(owner, spec, replicas_owned_elsewhere=engine_replicas_owned_elsewhere),
        ),
        (
            ChildRef("apps/v1", "StatefulSet", name),
            build_statefulset(
                owner, spec, replicas_owned_elsewhere=engine_replicas_owned_elsewhere
            ),
        ),
        (ChildRef("v1", "Service", name), build_service(owner, spec)),
        (
            ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", name),
            build_hpa(owner, spec, floor=hpa_min_replicas),
        ),
        (ChildRef("policy/v1", "PodDisruptionBudget", name), build_pdb(owner, spec)),
        (ChildRef("apps/v1", "Deployment", redis), build_redis_deployment(owner, spec)),
        (ChildRef("v1", "Service", redis), build_redis_service(owner, spec)),
        (
            ChildRef("networking.k8s.io/v1", "NetworkPolicy", name),
            build_engine_network_policy(owner, spec),
        ),
        (
            ChildRef("networking.k8s.io/v1", "NetworkPolicy", redis),
            build_redis_network_policy(owner, spec),
        ),
    ]
    apply = [built for _, built in candidates if built is not None]
    absent = [ref for ref, built in candidates if built is None]
    secret = ChildRef("v1", "Secret", names.redis_secret_name(owner.name))
    if spec.cache.l2.mode == "managed":
        return DesiredState(apply, absent, redis_secret=secret.name)
    return DesiredState(apply, [*absent, secret])
