"""NetworkPolicies: clients reach only the engine port; the managed Redis only from its engine."""

from typing import Any

from novel_operator import names
from novel_operator.builders.common import Manifest, engine_manifest, redis_manifest
from novel_operator.model import NovelEngineSpec, Owner

API_VERSION = "networking.k8s.io/v1"
# The operator's pods, in any namespace: they scrape the engine's /metrics.
OPERATOR_PEER: dict[str, Any] = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {names.LABEL_NAME: names.OPERATOR_APP}},
}


def _ingress_only(pods: dict[str, str], rule: dict[str, Any]) -> dict[str, Any]:
    # Egress stays open: the engine needs DNS and possibly an external Redis.
    return {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": [rule]}


def build_engine_network_policy(owner: Owner, spec: NovelEngineSpec) -> Manifest | None:
    """Engine pods accept traffic on the engine port only: from the allowed clients (any client
    when unset) and the operator. None when NetworkPolicies are disabled."""
    policy = spec.network_policy
    if not policy.enabled:
        return None
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": names.ENGINE_PORT}]}
    if policy.allowed_clients is not None:
        rule["from"] = [*policy.allowed_clients, OPERATOR_PEER]
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
