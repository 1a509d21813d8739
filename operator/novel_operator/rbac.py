"""The Kubernetes permissions the operator needs, in one place (the chart and tests render them)."""

from dataclasses import dataclass
from typing import Any, Final

from novel_operator import names
from novel_operator.builders import CHILD_KINDS

READ: Final = ("get", "list", "watch")
MANAGE: Final = (*READ, "create", "patch", "delete")  # server-side apply is a patch; no update

# Plural resource names of the child kinds (RBAC speaks resources, manifests speak kinds).
CHILD_RESOURCES: Final[dict[str, str]] = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
}


@dataclass(frozen=True)
class PolicyRule:
    """One RBAC PolicyRule."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def to_k8s(self) -> dict[str, Any]:
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


def api_group(api_version: str) -> str:
    """`apps/v1` -> `apps`; the core group `v1` -> ``."""
    return api_version.rpartition("/")[0]


def _child_rules() -> tuple[PolicyRule, ...]:
    by_group: dict[str, list[str]] = {}
    for api_version, kind in CHILD_KINDS:
        by_group.setdefault(api_group(api_version), []).append(CHILD_RESOURCES[kind])
    return tuple(
        PolicyRule((group,), tuple(sorted(resources)), MANAGE)
        for group, resources in sorted(by_group.items())
    )


RBAC_RULES: Final[tuple[PolicyRule, ...]] = (
    # The custom resource: read it, apply its status.
    PolicyRule((names.GROUP,), (names.PLURAL,), (*READ, "patch")),
    PolicyRule((names.GROUP,), (f"{names.PLURAL}/status",), ("get", "patch")),
    # Children (server-side apply of a missing object needs create as well as patch).
    *_child_rules(),
    # The scaler sets replicas through the workload's scale subresource (a merge patch; the
    # current count is read from the workload itself).
    PolicyRule(("apps",), ("deployments/scale", "statefulsets/scale"), ("patch",)),
    # Engine pods: the autoscaler lists them by label selector at each sync to scrape the
    # ready ones' /metrics (autoscaler.Autoscaler._sync -> KubeClient.list_pods). List only.
    PolicyRule(("",), ("pods",), ("list",)),
    # Events about NovelEngines (the reconcile records core Events; kopf posts none).
    PolicyRule(("",), ("events",), ("create",)),
    # No CRD or namespace access: kopf's cluster scanning is off (the CRD is installed first).
)
