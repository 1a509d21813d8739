"""The generated CRD: in sync with the model, structural, described, defaulting like pydantic."""

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from operator_samples import CRD_PATH, all_models, load_sample, spec_of

from novel_operator import names
from novel_operator.crd import generate_crd, render_crd
from novel_operator.model import (
    MIN_VOLUME,
    QUANTITY_CEILING,
    QUANTITY_PATTERN,
    NovelEngineSpec,
    QuantityBound,
)

Schema = dict[str, Any]
STRUCTURAL_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def version() -> dict[str, Any]:
    versions: list[dict[str, Any]] = generate_crd()["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def root_schema() -> Schema:
    schema: Schema = version()["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path (`.spec.cache`, `.spec.pod.tolerations[]`, ...)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Structural defaulting as the apiserver does it: fill absent fields, then descend."""
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for name, child in schema["properties"].items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(child, result[name])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def test_the_crd_file_is_generated_from_the_current_model() -> None:
    assert CRD_PATH.read_text() == render_crd(), "stale CRD: run `make crds`"


def test_names_subresources_and_printer_columns() -> None:
    crd = generate_crd()
    served = version()

    assert crd["metadata"]["name"] == "novelengines.novelengine.io"
    assert crd["spec"]["group"] == names.GROUP
    assert crd["spec"]["names"]["kind"] == "NovelEngine"
    assert crd["spec"]["names"]["shortNames"] == ["ne"]
    assert served["name"] == "v1alpha1"
    assert served["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [column["name"] for column in served["additionalPrinterColumns"]]
    assert columns[:5] == ["Ready", "Replicas", "Desired", "L2", "Age"]


def test_the_schema_is_structural() -> None:
    for path, node in nodes(root_schema()):
        assert not {"$ref", "$defs", "title", "allOf", "oneOf"} & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        assert {"type": "null"} not in node.get("anyOf", []), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        else:
            assert node.get("type") in STRUCTURAL_TYPES, path


def test_every_field_has_explain_text() -> None:
    for path, node in nodes(root_schema()):
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}")):
            assert node.get("description", "").strip(), f"{path} has no description"
            assert "\n" not in node["description"], path


def test_explain_text_of_an_object_field_carries_what_its_model_says() -> None:
    """`kubectl explain novelengine.spec.X` shows only X's description: an object's docstring
    (what it does, when it applies) must reach it, after the field's own words."""
    described = dict(nodes(root_schema()))
    budget = described[".spec.disruptionBudget"]["description"]
    assert budget.startswith("PodDisruptionBudget for voluntary disruptions (node drains).")
    assert "only created when at least 2 replicas are wanted" in budget
    external = described[".spec.cache.l2.external"]["description"]
    assert external.startswith("Settings for `mode: external` (required there). A Redis the")
    assert "Secrets" in external
    # The model's text alone where it begins with the field's: nothing said twice.
    assert described[".spec.autoscaling"]["description"].count("Replica autoscaling") == 1


def test_every_cross_field_and_transition_rule_is_in_the_crd_with_a_field_path() -> None:
    in_crd = {
        (rule["rule"], rule["message"], rule["fieldPath"])
        for _, node in nodes(root_schema())
        for rule in node.get("x-kubernetes-validations", [])
        if "fieldPath" in rule  # (a field's own bounds, below, name no other field)
    }
    in_model = {
        (rule.cel, rule.message, rule.field_path)
        for model in all_models()
        for rule in (*model.cross_field_rules, *model.transition_rules)
    }

    assert in_model
    assert in_crd == in_model


def test_every_quantity_is_bounded_in_the_crd_as_in_the_model() -> None:
    quantities = {
        path: [(rule["rule"], rule["message"]) for rule in node.get("x-kubernetes-validations", [])]
        for path, node in nodes(root_schema())
        if node.get("pattern") == QUANTITY_PATTERN
    }
    below = QuantityBound(QUANTITY_CEILING)
    at_least = QuantityBound(MIN_VOLUME, at_least=True)

    assert len(quantities) > 5
    assert all((below.cel, below.message) in rules for rules in quantities.values())
    assert (at_least.cel, at_least.message) in quantities[".spec.cache.l3.size"]
    assert len(quantities[".spec.resources.limits.memory"]) == 1


def test_data_under_cel_rules_is_bounded() -> None:
    # Unbounded strings or lists make the apiserver reject a rule as too costly.
    for path, ruled in nodes(root_schema()):
        if "x-kubernetes-validations" not in ruled:
            continue
        for inner_path, node in nodes(ruled, path):
            kind = node.get("type")
            if kind == "string" or node.get("x-kubernetes-int-or-string"):
                assert "maxLength" in node or "enum" in node, inner_path
            if kind == "array":
                assert "maxItems" in node, inner_path
            if kind == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, inner_path


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"replicas": 3, "cache": {"l2": {"mode": "managed"}}},
        {"cache": {"l3": {"persistence": "pvc", "size": "5Gi"}}, "service": {"port": 9000}},
        {"pod": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}},
        {"autoscaling": {"enabled": True, "engine": {"inFlightPerPod": 4}, "behavior": {}}},
    ],
    ids=["empty", "managed-redis", "pvc", "tolerations", "behavior"],
)
def test_apiserver_defaulting_matches_pydantic(spec: dict[str, Any]) -> None:
    spec_schema = root_schema()["properties"]["spec"]

    defaulted = apply_defaults(spec_schema, spec)

    assert defaulted == NovelEngineSpec.model_validate(spec).to_k8s()


def test_the_sample_defaults_the_same_in_the_crd_and_the_model() -> None:
    spec = load_sample()["spec"]
    spec_schema = root_schema()["properties"]["spec"]

    assert apply_defaults(spec_schema, spec) == spec_of(spec).to_k8s()


def test_an_omitted_spec_is_defaulted_whole() -> None:
    assert root_schema()["properties"]["spec"]["default"] == {}


def test_the_rendered_file_is_one_yaml_document() -> None:
    assert yaml.safe_load(render_crd()) == generate_crd()
