"""The managed Redis tier (`cache.l2.mode: managed`): Deployment, Service and password Secret."""

import math
from decimal import Decimal
from typing import Any, Final

from novel_operator import names
from novel_operator.builders.common import (
    NO_STARTUP_INPUTS,
    Manifest,
    StartupInputs,
    common_labels,
    manifest,
    redis_manifest,
    restricted_security_context,
)
from novel_operator.builders.pod import placement
from novel_operator.model import NovelEngineSpec, Owner, quantity_value

REDIS_CONTAINER: Final = "redis"
REDIS_USER: Final = 999  # the `redis` user of the official image
MAXMEMORY_SHARE: Final = Decimal("0.8")  # the rest of the container's memory is headroom
# Redis' working directory: it persists nothing (no RDB, no AOF), so the volume stays nearly
# empty; the limit and the pod's ephemeral-storage request keep it honest.
REDIS_DATA_SIZE_LIMIT: Final = "64Mi"


def redis_maxmemory_bytes(memory: str) -> int:
    """Redis' maxmemory for a container memory limit."""
    return math.floor(quantity_value(memory) * MAXMEMORY_SHARE)


def build_redis_deployment(
    owner: Owner, spec: NovelEngineSpec, *, startup_inputs: StartupInputs = NO_STARTUP_INPUTS
) -> Manifest | None:
    """A single Redis pod (no persistence: it is a cache), or None unless L2 is managed.
    It runs where the engine pods may run (nodeSelector, tolerations, affinity) and pulls its
    image with their pull secrets. The credentials' version in `startup_inputs` rolls the pod
    when the password Secret is replaced: Redis reads the password only at start."""
    if spec.cache.l2.mode != "managed":
        return None
    managed = spec.cache.l2.managed
    pod_security, container_security = restricted_security_context(REDIS_USER)
    container = {
        "name": REDIS_CONTAINER,
        "image": managed.image,
        "command": ["redis-server"],
        # $(REDIS_PASSWORD) is expanded by the kubelet: the password never appears in the spec.
        "args": [
            "--port",
            str(names.REDIS_PORT),
            "--requirepass",
            "$(REDIS_PASSWORD)",
            "--maxmemory",
            str(redis_maxmemory_bytes(managed.memory)),
            "--maxmemory-policy",
            managed.maxmemory_policy,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        "env": [
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": names.redis_secret_name(owner.name),
                        "key": names.REDIS_PASSWORD_KEY,
                    }
                },
            }
        ],
        "ports": [
            {"name": names.REDIS_PORT_NAME, "containerPort": names.REDIS_PORT, "protocol": "TCP"}
        ],
        "resources": {
            "requests": {
                "cpu": "50m",
                "memory": managed.memory,
                "ephemeral-storage": REDIS_DATA_SIZE_LIMIT,
            },
            "limits": {"memory": managed.memory},
        },
        "readinessProbe": {"tcpSocket": {"port": names.REDIS_PORT_NAME}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": names.REDIS_PORT_NAME}, "periodSeconds": 10},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "securityContext": container_security,
    }
    template_metadata: dict[str, Any] = {
        "labels": common_labels(owner.name, names.REDIS_APP, names.COMPONENT_CACHE)
    }
    if startup_inputs.redis_credentials is not None:
        template_metadata["annotations"] = startup_inputs.redis_credentials_annotation()
    return redis_manifest(
        "apps/v1",
        "Deployment",
        owner,
        spec={
            "replicas": 1,
            "selector": {"matchLabels": names.redis_selector(owner.name)},
            # Never two Redis pods side by side: engines would split between two empty caches.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": template_metadata,
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": REDIS_DATA_SIZE_LIMIT}}],
                    "securityContext": pod_security,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    **placement(spec),
                },
            },
        },
    )


def build_redis_service(owner: Owner, spec: NovelEngineSpec) -> Manifest | None:
    """The managed Redis Service, or None unless L2 is managed."""
    if spec.cache.l2.mode != "managed":
        return None
    return redis_manifest(
        "v1",
        "Service",
        owner,
        spec={
            "type": "ClusterIP",
            "selector": names.redis_selector(owner.name),
            "ports": [
                {
                    "name": names.REDIS_PORT_NAME,
                    "port": names.REDIS_PORT,
                    "targetPort": names.REDIS_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    )


def build_redis_secret(owner: Owner, spec: NovelEngineSpec) -> Manifest | None:
    """The password Secret without its data, or None unless L2 is managed. The apply layer creates
    it once, adding a generated password: the password never passes through a builder."""
    if spec.cache.l2.mode != "managed":
        return None
    return manifest(
        "v1",
        "Secret",
        owner,
        names.redis_secret_name(owner.name),
        app=names.REDIS_APP,
        component=names.COMPONENT_CACHE,
        type="Opaque",
    )
