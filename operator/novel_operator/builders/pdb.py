"""The engine PodDisruptionBudget."""

from novel_operator import names
from novel_operator.builders.common import Manifest, engine_manifest
from novel_operator.model import NovelEngineSpec, Owner

MIN_REPLICAS_FOR_BUDGET = 2


def build_pdb(owner: Owner, spec: NovelEngineSpec) -> Manifest | None:
    """A budget limiting voluntary disruptions, or None when disabled or fewer than 2 replicas are
    wanted (a budget over one pod would either block node drains or protect nothing)."""
    budget = spec.disruption_budget
    if not budget.enabled or spec.minimum_replicas < MIN_REPLICAS_FOR_BUDGET:
        return None
    return engine_manifest(
        "policy/v1",
        "PodDisruptionBudget",
        owner,
        spec={
            "selector": {"matchLabels": names.engine_selector(owner.name)},
            "maxUnavailable": budget.max_unavailable,
            # A crash-looping pod must not hold up a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )
