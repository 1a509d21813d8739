"""The engine workload: a Deployment, or a StatefulSet when each replica needs its own PVC."""

from typing import Any

from novel_operator import names
from novel_operator.builders.common import (
    NO_STARTUP_INPUTS,
    Manifest,
    StartupInputs,
    engine_manifest,
)
from novel_operator.builders.pod import DATA_VOLUME, engine_pod_template
from novel_operator.model import NovelEngineSpec, Owner


def workload_kind(spec: NovelEngineSpec) -> str:
    """`StatefulSet` when L3 asks for a volume claim per replica, else `Deployment`."""
    return "StatefulSet" if spec.cache.l3.wants_volume_claims else "Deployment"


def _workload_spec(
    owner: Owner,
    spec: NovelEngineSpec,
    replicas_owned_elsewhere: bool,
    startup_inputs: StartupInputs,
) -> Any:
    body: dict[str, Any] = {}
    if not replicas_owned_elsewhere:
        body["replicas"] = spec.replicas
    body["selector"] = {"matchLabels": names.engine_selector(owner.name)}
    body["template"] = engine_pod_template(owner, spec, startup_inputs=startup_inputs)
    return body


def build_deployment(
    owner: Owner,
    spec: NovelEngineSpec,
    *,
    replicas_owned_elsewhere: bool,
    startup_inputs: StartupInputs = NO_STARTUP_INPUTS,
) -> Manifest | None:
    """The engine Deployment, or None when the engine runs as a StatefulSet. `replicas` is left
    out while the HPA or the operator's scaler owns it; `startup_inputs` roll the pods when what
    they read at start changes."""
    if workload_kind(spec) != "Deployment":
        return None
    body = _workload_spec(owner, spec, replicas_owned_elsewhere, startup_inputs)
    # Surge first: a single replica is replaced without a gap.
    body["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
    }
    return engine_manifest("apps/v1", "Deployment", owner, spec=body)


def build_statefulset(
    owner: Owner,
    spec: NovelEngineSpec,
    *,
    replicas_owned_elsewhere: bool,
    startup_inputs: StartupInputs = NO_STARTUP_INPUTS,
) -> Manifest | None:
    """The engine StatefulSet with one data PVC per replica, or None for a Deployment; the
    arguments as for `build_deployment`."""
    if workload_kind(spec) != "StatefulSet":
        return None
    l3 = spec.cache.l3
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": l3.size}},
    }
    if l3.storage_class_name is not None:
        claim_spec["storageClassName"] = l3.storage_class_name
    body = _workload_spec(owner, spec, replicas_owned_elsewhere, startup_inputs)
    body |= {
        "serviceName": names.engine_name(owner.name),
        "podManagementPolicy": "Parallel",  # replicas are independent: no ordered start-up
        "updateStrategy": {"type": "RollingUpdate"},
        # The claims hold a cache: dropped with the resource, kept across scale-downs for reuse.
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
        "volumeClaimTemplates": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": DATA_VOLUME, "labels": names.engine_selector(owner.name)},
                "spec": claim_spec,
            }
        ],
    }
    return engine_manifest("apps/v1", "StatefulSet", owner, spec=body)
