"""The engine's settings file, as a ConfigMap whose content hash rolls the pods when it changes."""

import hashlib
import json
import math
from decimal import Decimal
from typing import Any, Final

import yaml

from novel_operator import names
from novel_operator.builders.common import Manifest, engine_manifest
from novel_operator.model import NovelEngineSpec, Owner, quantity_value

L3_SHARE_OF_DATA_VOLUME: Final = Decimal("0.75")


def l3_max_bytes(spec: NovelEngineSpec) -> int:
    """The engine's database budget on disk: a share of its data volume (`cache.l3.size`); the
    rest is room for what runs over it between checks (WAL pages, job records)."""
    return max(1, math.floor(quantity_value(spec.cache.l3.size) * L3_SHARE_OF_DATA_VOLUME))


def engine_config(spec: NovelEngineSpec) -> dict[str, Any]:
    """Settings for the engine's config file; keys are the engine's setting names.

    Process wiring (host, port, data dir, content, drain timeout, Redis) goes on the command line
    instead, next to the volumes and probes it must agree with.
    """
    engine, cache = spec.engine, spec.cache
    config: dict[str, Any] = {
        "queue_limit": engine.queue_limit,
        "scheduler_workers": engine.scheduler_workers,
        "thread_workers": engine.thread_workers,
        "process_workers": engine.process_workers,
        "task_deadline": engine.task_deadline_seconds,
        "db_pool_size": engine.db_pool_size,
        "db_acquire_timeout": engine.db_acquire_timeout_seconds,
        "max_body_bytes": engine.max_body_bytes,
        "log_level": engine.log_level,
        "l1_max_entries": cache.l1.max_entries,
        "l1_ttl_seconds": cache.l1.ttl_seconds,
        "l2_ttl_seconds": cache.l2.ttl_seconds,
        "l3_enabled": cache.l3.enabled,
        "l3_max_entries": cache.l3.max_entries,
        "l3_max_bytes": l3_max_bytes(spec),
    }
    if cache.l1.max_bytes is not None:
        config["l1_max_bytes"] = math.ceil(quantity_value(cache.l1.max_bytes))
    return config


def config_data(spec: NovelEngineSpec) -> dict[str, str]:
    """The ConfigMap's data."""
    return {names.CONFIG_FILE_KEY: yaml.safe_dump(engine_config(spec), sort_keys=True)}


def config_hash(spec: NovelEngineSpec) -> str:
    """SHA-256 of the ConfigMap's data: the pod-template annotation that rolls pods on change."""
    canonical = json.dumps(config_data(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_configmap(owner: Owner, spec: NovelEngineSpec) -> Manifest:
    """The engine's config ConfigMap (always present)."""
    return engine_manifest(
        "v1", "ConfigMap", owner, names.config_name(owner.name), data=config_data(spec)
    )
