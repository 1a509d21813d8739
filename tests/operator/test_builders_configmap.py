"""The engine config ConfigMap: only settings the engine accepts, and a hash that rolls pods."""

from pathlib import Path
from typing import Any

import pytest
from operator_samples import OWNER, load_sample, spec_of

from novel_engine.config import load_settings
from novel_operator import names
from novel_operator.builders.common import owner_reference
from novel_operator.builders.configmap import build_configmap, config_hash
from novel_operator.builders.workload import build_deployment


def load_engine_settings(data: dict[str, Any], tmp_path: Path) -> Any:
    configmap = build_configmap(OWNER, spec_of(data))
    config_file = tmp_path / names.CONFIG_FILE_KEY
    config_file.write_text(configmap["data"][names.CONFIG_FILE_KEY])
    return load_settings(["--config", str(config_file)], environ={})


def test_the_config_file_loads_in_the_engine_with_the_spec_values(tmp_path: Path) -> None:
    settings = load_engine_settings(load_sample()["spec"], tmp_path)

    assert settings.queue_limit == 512
    assert settings.db_pool_size == 8
    assert settings.l1_max_entries == 20_000
    assert settings.l1_max_bytes == 128 * 1024 * 1024


def test_default_settings_load_in_the_engine(tmp_path: Path) -> None:
    settings = load_engine_settings({}, tmp_path)

    assert settings.l1_max_bytes is None  # the engine sizes L1 from its memory limit
    assert settings.log_level == "INFO"
    assert settings.l3_enabled is True


def test_a_disabled_l3_tier_reaches_the_engine(tmp_path: Path) -> None:
    assert load_engine_settings({"cache": {"l3": {"enabled": False}}}, tmp_path).l3_enabled is False


@pytest.mark.parametrize(
    ("l3", "max_bytes"),
    [
        ({}, 768 * 1024**2),  # three quarters of the default 1Gi emptyDir
        ({"size": "100M"}, 75_000_000),
        ({"persistence": "pvc", "size": "8Gi"}, 6 * 1024**3),  # of the volume claim
    ],
)
def test_the_engine_keeps_its_database_within_its_data_volume(
    tmp_path: Path, l3: dict[str, Any], max_bytes: int
) -> None:
    assert load_engine_settings({"cache": {"l3": l3}}, tmp_path).l3_max_bytes == max_bytes


def test_the_configmap_is_named_labelled_and_owned() -> None:
    configmap = build_configmap(OWNER, spec_of())

    assert configmap["metadata"]["name"] == "demo-config"
    assert configmap["metadata"]["namespace"] == "stories"
    assert configmap["metadata"]["ownerReferences"] == [owner_reference(OWNER)]
    assert configmap["metadata"]["labels"][names.LABEL_COMPONENT] == "engine"
    assert list(configmap["data"]) == ["config.yaml"]


@pytest.mark.parametrize(
    "change",
    [
        {"engine": {"queueLimit": 10}},
        {"engine": {"logLevel": "DEBUG"}},
        {"cache": {"l1": {"ttlSeconds": 5}}},
        {"cache": {"l3": {"maxEntries": 7}}},
        {"cache": {"l3": {"enabled": False}}},
    ],
)
def test_engine_setting_changes_change_the_hash(change: dict[str, Any]) -> None:
    assert config_hash(spec_of(change)) != config_hash(spec_of())


@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 4},
        {"service": {"port": 9090}},
        {"pod": {"labels": {"team": "story"}}},
        {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 50}},
        {"image": "registry.example/engine:2"},
    ],
)
def test_other_changes_keep_the_hash(change: dict[str, Any]) -> None:
    assert config_hash(spec_of(change)) == config_hash(spec_of())


def test_the_pod_template_carries_the_config_hash() -> None:
    spec = spec_of({"engine": {"queueLimit": 3}})
    deployment = build_deployment(OWNER, spec, replicas_owned_elsewhere=False)

    assert deployment is not None
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[names.CONFIG_HASH_ANNOTATION] == config_hash(spec)
