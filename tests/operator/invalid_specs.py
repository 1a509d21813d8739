"""Specs both pydantic and the apiserver must refuse, with the field path each error names and,
for a cross-field rule, the rule's message (the same CEL rule gives the same message in both).

Shared data: the model's unit tests check pydantic, the integration tests the apiserver (with
strict field validation, kubectl's default, for the unknown-field case).
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InvalidSpec:
    """One invalid `spec`, the Kubernetes field path its error must name and, when a cross-field
    rule refuses it, that rule's message."""

    id: str
    spec: dict[str, Any]
    field_path: str
    rule_message: str | None = None


# The resources rules name the defaults they involve.
MEMORY_RULE = (
    "requests.memory must not exceed limits.memory (requests.memory is 256Mi when not set)"
)
CPU_RULE = "requests.cpu must not exceed limits.cpu (requests.cpu is 250m when not set)"

INVALID_SPECS: list[InvalidSpec] = [
    InvalidSpec("negative-replicas", {"replicas": -1}, "spec.replicas"),
    InvalidSpec("unknown-field", {"replicaz": 3}, "spec.replicaz"),
    InvalidSpec(
        "min-above-max",
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
        "minReplicas must not exceed maxReplicas",
    ),
    InvalidSpec(
        "autoscaling-without-target",
        {"autoscaling": {"enabled": True}},
        "spec.autoscaling.enabled",
        "enabled autoscaling needs a target: targetCPUUtilizationPercentage, "
        "targetMemoryUtilizationPercentage, engine.inFlightPerPod or engine.queueDepthPerPod",
    ),
    InvalidSpec(
        "external-redis-without-secret",
        {"cache": {"l2": {"mode": "external"}}},
        "spec.cache.l2.external",
        "external is required when mode is external",
    ),
    InvalidSpec("unknown-l2-mode", {"cache": {"l2": {"mode": "sometimes"}}}, "spec.cache.l2.mode"),
    InvalidSpec(
        "storage-class-without-pvc",
        {"cache": {"l3": {"storageClassName": "fast"}}},
        "spec.cache.l3.storageClassName",
        "storageClassName needs persistence: pvc",
    ),
    InvalidSpec(
        "pvc-with-l3-disabled",
        {"cache": {"l3": {"enabled": False, "persistence": "pvc"}}},
        "spec.cache.l3.persistence",
        "persistence: pvc needs enabled: true",
    ),
    InvalidSpec("port-out-of-range", {"service": {"port": 70000}}, "spec.service.port"),
    InvalidSpec(
        "malformed-quantity",
        {"resources": {"requests": {"memory": "lots"}}},
        "spec.resources.requests.memory",
    ),
    InvalidSpec(
        "request-above-limit",
        {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
        "spec.resources.requests.memory",
        MEMORY_RULE,
    ),
    InvalidSpec(
        "cpu-request-above-limit",
        {"resources": {"requests": {"cpu": "1500m"}, "limits": {"cpu": 1}}},
        "spec.resources.requests.cpu",
        CPU_RULE,
    ),
    InvalidSpec(
        "limit-below-default-request",
        {"resources": {"limits": {"memory": "128Mi"}}},
        "spec.resources.requests.memory",
        MEMORY_RULE,
    ),
    InvalidSpec(
        "cpu-limit-below-default-request",
        {"resources": {"limits": {"cpu": "100m"}}},
        "spec.resources.requests.cpu",
        CPU_RULE,
    ),
    InvalidSpec(
        "percent-above-100",
        {"disruptionBudget": {"maxUnavailable": "150%"}},
        "spec.disruptionBudget.maxUnavailable",
    ),
    InvalidSpec(
        "unknown-toleration-effect",
        {"pod": {"tolerations": [{"key": "dedicated", "effect": "Sometimes"}]}},
        "spec.pod.tolerations[0].effect",
    ),
    InvalidSpec(
        "toleration-key-over-317",
        {"pod": {"tolerations": [{"key": f"{'d' * 254}/{'n' * 63}", "operator": "Exists"}]}},
        "spec.pod.tolerations[0].key",
    ),
    InvalidSpec("content-without-configmap", {"content": {}}, "spec.content.configMapName"),
    InvalidSpec(
        "zero-scaling-policy",
        {
            "autoscaling": {
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 60}]}
                }
            }
        },
        "spec.autoscaling.behavior.scaleUp.policies[0].value",
    ),
    # No policy would allow no change at all (`selectPolicy: Disabled` says that), and the
    # HPA refuses an empty list.
    InvalidSpec(
        "no-scaling-policy",
        {"autoscaling": {"behavior": {"scaleDown": {"policies": []}}}},
        "spec.autoscaling.behavior.scaleDown.policies",
    ),
    # The apiserver would store 100Ei cut to 2^63 - 1: a child forever unlike its spec.
    InvalidSpec(
        "quantity-past-int64",
        {"resources": {"limits": {"memory": "100Ei"}}},
        "spec.resources.limits.memory",
    ),
    InvalidSpec(
        "redis-memory-zero",
        {"cache": {"l2": {"mode": "managed", "managed": {"memory": "0"}}}},
        "spec.cache.l2.managed.memory",
    ),
    InvalidSpec("volume-of-a-byte", {"cache": {"l3": {"size": "1"}}}, "spec.cache.l3.size"),
    InvalidSpec("tmp-below-minimum", {"pod": {"tmpSizeLimit": "1Ki"}}, "spec.pod.tmpSizeLimit"),
    InvalidSpec("l1-of-no-bytes", {"cache": {"l1": {"maxBytes": "0"}}}, "spec.cache.l1.maxBytes"),
]
