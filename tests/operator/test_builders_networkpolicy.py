"""NetworkPolicies: engine port open to clients and the operator's pods in the operator's
namespace; Redis only to its engine."""

from typing import Any

import pytest
from operator_samples import OPERATOR_NAMESPACE, OWNER, spec_of

from novel_operator.builders.networkpolicy import (
    build_engine_network_policy,
    build_redis_network_policy,
)

ENGINE_PODS = {"app.kubernetes.io/name": "novel-engine", "app.kubernetes.io/instance": "demo"}
ON = {"networkPolicy": {"enabled": True}}
MANAGED = {"cache": {"l2": {"mode": "managed"}}}


@pytest.mark.parametrize("data", [{}, MANAGED], ids=["plain", "managed-redis"])
def test_no_policies_by_default(data: dict[str, Any]) -> None:
    spec = spec_of(data)

    assert build_engine_network_policy(OWNER, spec, OPERATOR_NAMESPACE) is None
    assert build_redis_network_policy(OWNER, spec) is None


def test_engine_policy_opens_only_the_engine_port() -> None:
    policy = build_engine_network_policy(OWNER, spec_of(ON), OPERATOR_NAMESPACE)

    assert policy is not None
    assert policy["spec"] == {
        "podSelector": {"matchLabels": ENGINE_PODS},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}],
    }


def restricted_policy(clients: list[dict[str, Any]], operator_namespace: str) -> dict[str, Any]:
    spec = spec_of({"networkPolicy": {"enabled": True, "allowedClients": clients}})
    policy = build_engine_network_policy(OWNER, spec, operator_namespace)
    assert policy is not None
    return policy


def test_restricted_clients_still_let_in_the_operator_pods_of_its_own_namespace_only() -> None:
    clients = [{"namespaceSelector": {"matchLabels": {"team": "story"}}}]

    policy = restricted_policy(clients, "ops")

    assert policy["spec"]["ingress"][0]["from"] == [
        *clients,
        {  # one peer: both selectors must match the same pod
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "novel-engine-operator"}},
        },
    ]


def test_the_operator_peer_follows_the_operator_namespace() -> None:
    first = restricted_policy([], "ops")["spec"]["ingress"][0]["from"][-1]
    second = restricted_policy([], "platform")["spec"]["ingress"][0]["from"][-1]

    assert first["namespaceSelector"] != second["namespaceSelector"]
    assert second["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "platform"}


def test_redis_policy_only_with_managed_redis() -> None:
    assert build_redis_network_policy(OWNER, spec_of(ON)) is None

    policy = build_redis_network_policy(OWNER, spec_of({**ON, **MANAGED}))

    assert policy is not None
    assert policy["metadata"]["name"] == "demo-redis"
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "novel-engine-redis"
    )
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": ENGINE_PODS}}],
            "ports": [{"protocol": "TCP", "port": 6379}],
        }
    ]
