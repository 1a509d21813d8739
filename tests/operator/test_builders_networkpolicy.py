"""NetworkPolicies: engine port open to clients and the operator; Redis only to its engine."""

from typing import Any

import pytest
from operator_samples import OWNER, spec_of

from novel_operator.builders.networkpolicy import (
    OPERATOR_PEER,
    build_engine_network_policy,
    build_redis_network_policy,
)

ENGINE_PODS = {"app.kubernetes.io/name": "novel-engine", "app.kubernetes.io/instance": "demo"}
ON = {"networkPolicy": {"enabled": True}}
MANAGED = {"cache": {"l2": {"mode": "managed"}}}


@pytest.mark.parametrize("data", [{}, MANAGED], ids=["plain", "managed-redis"])
def test_no_policies_by_default(data: dict[str, Any]) -> None:
    spec = spec_of(data)

    assert build_engine_network_policy(OWNER, spec) is None
    assert build_redis_network_policy(OWNER, spec) is None


def test_engine_policy_opens_only_the_engine_port() -> None:
    policy = build_engine_network_policy(OWNER, spec_of(ON))

    assert policy is not None
    assert policy["spec"] == {
        "podSelector": {"matchLabels": ENGINE_PODS},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}],
    }


def test_restricted_clients_still_let_the_operator_scrape() -> None:
    clients = [{"namespaceSelector": {"matchLabels": {"team": "story"}}}]
    policy = build_engine_network_policy(
        OWNER, spec_of({"networkPolicy": {"enabled": True, "allowedClients": clients}})
    )

    assert policy is not None
    assert policy["spec"]["ingress"][0]["from"] == [*clients, OPERATOR_PEER]


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
