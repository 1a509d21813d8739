"""Objects the e2e scenarios create (pure: dicts in, dicts out)."""

from __future__ import annotations

import math
from typing import Any

import yaml

from novel_engine.loadgen import LoadPlan
from novel_operator import names
from novel_operator.builders.pod import ENGINE_USER

Manifest = dict[str, Any]
#: Label on every object the suite creates itself, so a failed run can be cleaned up by hand.
E2E_LABEL = "novelengine.io/e2e"
#: Seconds a load Job may outlive its planned duration (pod start, slow answers) before
#: Kubernetes stops it: the load is bounded even if the suite dies.
JOB_SLACK_SECONDS = 120


def service_url(instance: str, namespace: str, port: int = names.ENGINE_PORT) -> str:
    """The engine Service as a client inside the cluster reaches it."""
    return f"http://{names.endpoint(instance, namespace, port)}"


def load_job(name: str, namespace: str, image: str, plan: LoadPlan) -> Manifest:
    """A Job that runs the load generator of the engine image once with `plan`; it never
    retries (a retry would hide failed requests) and is stopped after the planned duration plus
    a margin."""
    container = {
        "name": "load",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "novel_engine.loadgen"],
        "args": plan.to_args(),
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {E2E_LABEL: "load"}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": math.ceil(plan.duration_seconds) + JOB_SLACK_SECONDS,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {E2E_LABEL: "load"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": ENGINE_USER,
                        "runAsGroup": ENGINE_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }


def novel_engine(name: str, namespace: str, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {E2E_LABEL: "engine"}},
        "spec": spec,
    }


def sample_spec(sample_yaml: str, image: str | None = None) -> dict[str, Any]:
    """The sample NovelEngine's spec (crds/examples/novelengine.yaml), with `image` if given."""
    spec: dict[str, Any] = dict(yaml.safe_load(sample_yaml)["spec"])
    return spec | {"image": image} if image else spec


def engine_scaling_spec(
    *,
    image: str | None,
    in_flight_per_pod: int,
    max_replicas: int,
    scale_down_window_seconds: int,
    sync_period_seconds: int = 5,
) -> dict[str, Any]:
    """A NovelEngine the operator scales on in-flight requests alone (no HPA): up at once, down
    after `scale_down_window_seconds`, one pod per 15 s."""
    spec: dict[str, Any] = {
        "cache": {"l2": {"mode": "managed"}},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
        "autoscaling": {
            "enabled": True,
            "minReplicas": 1,
            "maxReplicas": max_replicas,
            "syncPeriodSeconds": sync_period_seconds,
            "engine": {"inFlightPerPod": in_flight_per_pod},
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": scale_down_window_seconds,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
                }
            },
        },
    }
    return spec | {"image": image} if image else spec


def content_config_map(name: str, namespace: str, characters: list[dict[str, Any]]) -> Manifest:
    """A content ConfigMap, labelled so that the operator reacts to its edits at once."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {E2E_LABEL: "content", names.WATCH_LABEL: names.WATCH_LABEL_VALUE},
        },
        "data": {"characters.yaml": yaml.safe_dump({"characters": characters}, sort_keys=True)},
    }
