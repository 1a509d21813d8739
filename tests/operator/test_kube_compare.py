"""The apply layer's decision "would a server-side apply change this object?"."""

import copy
from typing import Any

import pytest

from novel_operator.kube.compare import (
    apply_needed,
    first_difference,
    renumbered_port_repairs,
    replicas_handover,
    replicas_handover_needed,
    unwanted_owned_fields,
)

MANAGER = "novel-engine-operator"


def deployment(env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "engine",
        "image": "novel-engine/engine:0.1.0",
        "args": ["--port", "8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "resources": {"limits": {"memory": "1024Mi", "cpu": "0.5"}},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    }
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "a"}, "annotations": {}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [container]}}},
    }


def as_served(desired: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns for `desired`: defaults filled in, quantities canonical,
    empty maps dropped, plus managedFields for our apply."""
    live = copy.deepcopy(desired)
    live["metadata"].pop("annotations")
    live["metadata"]["uid"] = "u1"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"limits": {"memory": "1Gi", "cpu": "500m"}}
    container["ports"][0]["protocol"] = "TCP"
    container["imagePullPolicy"] = "IfNotPresent"
    container_fields: dict[str, Any] = {
        ".": {},
        "f:name": {},
        "f:image": {},
        "f:args": {},
        "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:name": {}}},
        "f:resources": {"f:limits": {"f:memory": {}, "f:cpu": {}}},
    }
    for item in desired["spec"]["template"]["spec"]["containers"][0].get("env", []):
        container_fields.setdefault("f:env", {})[f'k:{{"name":"{item["name"]}"}}'] = {
            ".": {},
            "f:name": {},
            "f:value": {},
        }
    live["metadata"]["managedFields"] = [
        {
            "manager": MANAGER,
            "operation": "Apply",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {
                        "f:spec": {"f:containers": {'k:{"name":"engine"}': container_fields}}
                    },
                },
            },
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "subresource": "status",
            "fieldsV1": {"f:status": {"f:replicas": {}}},
        },
    ]
    return live


def test_served_object_equal_to_desired_needs_no_apply() -> None:
    desired = deployment(env=[{"name": "A", "value": "1"}])
    assert apply_needed(desired, as_served(desired), MANAGER) is None


def test_changed_value_needs_apply_and_names_the_path() -> None:
    desired = deployment()
    live = as_served(desired)
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "novel-engine/engine:0.2.0"
    reason = apply_needed(desired, live, MANAGER)
    assert reason == ".spec.template.spec.containers[name=engine].image differs"


def test_hand_edited_value_needs_apply() -> None:
    desired = deployment()
    live = as_served(desired)
    live["spec"]["replicas"] = 5
    assert apply_needed(desired, live, MANAGER) == ".spec.replicas differs"


def test_deleted_label_needs_apply() -> None:
    desired = deployment()
    live = as_served(desired)
    del live["metadata"]["labels"]["app"]
    assert apply_needed(desired, live, MANAGER) == ".metadata.labels.app differs"


def test_field_we_applied_but_no_longer_want_needs_apply() -> None:
    before = deployment(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    live = as_served(before)
    after = deployment(env=[{"name": "A", "value": "1"}])
    # Every value `after` wants is there, so only managedFields reveal the extra env var.
    assert first_difference(after, live) is None
    assert apply_needed(after, live, MANAGER) == (
        '.spec.template.spec.containers[{"name":"engine"}].env[{"name":"B"}] is no longer wanted'
    )


def test_items_added_by_other_managers_are_not_ours_to_remove() -> None:
    desired = deployment(env=[{"name": "A", "value": "1"}])
    live = as_served(desired)
    containers = live["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "sidecar", "image": "proxy"})
    containers[0]["env"].append({"name": "INJECTED", "value": "x"})
    live["metadata"]["labels"]["team"] = "narrative"
    assert apply_needed(desired, live, MANAGER) is None


def test_fields_owned_by_other_managers_are_not_counted() -> None:
    desired = deployment()
    live = as_served(desired)
    live["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:paused": {}}}}
    )
    assert unwanted_owned_fields(live["metadata"]["managedFields"], MANAGER, desired) == []


@pytest.mark.parametrize(
    ("desired", "live", "equal"),
    [
        ("1024Mi", "1Gi", True),
        ("0.5", "500m", True),
        ("1", "1000m", True),
        ("1Gi", "2Gi", False),
    ],
)
def test_resource_quantities_compare_by_amount(desired: str, live: str, equal: bool) -> None:
    want = {"resources": {"limits": {"memory": desired}}}
    have = {"resources": {"limits": {"memory": live}}}
    assert (first_difference(want, have) is None) is equal


def test_quantity_syntax_elsewhere_compares_as_text() -> None:
    assert first_difference({"data": {"size": "1024Mi"}}, {"data": {"size": "1Gi"}}) == ".data.size"


@pytest.mark.parametrize("empty", ["", {}, [], None])
def test_empty_values_match_a_field_the_server_omitted(empty: Any) -> None:
    assert first_difference({"spec": {"x": empty}}, {"spec": {}}) is None


@pytest.mark.parametrize("zero", [False, 0, 0.0])
def test_a_false_or_zero_removed_from_the_live_object_is_a_difference(zero: Any) -> None:
    assert first_difference({"spec": {"x": zero}}, {"spec": {}}) == ".spec.x"
    assert first_difference({"spec": {"x": zero}}, {"spec": {"x": zero}}) is None


def test_booleans_and_numbers_are_not_confused() -> None:
    assert first_difference({"x": True}, {"x": 1}) == ".x"
    assert first_difference({"x": 1}, {"x": "1"}) == ".x"
    assert first_difference({"x": 2}, {"x": 2.0}) is None


def test_unnamed_lists_compare_by_position_and_length() -> None:
    want = {"args": ["--a", "--b"]}
    assert first_difference(want, {"args": ["--a", "--b"]}) is None
    assert first_difference(want, {"args": ["--b", "--a"]}) == ".args[0]"
    assert first_difference(want, {"args": ["--a", "--b", "--c"]}) == ".args[]"


def test_missing_named_item_is_reported_by_name() -> None:
    want = {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}
    have = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    assert first_difference(want, have) == ".ports[name=metrics]"


def test_keyed_item_matches_when_a_defaulted_key_field_is_absent() -> None:
    fields = {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}}
    managed = [{"manager": MANAGER, "operation": "Apply", "fieldsV1": fields}]
    assert unwanted_owned_fields(managed, MANAGER, {"ports": [{"port": 80}]}) == []
    assert unwanted_owned_fields(managed, MANAGER, {"ports": [{"port": 81}]}) == [
        '.ports[{"port":80,"protocol":"TCP"}]'
    ]


def test_set_and_index_entries_are_checked() -> None:
    fields = {"f:finalizers": {'v:"a"': {}}, "f:items": {"i:1": {"f:x": {}}}}
    managed = [{"manager": MANAGER, "operation": "Apply", "fieldsV1": fields}]
    wanted = {"finalizers": ["a"], "items": [{}, {"x": 1}]}
    assert unwanted_owned_fields(managed, MANAGER, wanted) == []
    assert unwanted_owned_fields(managed, MANAGER, {"finalizers": [], "items": [{}]}) == [
        '.finalizers["a"]',
        ".items[1]",
    ]


def without_replicas(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` as built once an autoscaler owns the replicas."""
    stripped = copy.deepcopy(manifest)
    del stripped["spec"]["replicas"]
    return stripped


def test_replicas_we_applied_and_no_longer_set_are_handed_over() -> None:
    desired = deployment()
    live = as_served(desired)
    assert replicas_handover_needed(without_replicas(desired), live, MANAGER)
    assert replicas_handover(live) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns"},
        "spec": {"replicas": 2},
    }


def test_replicas_still_set_need_no_handover() -> None:
    desired = deployment()
    assert not replicas_handover_needed(desired, as_served(desired), MANAGER)


def test_replicas_owned_by_someone_else_need_no_handover() -> None:
    """After the handover (or once an autoscaler scaled), other managers own the replicas:
    nothing is handed over again and the converged workload needs no apply."""
    desired = deployment()
    live = as_served(desired)
    ours, status = live["metadata"]["managedFields"]
    del ours["fieldsV1"]["f:spec"]["f:replicas"]
    handover = {
        "manager": "novel-engine-operator-replicas",
        "operation": "Apply",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    scaled = {
        "manager": MANAGER,
        "operation": "Update",
        "subresource": "scale",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    for other in (handover, scaled):
        live["metadata"]["managedFields"] = [ours, status, other]
        assert not replicas_handover_needed(without_replicas(desired), live, MANAGER)
        assert apply_needed(without_replicas(desired), live, MANAGER) is None


def service(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "spec": {"ports": ports}}


HTTP = {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}


def test_a_port_renumbered_by_hand_is_put_back_by_a_tested_replacement() -> None:
    renumbered = {**HTTP, "port": 1234}
    by_hand = {"name": "debug", "port": 9000, "targetPort": 9000, "protocol": "TCP"}
    live = service([by_hand, renumbered])
    assert renumbered_port_repairs(service([HTTP]), live) == [
        {"op": "test", "path": "/spec/ports/1", "value": renumbered},
        {"op": "replace", "path": "/spec/ports/1", "value": HTTP},
    ]


def test_ports_the_apply_can_match_need_no_repair() -> None:
    assert renumbered_port_repairs(service([HTTP]), service([HTTP])) == []
    renamed = {**HTTP, "name": "web"}  # same number: the apply renames it back
    assert renumbered_port_repairs(service([HTTP]), service([renamed])) == []
    assert renumbered_port_repairs(service([HTTP]), service([])) == []


def test_a_protocol_changed_by_hand_counts_as_another_port() -> None:
    udp = {**HTTP, "protocol": "UDP"}
    assert [op["op"] for op in renumbered_port_repairs(service([HTTP]), service([udp]))] == [
        "test",
        "replace",
    ]


def test_container_ports_are_found_in_the_container_of_the_same_name() -> None:
    wanted = {"name": "http", "containerPort": 8080}
    desired = {
        "spec": {"template": {"spec": {"containers": [{"name": "engine", "ports": [wanted]}]}}}
    }
    sidecar = {"name": "sidecar", "ports": [{"name": "http", "containerPort": 15000}]}
    engine = {"name": "engine", "ports": [{"name": "http", "containerPort": 9999}]}
    live = {"spec": {"template": {"spec": {"containers": [sidecar, engine]}}}}
    path = "/spec/template/spec/containers/1/ports/0"
    assert renumbered_port_repairs(desired, live) == [
        {"op": "test", "path": path, "value": engine["ports"][0]},
        {"op": "replace", "path": path, "value": wanted},
    ]
