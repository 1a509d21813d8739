"""The managed Redis tier: present only for `l2.mode: managed`, password only by reference."""

from typing import Any

import pytest
from operator_samples import OWNER, containers_of, spec_of

from novel_operator import names
from novel_operator.builders.redis import (
    build_redis_deployment,
    build_redis_secret,
    build_redis_service,
)

MANAGED = {"cache": {"l2": {"mode": "managed", "managed": {"memory": "1Gi"}}}}
EXTERNAL = {
    "cache": {"l2": {"mode": "external", "external": {"urlSecretRef": {"name": "r", "key": "u"}}}}
}


@pytest.mark.parametrize("data", [{}, EXTERNAL], ids=["none", "external"])
def test_no_redis_unless_managed(data: dict[str, Any]) -> None:
    spec = spec_of(data)

    assert build_redis_deployment(OWNER, spec) is None
    assert build_redis_service(OWNER, spec) is None


def test_managed_redis_runs_one_restricted_pod_sized_by_the_spec() -> None:
    deployment = build_redis_deployment(OWNER, spec_of(MANAGED))
    assert deployment is not None
    (container,) = containers_of(deployment)
    args = container["args"]

    assert deployment["metadata"]["name"] == "demo-redis"
    assert deployment["metadata"]["labels"][names.LABEL_NAME] == "novel-engine-redis"
    assert deployment["metadata"]["labels"][names.LABEL_COMPONENT] == "cache"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert args[args.index("--maxmemory") + 1] == str(int(0.8 * 1024**3))
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"
    assert container["resources"]["limits"] == {"memory": "1Gi"}
    assert container["resources"]["requests"]["ephemeral-storage"] == "64Mi"
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["emptyDir"] == {"sizeLimit": "64Mi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_password_is_referenced_from_the_generated_secret() -> None:
    deployment = build_redis_deployment(OWNER, spec_of(MANAGED))
    assert deployment is not None
    (container,) = containers_of(deployment)

    assert container["env"] == [
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "demo-redis-auth", "key": "password"}},
        }
    ]
    assert "$(REDIS_PASSWORD)" in container["args"]


@pytest.mark.parametrize("data", [{}, EXTERNAL], ids=["none", "external"])
def test_no_password_secret_unless_managed(data: dict[str, Any]) -> None:
    assert build_redis_secret(OWNER, spec_of(data)) is None


def test_the_secret_is_built_owned_and_without_any_password() -> None:
    secret = build_redis_secret(OWNER, spec_of(MANAGED))

    assert secret is not None
    assert secret["metadata"]["name"] == names.redis_secret_name("demo")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert secret["type"] == "Opaque"
    # The apply layer adds a generated password when it creates the Secret.
    assert "data" not in secret
    assert "stringData" not in secret


def test_the_redis_service_selects_only_this_instances_redis() -> None:
    service = build_redis_service(OWNER, spec_of(MANAGED))

    assert service is not None
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "novel-engine-redis",
        "app.kubernetes.io/instance": "demo",
    }
    assert service["spec"]["ports"][0]["port"] == 6379


def test_managed_redis_follows_the_pod_placement_and_pull_secrets() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    spec = spec_of(
        {
            **MANAGED,
            "imagePullSecrets": ["registry"],
            "pod": {
                "nodeSelector": {"pool": "cache"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "affinity": affinity,
                "priorityClassName": "engines",
            },
        }
    )
    deployment = build_redis_deployment(OWNER, spec)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]

    assert pod["nodeSelector"] == {"pool": "cache"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["affinity"] == affinity
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert "priorityClassName" not in pod  # the engines' priority, not the cache's


def test_managed_redis_without_placement_sets_none() -> None:
    deployment = build_redis_deployment(OWNER, spec_of(MANAGED))
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]

    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & pod.keys()
