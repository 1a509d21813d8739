"""NetworkPolicies: clients reach only the engine port; the managed Redis only from its engine."""

from typing import Any

from novel_operator import names
from novel_operator.builders.common import Manifest, engine_manifest, redis_manifest
from novel_operator.model import NovelEngineSpec, Owner

API_VERSION = "networking.k8s.io/v1"
#: Set by the apiserver on every namespace (1.22+); nobody can give another namespace this name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def operator_peer(operator_namespace: str) -> dict[str, Any]:
    """The operator's pods (they scrape the engine's /metrics): pods with the operator's name
    label in the operator's namespace only. Both selectors are in one peer, so they must both
    match: a pod given that label in any other namespace is not let in."""
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}},
        "podSelector": {"matchLabels": {names.LABEL_NAME: names.OPERATOR_APP}},
    }


def _ingress_only(pods: dict[str, str], rule: dict[str, Any]) -> dict[str, Any]:
    # Egress stays open: the engine needs DNS and possibly an external Redis.
    return {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": [rule]}


def build_engine_network_policy(
    owner: Owner, spec: NovelEngineSpec, operator_namespace: str
) -> Manifest | None:
    """Engine pods accept traffic on the engine port only: from the allowed clients (any client
    when unset) and the operator's pods in `operator_namespace`. None when NetworkPolicies are
    disabled."""
    policy = spec.network_policy
    if not policy.enabled:
        return None
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": names.ENGINE_PORT}]}
    if policy.allowed_clients is not None:
        rule["from"] = [*policy.allowed_clients, operator_peer(operator_namespace)]
    pods = names.engine_selector(owner.name)
    return engine_manifest(API_VERSION, "NetworkPolicy", owner, spec=_ingress_only(pods, rule))


def build_redis_network_policy(owner: Owner, spec: NovelEngineSpec) -> Manifest | None:
    """The managed Redis accepts only this instance's engine pods. None when NetworkPolicies are
    disabled or L2 is not managed."""
    if not spec.network_policy.enabled or spec.cache.l2.mode != "managed":
        return None
    rule = {
        "from": [{"podSelector": {"matchLabels": names.engine_selector(owner.name)}}],
        "ports": [{"protocol": "TCP", "port": names.REDIS_PORT}],
    }
    pods = names.redis_selector(owner.name)
    return redis_manifest(API_VERSION, "NetworkPolicy", owner, spec=_ingress_only(pods, rule))
