"""Specs both pydantic and the apiserver must refuse, with the field path each error names.

Shared data: the model's unit tests check pydantic, the integration tests the apiserver (with
strict field validation, kubectl's default, for the unknown-field case).
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InvalidSpec:
    """One invalid `spec`, the Kubernetes field path its error must name, and words the
    message must hold (a default the error involves is named)."""

    id: str
    spec: dict[str, Any]
    field_path: str
    message_part: str = ""


INVALID_SPECS: list[InvalidSpec] = [
    InvalidSpec("negative-replicas", {"replicas": -1}, "spec.replicas"),
    InvalidSpec("unknown-field", {"replicaz": 3}, "spec.replicaz"),
    InvalidSpec(
        "min-above-max",
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
    ),
    InvalidSpec(
        "autoscaling-without-target", {"autoscaling": {"enabled": True}}, "spec.autoscaling.enabled"
    ),
    InvalidSpec(
        "external-redis-without-secret",
        {"cache": {"l2": {"mode": "external"}}},
        "spec.cache.l2.external",
    ),
    InvalidSpec("unknown-l2-mode", {"cache": {"l2": {"mode": "sometimes"}}}, "spec.cache.l2.mode"),
    InvalidSpec(
        "storage-class-without-pvc",
        {"cache": {"l3": {"storageClassName": "fast"}}},
        "spec.cache.l3.storageClassName",
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
    ),
    InvalidSpec(
        "limit-below-default-request",
        {"resources": {"limits": {"memory": "128Mi"}}},
        "spec.resources.requests.memory",
        "requests.memory is 256Mi when not set",
    ),
    InvalidSpec(
        "cpu-limit-below-default-request",
        {"resources": {"limits": {"cpu": "100m"}}},
        "spec.resources.requests.cpu",
        "requests.cpu is 250m when not set",
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
]
