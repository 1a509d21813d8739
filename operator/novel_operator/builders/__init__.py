"""Pure builders: a NovelEngine spec in, complete server-side-apply manifests out.

No client, clock or environment here; everything comes in as arguments.
"""

from dataclasses import dataclass, field
from typing import Any, Final

from novel_operator.model import NovelEngineSpec, Owner

Manifest = dict[str, Any]


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
    """Every child of one NovelEngine: what to apply and what must be absent."""
    raise NotImplementedError
