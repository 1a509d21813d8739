"""The engine Deployment / StatefulSet: shape, security, probes, wiring into the engine process."""

from pathlib import Path
from typing import Any

import pytest
from operator_samples import OWNER, containers_of, spec_of

from novel_engine.config import load_settings
from novel_operator import names
from novel_operator.builders.common import owner_reference
from novel_operator.builders.configmap import build_configmap
from novel_operator.builders.workload import build_deployment, build_statefulset

PVC = {"cache": {"l3": {"persistence": "pvc", "size": "5Gi", "storageClassName": "fast"}}}


def workload(data: dict[str, Any] | None = None, *, elsewhere: bool = False) -> dict[str, Any]:
    spec = spec_of(data)
    built = build_deployment(OWNER, spec, replicas_owned_elsewhere=elsewhere) or build_statefulset(
        OWNER, spec, replicas_owned_elsewhere=elsewhere
    )
    assert built is not None
    return built


def engine_container(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return containers_of(workload(data))[0]


def pod_spec(data: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = workload(data)["spec"]["template"]["spec"]
    return spec


def settings_in_pod(data: dict[str, Any], tmp_path: Path, secrets: dict[str, str]) -> Any:
    """Start-up settings of the engine as the pod runs it: its args, its config file and its
    environment (Secret values filled in from `secrets`, keyed by secret/key)."""
    container = engine_container(data)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(build_configmap(OWNER, spec_of(data))["data"]["config.yaml"])
    args = [str(config_file) if arg == names.CONFIG_PATH else arg for arg in container["args"]]
    environ = {}
    for variable in container.get("env", []):
        ref = variable["valueFrom"]["secretKeyRef"]
        environ[variable["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
    return load_settings(args, environ=environ)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({}, "Deployment"),
        ({"cache": {"l3": {"enabled": False}}}, "Deployment"),
        (PVC, "StatefulSet"),
    ],
)
def test_a_statefulset_only_when_each_replica_needs_a_claim(
    data: dict[str, Any], kind: str
) -> None:
    spec = spec_of(data)
    deployment = build_deployment(OWNER, spec, replicas_owned_elsewhere=False)
    statefulset = build_statefulset(OWNER, spec, replicas_owned_elsewhere=False)

    built = [m["kind"] for m in (deployment, statefulset) if m is not None]
    assert built == [kind]


@pytest.mark.parametrize("data", [{}, PVC], ids=["deployment", "statefulset"])
def test_name_selector_labels_and_owner(data: dict[str, Any]) -> None:
    manifest = workload(data)
    selector = manifest["spec"]["selector"]["matchLabels"]

    assert manifest["metadata"]["name"] == "demo"
    assert manifest["metadata"]["ownerReferences"] == [owner_reference(OWNER)]
    assert selector == {
        "app.kubernetes.io/name": "novel-engine",
        "app.kubernetes.io/instance": "demo",
    }
    assert selector.items() <= manifest["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("data", [{}, PVC], ids=["deployment", "statefulset"])
def test_replicas_are_left_out_while_someone_else_owns_them(data: dict[str, Any]) -> None:
    assert workload({**data, "replicas": 3})["spec"]["replicas"] == 3
    assert "replicas" not in workload({**data, "replicas": 3}, elsewhere=True)["spec"]


def test_user_pod_labels_cannot_replace_the_selector_labels() -> None:
    labels = workload({"pod": {"labels": {"app.kubernetes.io/instance": "other", "team": "x"}}})[
        "spec"
    ]["template"]["metadata"]["labels"]

    assert labels["app.kubernetes.io/instance"] == "demo"
    assert labels["team"] == "x"


def test_the_pod_runs_restricted() -> None:
    pod = pod_spec()
    container = engine_container()

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    # Service links would inject NOVEL_ENGINE_* variables that the engine reads as settings.
    assert pod["enableServiceLinks"] is False


def test_probes_and_a_grace_period_above_the_drain_timeout() -> None:
    container = engine_container({"engine": {"drainTimeoutSeconds": 45}})
    pod = pod_spec({"engine": {"drainTimeoutSeconds": 45}})

    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown_delay = int(container["args"][container["args"].index("--shutdown-delay") + 1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown_delay + 45


def test_the_engine_process_starts_with_the_cluster_wiring(tmp_path: Path) -> None:
    settings = settings_in_pod({"content": {"configMapName": "library"}}, tmp_path, {})

    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert settings.read_only_content is True
    assert str(settings.data_dir) == names.DATA_DIR
    assert [str(d) for d in settings.content_dirs] == [names.CONTENT_DIR]
    assert settings.drain_timeout == 20
    assert settings.shutdown_delay > 0
    assert settings.redis_url is None


def test_managed_redis_is_wired_by_url_and_password_secret(tmp_path: Path) -> None:
    data = {"cache": {"l2": {"mode": "managed"}}}
    settings = settings_in_pod(data, tmp_path, {"demo-redis-auth/password": "s3cret"})

    assert settings.redis_url == "redis://demo-redis.stories.svc:6379/0"
    assert settings.redis_password.get_secret_value() == "s3cret"
    assert "s3cret" not in str(workload(data))


def test_external_redis_comes_from_the_users_secrets(tmp_path: Path) -> None:
    data = {
        "cache": {
            "l2": {
                "mode": "external",
                "external": {
                    "urlSecretRef": {"name": "redis", "key": "url"},
                    "passwordSecretRef": {"name": "redis", "key": "password"},
                },
            }
        }
    }
    secrets = {"redis/url": "redis://cache.example:6379/2", "redis/password": "pw"}

    settings = settings_in_pod(data, tmp_path, secrets)

    assert settings.redis_url == "redis://cache.example:6379/2"
    assert settings.redis_password.get_secret_value() == "pw"


def test_without_l2_no_secret_is_referenced() -> None:
    assert "env" not in engine_container()


def test_volumes_content_read_only_data_writable() -> None:
    container = engine_container({"content": {"configMapName": "library"}})
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    volumes = {
        volume["name"]: volume
        for volume in pod_spec({"content": {"configMapName": "x"}})["volumes"]
    }

    assert mounts[names.CONTENT_DIR]["readOnly"] is True
    assert mounts[names.CONFIG_PATH]["readOnly"] is True
    assert not mounts[names.DATA_DIR].get("readOnly")
    assert not mounts["/tmp"].get("readOnly")
    assert volumes["content"]["configMap"] == {"name": "x"}
    assert volumes["config"]["configMap"] == {"name": "demo-config"}
    assert volumes["data"] == {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}


@pytest.mark.parametrize(
    ("data", "data_limit", "tmp_limit", "requested"),
    [
        ({}, "1Gi", "64Mi", "1088Mi"),
        (
            {"cache": {"l3": {"size": "300Mi"}}, "pod": {"tmpSizeLimit": "1Gi"}},
            "300Mi",
            "1Gi",
            "1324Mi",
        ),
        ({"cache": {"l3": {"size": "1500M"}}}, "1500M", "64Mi", "1567108864"),
        (PVC, None, "64Mi", "64Mi"),  # the data volume is a claim, not ephemeral storage
    ],
    ids=["defaults", "sizes-set", "decimal-size", "pvc"],
)
def test_emptydirs_have_size_limits_and_the_pod_requests_them(
    data: dict[str, Any], data_limit: str | None, tmp_limit: str, requested: str
) -> None:
    volumes = {volume["name"]: volume for volume in pod_spec(data)["volumes"]}
    resources = engine_container(data)["resources"]

    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": tmp_limit}
    if data_limit is None:
        assert "data" not in volumes
    else:
        assert volumes["data"]["emptyDir"] == {"sizeLimit": data_limit}
    assert resources["requests"]["ephemeral-storage"] == requested
    assert "ephemeral-storage" not in resources["limits"]


def test_no_content_volume_without_content() -> None:
    assert "content" not in {volume["name"] for volume in pod_spec()["volumes"]}


def test_statefulset_claims_one_volume_per_replica() -> None:
    statefulset = workload(PVC)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]

    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert "data" not in {volume["name"] for volume in pod_spec(PVC)["volumes"]}
    assert statefulset["spec"]["serviceName"] == "demo"


def test_pod_overrides_reach_the_pod() -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "story", "effect": "NoSchedule"}
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    pod = pod_spec(
        {
            "imagePullSecrets": ["regcred"],
            "pod": {
                "nodeSelector": {"pool": "story"},
                "tolerations": [toleration],
                "affinity": affinity,
                "priorityClassName": "high",
            },
        }
    )

    assert pod["nodeSelector"] == {"pool": "story"}
    assert pod["tolerations"] == [toleration]
    assert pod["affinity"] == affinity
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_user_pod_annotations_sit_beside_the_config_hash() -> None:
    template = workload({"pod": {"annotations": {"note": "x"}}})["spec"]["template"]

    assert template["metadata"]["annotations"]["note"] == "x"
    assert names.CONFIG_HASH_ANNOTATION in template["metadata"]["annotations"]


def test_resources_come_from_the_spec() -> None:
    container = engine_container({"resources": {"limits": {"cpu": 2, "memory": "1Gi"}}})

    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1088Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
