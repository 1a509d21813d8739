"""The engine pod template shared by the Deployment and the StatefulSet."""

from typing import Any, Final

from novel_operator import names
from novel_operator.builders.common import (
    StartupInputs,
    common_labels,
    quantity_sum,
    restricted_security_context,
)
from novel_operator.builders.configmap import config_hash
from novel_operator.model import NovelEngineSpec, Owner

ENGINE_CONTAINER: Final = "engine"
ENGINE_USER: Final = 10001
DATA_VOLUME: Final = "data"
# Seconds the pod keeps serving after it is marked for deletion, so that Services stop routing
# to it before the engine stops listening.
PRE_STOP_SLEEP_SECONDS: Final = 5
# Seconds the engine stays up after SIGTERM answering readiness with 503 while still serving
# (its --shutdown-delay): clients and proxies that hold connections see it go unready first.
SHUTDOWN_DELAY_SECONDS: Final = 5
# Margin between the engine's drain deadline and the kubelet's SIGKILL.
GRACE_MARGIN_SECONDS: Final = 10


def termination_grace_seconds(spec: NovelEngineSpec) -> int:
    """The pod's grace period: pre-stop pause + the engine's shutdown delay and drain timeout
    + a margin."""
    return (
        PRE_STOP_SLEEP_SECONDS
        + SHUTDOWN_DELAY_SECONDS
        + spec.engine.drain_timeout_seconds
        + GRACE_MARGIN_SECONDS
    )


def redis_url(owner: Owner) -> str:
    """URL of the managed Redis Service."""
    return f"redis://{names.redis_name(owner.name)}.{owner.namespace}.svc:{names.REDIS_PORT}/0"


def _secret_env(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def engine_args(owner: Owner, spec: NovelEngineSpec) -> list[str]:
    """Command-line flags of the engine process (the ARCHITECTURE's process contract)."""
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        str(names.ENGINE_PORT),
        "--config",
        names.CONFIG_PATH,
        "--data-dir",
        names.DATA_DIR,
        "--read-only-content",
        "--shutdown-delay",
        str(SHUTDOWN_DELAY_SECONDS),
        "--drain-timeout",
        str(spec.engine.drain_timeout_seconds),
    ]
    if spec.content is not None:
        args += ["--content", names.CONTENT_DIR]
    if spec.cache.l2.mode == "managed":
        args += ["--redis-url", redis_url(owner)]
    return args


def engine_env(owner: Owner, spec: NovelEngineSpec) -> list[dict[str, Any]]:
    """Secret-backed settings: never on the command line, never in the ConfigMap."""
    l2 = spec.cache.l2
    if l2.mode == "managed":
        return [
            _secret_env(
                "NOVEL_ENGINE_REDIS_PASSWORD",
                names.redis_secret_name(owner.name),
                names.REDIS_PASSWORD_KEY,
            )
        ]
    if l2.mode == "external" and l2.external is not None:
        url, password = l2.external.url_secret_ref, l2.external.password_secret_ref
        env = [_secret_env("NOVEL_ENGINE_REDIS_URL", url.name, url.key)]
        if password is not None:
            env.append(_secret_env("NOVEL_ENGINE_REDIS_PASSWORD", password.name, password.key))
        return env
    return []


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": names.ENGINE_PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _volumes(spec: NovelEngineSpec, owner: Owner) -> tuple[list[Any], list[Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.config_name(owner.name)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": spec.pod.tmp_size_limit}},
    ]
    # subPath keeps the mount a single file, so the content mount can sit beside it.
    mounts: list[dict[str, Any]] = [
        {
            "name": "config",
            "mountPath": names.CONFIG_PATH,
            "subPath": names.CONFIG_FILE_KEY,
            "readOnly": True,
        },
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": DATA_VOLUME, "mountPath": names.DATA_DIR},
    ]
    if not spec.cache.l3.wants_volume_claims:
        volumes.append({"name": DATA_VOLUME, "emptyDir": {"sizeLimit": spec.cache.l3.size}})
    if spec.content is not None:
        volumes.append({"name": "content", "configMap": {"name": spec.content.config_map_name}})
        mounts.append({"name": "content", "mountPath": names.CONTENT_DIR, "readOnly": True})
    return volumes, mounts


def engine_resources(spec: NovelEngineSpec) -> dict[str, Any]:
    """The spec's resources, plus a request for the ephemeral storage of the pod's emptyDirs
    (their sizeLimits). No ephemeral-storage limit: the sizeLimits bound the emptyDirs, the root
    filesystem is read-only, and the rest (container logs) is the kubelet's log rotation's."""
    resources = spec.resources.for_container()
    empty_dirs = [spec.pod.tmp_size_limit]
    if not spec.cache.l3.wants_volume_claims:
        empty_dirs.append(spec.cache.l3.size)
    resources.setdefault("requests", {})["ephemeral-storage"] = quantity_sum(empty_dirs)
    return resources


def placement(spec: NovelEngineSpec) -> dict[str, Any]:
    """Where the pods of this NovelEngine may run and how their images are pulled: the pod
    fields the engine pods and the managed Redis pod share (only those set)."""
    fields: dict[str, Any] = {}
    overrides = spec.pod
    if spec.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    if overrides.node_selector:
        fields["nodeSelector"] = dict(overrides.node_selector)
    if overrides.tolerations:
        fields["tolerations"] = [t.to_k8s() for t in overrides.tolerations]
    if overrides.affinity is not None:
        fields["affinity"] = overrides.affinity
    return fields


def engine_pod_template(
    owner: Owner, spec: NovelEngineSpec, *, startup_inputs: StartupInputs
) -> dict[str, Any]:
    """Pod template of the engine workload: non-root, read-only root filesystem, probes, drain.
    The engine reads its config file, Redis credentials and content only at start, so the config
    hash and the `startup_inputs` it reads roll the pods on change."""
    pod_security, container_security = restricted_security_context(ENGINE_USER)
    volumes, mounts = _volumes(spec, owner)
    container: dict[str, Any] = {
        "name": ENGINE_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": engine_args(owner, spec),
        "ports": [
            {"name": names.ENGINE_PORT_NAME, "containerPort": names.ENGINE_PORT, "protocol": "TCP"}
        ],
        "resources": engine_resources(spec),
        "volumeMounts": mounts,
        "startupProbe": _probe("/healthz", period=2, failures=60),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=5, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        "securityContext": container_security,
    }
    env = engine_env(owner, spec)
    if env:
        container["env"] = env
    overrides = spec.pod
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": pod_security,
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        # The engine needs no API access, and Service links would inject NOVEL_ENGINE_* variables
        # (from a Service named novel-engine) that the engine reads as settings.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": names.engine_selector(owner.name)},
            }
        ],
    }
    pod_spec |= placement(spec)
    if overrides.priority_class_name is not None:
        pod_spec["priorityClassName"] = overrides.priority_class_name
    labels = overrides.labels | common_labels(owner.name, names.ENGINE_APP, names.COMPONENT_ENGINE)
    annotations = (
        overrides.annotations
        | {names.CONFIG_HASH_ANNOTATION: config_hash(spec)}
        # `env` holds exactly the Secret-backed settings: the Redis credentials.
        | (startup_inputs.redis_credentials_annotation() if env else {})
        | (startup_inputs.content_annotation() if spec.content is not None else {})
    )
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}
