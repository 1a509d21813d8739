"""The NovelEngine spec model: defaults, field names, validation and its Kubernetes field paths."""

from typing import Any

import pytest
from invalid_specs import INVALID_SPECS, InvalidSpec
from operator_samples import all_models, load_sample, spec_of
from pydantic import ValidationError

import novel_operator
from novel_operator import names
from novel_operator.model import FieldError, NovelEngineStatus, field_errors


def errors(data: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(ValidationError) as caught:
        spec_of(data)
    return field_errors(caught.value)


def error_paths(data: dict[str, Any]) -> list[str]:
    return [error.path for error in errors(data)]


def test_an_empty_spec_gets_the_documented_defaults() -> None:
    spec = spec_of({})

    assert spec.image == f"novel-engine/engine:{novel_operator.__version__}"
    assert spec.replicas == 1
    assert spec.resources.for_container() == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert spec.cache.l2.mode == "none"
    assert (spec.cache.l3.enabled, spec.cache.l3.persistence) == (True, "emptyDir")
    assert spec.autoscaling.enabled is False
    assert (spec.service.type, spec.service.port) == ("ClusterIP", 8080)
    assert spec.network_policy.enabled is False
    assert spec.content is None


def test_kubernetes_field_names_round_trip() -> None:
    data = {"autoscaling": {"targetCPUUtilizationPercentage": 60, "engine": {"inFlightPerPod": 8}}}

    dumped = spec_of(data).to_k8s()

    assert dumped["autoscaling"]["targetCPUUtilizationPercentage"] == 60
    assert dumped["autoscaling"]["engine"] == {"inFlightPerPod": 8}
    assert spec_of(dumped) == spec_of(data)


def test_the_sample_is_a_valid_autoscaled_novelengine() -> None:
    sample = load_sample()

    spec = spec_of(sample["spec"])

    assert (sample["apiVersion"], sample["kind"]) == (names.API_VERSION, names.KIND)
    assert names.instance_name_problem(sample["metadata"]["name"]) is None
    assert spec.autoscaling.enabled
    assert "minReplicas" in sample["spec"]["autoscaling"]
    assert "maxReplicas" in sample["spec"]["autoscaling"]


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_invalid_specs_are_refused_at_the_field_they_name(case: InvalidSpec) -> None:
    found = errors(case.spec)

    assert [error.path for error in found] == [case.field_path]
    if case.rule_message is not None:
        assert found[0].message == case.rule_message


def test_every_cross_field_rule_refuses_one_of_the_invalid_specs() -> None:
    rules = {rule.message for model in all_models() for rule in model.cross_field_rules}

    assert rules
    assert rules == {case.rule_message for case in INVALID_SPECS} - {None}


def test_a_memory_request_alone_gets_a_limit_at_least_as_large() -> None:
    resources = spec_of({"resources": {"requests": {"memory": "1Gi"}}}).resources

    assert resources.for_container()["limits"] == {"memory": "1Gi"}
    explicit = spec_of({"resources": {"limits": {"memory": "2Gi", "cpu": "1"}}}).resources
    assert explicit.for_container()["limits"] == {"memory": "2Gi", "cpu": "1"}


def test_zero_replicas_is_allowed() -> None:
    assert spec_of({"replicas": 0}).replicas == 0


@pytest.mark.parametrize(
    ("quantity", "stored"), [(2, "2"), ("1.5", "1.5"), ("500m", "500m"), ("64Mi", "64Mi")]
)
def test_quantities_accept_integers_and_kubernetes_suffixes(quantity: object, stored: str) -> None:
    spec = spec_of({"resources": {"requests": {"cpu": quantity}}})

    assert spec.resources.requests.cpu == stored


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cache": {"l1": {"maxBytes": "0.5"}}}, "must be at least 1"),
        ({"cache": {"l3": {"size": "0.0009Gi"}}}, "must be at least 1Mi"),
        (
            {"cache": {"l2": {"mode": "managed", "managed": {"memory": "16M"}}}},
            "must be at least 16Mi",
        ),
        # The apiserver reads 2^63 - 1 and more as 2^63 - 1.
        (
            {"resources": {"limits": {"memory": "9223372036854775807"}}},
            "must be less than 9223372036854775807",
        ),
    ],
)
def test_a_quantity_past_its_bound_is_refused_naming_the_bound(
    spec: dict[str, Any], message: str
) -> None:
    assert [error.message for error in errors(spec)] == [message]


def test_quantity_bounds_are_inclusive() -> None:
    spec = spec_of(
        {
            # (finer than a nano, the apiserver rounds up: this is 1Mi)
            "cache": {"l1": {"maxBytes": "1"}, "l3": {"size": "1048575.9999999999"}},
            "resources": {"limits": {"memory": "9223372036854775806"}},
        }
    )

    assert spec.cache.l3.size == "1048575.9999999999"


def test_fractional_numbers_are_not_quantities() -> None:
    # The apiserver's int-or-string schema refuses a YAML float, so the model does too.
    assert error_paths({"resources": {"requests": {"cpu": 0.5}}}) == ["spec.resources.requests.cpu"]


@pytest.mark.parametrize(
    ("autoscaling", "writer"),
    [
        ({}, "spec"),
        ({"enabled": True, "targetCPUUtilizationPercentage": 70}, "hpa"),
        ({"enabled": True, "targetMemoryUtilizationPercentage": 70}, "hpa"),
        (
            {"enabled": True, "targetCPUUtilizationPercentage": 9, "engine": {"inFlightPerPod": 5}},
            "hpa",
        ),
        ({"enabled": True, "engine": {"queueDepthPerPod": 10}}, "operator"),
        ({"enabled": False, "targetCPUUtilizationPercentage": 70}, "spec"),
    ],
)
def test_exactly_one_writer_owns_the_replicas(autoscaling: dict[str, Any], writer: str) -> None:
    assert spec_of({"autoscaling": autoscaling}).replicas_writer == writer


@pytest.mark.parametrize(
    ("name", "valid"),
    [("demo", True), ("a" * 52, True), ("a" * 53, False), ("9lives", False), ("a.b", False)],
)
def test_instance_names_must_fit_a_service_and_a_statefulset(name: str, valid: bool) -> None:
    assert (names.instance_name_problem(name) is None) is valid


def test_status_from_an_older_operator_is_read_without_its_unknown_fields() -> None:
    status = NovelEngineStatus.model_validate({"replicas": 2, "retiredField": "x"})

    assert status.replicas == 2
    assert status.to_k8s() == {"replicas": 2, "conditions": []}
