"""CEL rules as pydantic evaluates them: the CEL runtime and Kubernetes' quantity functions."""

import json
from typing import Any

import pytest
from celpy.celparser import CELParseError

from novel_operator.cel import CelRule


def holds(rule: str, obj: dict[str, Any]) -> bool:
    return CelRule(rule).holds(json.dumps(obj))


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("250m", True),
        ("1.5Gi", True),
        ("2", True),
        ("1e3", True),
        ("-1", True),
        ("+.5k", True),
        ("", False),
        ("lots", False),
        ("1 Gi", False),
        (" 1", False),
        ("1_000", False),
        ("NaN", False),
        ("Infinity", False),
        ("1ki", False),
        ("1.5.5", False),
    ],
)
def test_is_quantity_takes_what_kubernetes_parses(text: str, valid: bool) -> None:
    assert holds("isQuantity(self.q)", {"q": text}) is valid


@pytest.mark.parametrize(
    ("low", "high", "order"),
    [
        ("500m", "1", -1),
        ("1Gi", "1024Mi", 0),
        ("1G", "1Gi", -1),
        ("2", "1500m", 1),
        ("1e3", "1k", 0),
        ("-1", "0", -1),
    ],
)
def test_quantities_compare_by_value(low: str, high: str, order: int) -> None:
    rule = f"quantity(self.low).compareTo(quantity(self.high)) == {order}"

    assert holds(rule, {"low": low, "high": high})


def test_has_tells_a_left_out_field_from_a_present_one() -> None:
    rule = "!has(self.a.b) || self.a.b > 1"

    assert holds(rule, {"a": {}})
    assert holds(rule, {"a": {"b": 2}})
    assert not holds(rule, {"a": {"b": 1}})


def test_a_rule_that_cannot_be_evaluated_is_an_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="failed to evaluate"):
        holds("quantity(self.q).compareTo(quantity('1')) <= 0", {"q": "lots"})


def test_a_rule_must_give_a_bool() -> None:
    with pytest.raises(ValueError, match="not a bool"):
        holds("self.n + 1", {"n": 1})


def test_a_syntax_error_fails_when_the_rule_is_created() -> None:
    with pytest.raises(CELParseError):
        CelRule("self.a ||")


def test_a_repeated_object_gives_the_same_answer() -> None:
    rule = CelRule("self.minReplicas <= self.maxReplicas")

    answers = [rule.holds(json.dumps({"minReplicas": n, "maxReplicas": 3})) for n in (2, 4, 2, 4)]

    assert answers == [True, False, True, False]
