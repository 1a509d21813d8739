"""The operator's RBAC rules: no wildcard, every rule names the code that uses it, children are
readable, nothing is granted twice. (That each granted verb is really used, and enough, is
proven on the real control plane: tests/integration/operator_tests/test_operator_rbac.py.)"""

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from novel_operator import names
from novel_operator.builders import CHILD_KINDS
from novel_operator.builders.common import owner_reference
from novel_operator.model import Owner
from novel_operator.rbac import RBAC_RULES, PolicyRule

#: RBAC speaks resources, manifests speak kinds.
RESOURCE_OF_KIND = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
}


def grants(rules: Iterable[PolicyRule]) -> list[tuple[str, str, str]]:
    """Each (API group, resource, verb) that ``rules`` grant, in order."""
    return [
        (group, resource, verb)
        for rule in rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    ]


def allowed(group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in RBAC_RULES
        if group in rule.api_groups and resource in rule.resources
        for verb in rule.verbs
    }


def resolve(path: str) -> Callable[..., Any]:
    module_name, _, qualified_name = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for attribute in qualified_name.split("."):
        found = getattr(found, attribute)
    assert callable(found), path
    return found  # type: ignore[no-any-return]


@pytest.mark.parametrize("rule", RBAC_RULES, ids=lambda rule: ",".join(rule.resources))
def test_every_rule_names_existing_code_that_uses_it(rule: PolicyRule) -> None:
    assert rule.used_by
    for path in rule.used_by:
        resolve(path)


def test_a_name_that_does_not_exist_is_caught() -> None:
    with pytest.raises(AttributeError):
        resolve("novel_operator.kube.client:KubeClient.no_such_method")


def test_no_wildcards_and_no_update() -> None:
    for rule in RBAC_RULES:
        assert "*" not in (*rule.api_groups, *rule.resources, *rule.verbs), rule
        if not rule.admission_only:
            assert "update" not in rule.verbs, rule


def test_the_grants_only_admission_checks_go_with_the_blocking_owner_reference() -> None:
    """OwnerReferencesPermissionEnforcement: setting blockOwnerDeletion takes `update` on the
    owner's finalizers; changing a ConfigMap's ownerReferences, `delete` on it."""
    admission_only = grants(rule for rule in RBAC_RULES if rule.admission_only)
    assert set(admission_only) == {
        (names.GROUP, f"{names.PLURAL}/finalizers", "update"),
        ("", "configmaps", "delete"),
    }
    owner = Owner(name="tale", namespace="stories", uid="u-1")
    assert owner_reference(owner)["blockOwnerDeletion"] is True


def test_every_child_kind_is_read_and_watched() -> None:
    for api_version, kind in CHILD_KINDS:
        group = api_version.rpartition("/")[0]
        assert allowed(group, RESOURCE_OF_KIND[kind]) >= {"get", "list", "watch"}, kind


def test_the_custom_resource_is_only_read_and_its_status_only_patched() -> None:
    assert allowed(names.GROUP, names.PLURAL) == {"get", "list", "watch"}
    assert allowed(names.GROUP, f"{names.PLURAL}/status") == {"patch"}


def test_configmaps_are_never_deleted_by_a_request() -> None:
    assert allowed("", "configmaps") == {"get", "list", "watch", "create", "patch", "delete"}
    (deleting,) = [r for r in RBAC_RULES if "configmaps" in r.resources and "delete" in r.verbs]
    assert deleting.admission_only


def test_the_scaler_and_the_metric_scrapes() -> None:
    assert allowed("apps", "deployments/scale") == {"patch"}
    assert allowed("apps", "statefulsets/scale") == {"patch"}
    assert allowed("", "pods") == {"list"}  # autoscaler sync: KubeClient.list_pods
    assert allowed("", "events") >= {"create"}


def test_rules_render_as_policy_rules_and_grant_nothing_twice() -> None:
    rendered = [rule.to_k8s() for rule in RBAC_RULES]
    granted = grants(RBAC_RULES)

    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in rendered)
    assert len(granted) == len(set(granted))
