"""Fixed names shared by the operator, the chart and the tests: API identity, labels, annotations,
condition types and reasons, and the names of the children of one NovelEngine."""

import re
from typing import Final

from novel_operator import __version__

# API identity of the custom resource.
GROUP: Final = "novelengine.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "NovelEngine"
LIST_KIND: Final = "NovelEngineList"
PLURAL: Final = "novelengines"
SINGULAR: Final = "novelengine"
SHORT_NAME: Final = "ne"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Common labels (app.kubernetes.io/*) on every child.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"

ENGINE_APP: Final = "novel-engine"
REDIS_APP: Final = "novel-engine-redis"
OPERATOR_APP: Final = "novel-engine-operator"  # the operator's own pods carry this name label
COMPONENT_ENGINE: Final = "engine"
COMPONENT_CACHE: Final = "cache"
MANAGED_BY: Final = "novel-engine-operator"
FIELD_MANAGER: Final = "novel-engine-operator"
# Holds a workload's replicas for a moment when they pass from spec.replicas to an autoscaler:
# FIELD_MANAGER's next apply omits them, and what no other manager owns would be reset.
REPLICAS_HANDOVER_FIELD_MANAGER: Final = "novel-engine-operator-replicas"

# Referenced objects (content ConfigMap, external Redis Secrets) carrying this label are watched
# (server-side selector): a change reaches the NovelEngines that refer to them at once. Others are
# read at each reconcile, so their changes show at the next one (the periodic resync at the latest).
WATCH_LABEL: Final = f"{GROUP}/watch"
WATCH_LABEL_VALUE: Final = "enabled"

# Annotations live under one prefix; kopf's own bookkeeping uses it too.
ANNOTATION_PREFIX: Final = f"{GROUP}/"
PAUSED_ANNOTATION: Final = f"{ANNOTATION_PREFIX}paused"
CONFIG_HASH_ANNOTATION: Final = f"{ANNOTATION_PREFIX}config-hash"
# Version of the Secret(s) holding the Redis credentials (never derived from their data): a
# replaced or rewritten Secret changes it, which rolls the pods that read the credentials.
REDIS_PASSWORD_VERSION_ANNOTATION: Final = f"{ANNOTATION_PREFIX}redis-password-version"
# Digest of the content ConfigMap's data: editing the content rolls the engine pods.
CONTENT_VERSION_ANNOTATION: Final = f"{ANNOTATION_PREFIX}content-version"

# Default images (users retag them for their registry).
DEFAULT_ENGINE_IMAGE: Final = f"novel-engine/engine:{__version__}"
DEFAULT_REDIS_IMAGE: Final = "redis:7.4-alpine"

# Engine process contract inside the pod.
ENGINE_PORT: Final = 8080
ENGINE_PORT_NAME: Final = "http"
REDIS_PORT: Final = 6379
REDIS_PORT_NAME: Final = "redis"
REDIS_PASSWORD_KEY: Final = "password"  # key of the generated Secret holding the Redis password
CONFIG_FILE_KEY: Final = "config.yaml"  # key of the engine ConfigMap holding the settings file
CONFIG_PATH: Final = "/etc/novel-engine/config.yaml"
CONTENT_DIR: Final = "/etc/novel-engine/content"
DATA_DIR: Final = "/var/lib/novel-engine"

# Status conditions (kstatus: Reconciling and Stalled are "abnormal-true").
CONDITION_READY: Final = "Ready"
CONDITION_RECONCILING: Final = "Reconciling"
CONDITION_STALLED: Final = "Stalled"
# Only with engine targets: can the operator read the engine metrics it scales on.
CONDITION_SCALING_ACTIVE: Final = "ScalingActive"
# Only when more than one replica may run: are async jobs shared (L2) or per replica.
CONDITION_JOBS_SHARED: Final = "JobsShared"
# Only with an L2 tier (abnormal-true): engine pods report their L2 tier unreachable or
# refusing the credentials.
CONDITION_CACHE_DEGRADED: Final = "CacheDegraded"

REASON_AVAILABLE: Final = "Available"  # every desired replica is updated and ready
REASON_PROGRESSING: Final = "Progressing"  # the workload is being created, rolled or scaled
REASON_RECONCILED: Final = "Reconciled"  # live children match the spec
REASON_SCALED_TO_ZERO: Final = "ScaledToZero"  # replicas is 0: converged, but nothing serves
REASON_PAUSED: Final = "Paused"  # the pause annotation is set
REASON_INVALID_REFERENCE: Final = "InvalidReference"  # a referenced ConfigMap/Secret is missing
REASON_PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"  # the rollout is stuck
REASON_INVALID_SPEC: Final = "InvalidSpec"  # the stored spec fails the operator's own validation
REASON_APPLY_FAILED: Final = "ApplyFailed"  # the apiserver refused a child, or another owns it
REASON_METRICS_READ: Final = "MetricsRead"  # ScalingActive: some ready pod gave its metrics
REASON_NO_METRICS: Final = "NoMetrics"  # ScalingActive False: no ready engine pod to scrape
REASON_SCRAPE_FAILED: Final = "ScrapeFailed"  # ScalingActive False: no ready pod answered
REASON_STALLED: Final = "Stalled"  # ScalingActive False: nothing scaled while stalled
REASON_SHARED_CACHE: Final = "SharedCache"  # JobsShared: through the L2 Redis tier
REASON_NO_SHARED_CACHE: Final = "NoSharedCache"  # JobsShared False: several replicas, no L2
REASON_L2_AVAILABLE: Final = "L2Available"  # CacheDegraded False: the pods reach their L2 tier
REASON_L2_UNREACHABLE: Final = "L2Unreachable"  # CacheDegraded True: Redis does not answer
REASON_L2_AUTH_FAILED: Final = "L2AuthFailed"  # CacheDegraded True: Redis refuses credentials

# A NovelEngine's name becomes a Service name (DNS-1035 label) and a StatefulSet name, whose pods
# get a `controller-revision-hash` label of `<name>-<10 characters>` (63 characters at most).
MAX_NAME_LENGTH: Final = 52
NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def instance_name_problem(name: str) -> str | None:
    """Why `name` cannot name a NovelEngine (the CRD's metadata schema says the same), or None."""
    if len(name) > MAX_NAME_LENGTH or re.fullmatch(NAME_PATTERN, name) is None:
        return (
            f"metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', "
            f"starting with a letter) of at most {MAX_NAME_LENGTH} characters"
        )
    return None


def engine_name(instance: str) -> str:
    """Name of the engine workload, its Service, PDB, HPA and NetworkPolicy."""
    return instance


def config_name(instance: str) -> str:
    """Name of the ConfigMap holding the engine's settings file."""
    return f"{instance}-config"


def redis_name(instance: str) -> str:
    """Name of the managed Redis Deployment, Service and NetworkPolicy."""
    return f"{instance}-redis"


def redis_secret_name(instance: str) -> str:
    """Name of the Secret holding the managed Redis password (created once by the apply layer)."""
    return f"{instance}-redis-auth"


def engine_selector(instance: str) -> dict[str, str]:
    """Labels selecting this instance's engine pods (workload, Service, PDB selectors)."""
    return {LABEL_NAME: ENGINE_APP, LABEL_INSTANCE: instance}


def redis_selector(instance: str) -> dict[str, str]:
    """Labels selecting this instance's managed Redis pod."""
    return {LABEL_NAME: REDIS_APP, LABEL_INSTANCE: instance}


def selector_string(labels: dict[str, str]) -> str:
    """A label selector in `kubectl -l` / scale-subresource form, keys sorted."""
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def endpoint(instance: str, namespace: str, port: int) -> str:
    """In-cluster address clients use: the engine Service's DNS name and port."""
    return f"{engine_name(instance)}.{namespace}.svc:{port}"
