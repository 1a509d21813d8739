"""The operator's RBAC rules cover what it does, and nothing is granted twice."""

from novel_operator import names
from novel_operator.builders import CHILD_KINDS
from novel_operator.rbac import CHILD_RESOURCES, MANAGE, RBAC_RULES, api_group


def allowed(group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in RBAC_RULES
        if group in rule.api_groups and resource in rule.resources
        for verb in rule.verbs
    }


def test_every_child_kind_can_be_applied_watched_and_deleted() -> None:
    for api_version, kind in CHILD_KINDS:
        assert allowed(api_group(api_version), CHILD_RESOURCES[kind]) >= set(MANAGE), kind


def test_the_custom_resource_and_its_status() -> None:
    assert allowed(names.GROUP, names.PLURAL) >= {"get", "list", "watch", "patch"}
    assert allowed(names.GROUP, f"{names.PLURAL}/status") >= {"get", "patch"}
    assert "delete" not in allowed(names.GROUP, names.PLURAL)


def test_the_scaler_and_the_metric_scrapes() -> None:
    assert allowed("apps", "deployments/scale") == {"patch"}
    assert allowed("apps", "statefulsets/scale") == {"patch"}
    assert allowed("", "pods") == {"list"}  # autoscaler sync: KubeClient.list_pods
    assert allowed("", "events") >= {"create"}


def test_rules_render_as_policy_rules() -> None:
    rendered = [rule.to_k8s() for rule in RBAC_RULES]

    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in rendered)
    assert len({str(rule) for rule in rendered}) == len(rendered)
