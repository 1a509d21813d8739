"""The HorizontalPodAutoscaler, present only when a CPU or memory target is set."""

from typing import Any

from novel_operator import names
from novel_operator.builders.common import Manifest, engine_manifest
from novel_operator.builders.workload import workload_kind
from novel_operator.model import NovelEngineSpec, Owner


def _resource_metric(resource: str, utilization: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {
            "name": resource,
            "target": {"type": "Utilization", "averageUtilization": utilization},
        },
    }


def hpa_min_replicas(spec: NovelEngineSpec, floor: int | None) -> int:
    """The HPA's minReplicas: the spec's minimum raised to the engine-metric floor, capped at
    maxReplicas."""
    autoscaling = spec.autoscaling
    wanted = autoscaling.min_replicas if floor is None else max(autoscaling.min_replicas, floor)
    return min(wanted, autoscaling.max_replicas)


def build_hpa(owner: Owner, spec: NovelEngineSpec, *, floor: int | None = None) -> Manifest | None:
    """An autoscaling/v2 HPA on the engine workload, or None when no CPU/memory target is set
    (engine-only targets are scaled by the operator itself). `floor` is the operator's
    engine-metric recommendation, which the HPA must not go below."""
    autoscaling = spec.autoscaling
    if not autoscaling.uses_hpa:
        return None
    metrics = []
    if autoscaling.target_cpu_utilization_percentage is not None:
        metrics.append(_resource_metric("cpu", autoscaling.target_cpu_utilization_percentage))
    if autoscaling.target_memory_utilization_percentage is not None:
        metrics.append(_resource_metric("memory", autoscaling.target_memory_utilization_percentage))
    body: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": workload_kind(spec),
            "name": names.engine_name(owner.name),
        },
        "minReplicas": hpa_min_replicas(spec, floor),
        "maxReplicas": autoscaling.max_replicas,
        "metrics": metrics,
    }
    behavior = autoscaling.behavior.to_k8s()
    if behavior:
        body["behavior"] = behavior
    return engine_manifest("autoscaling/v2", "HorizontalPodAutoscaler", owner, spec=body)
