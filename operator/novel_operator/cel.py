"""CEL rules evaluated as the apiserver evaluates a CRD's `x-kubernetes-validations`, for pydantic.

A rule is compiled once by cel-python and evaluated over an object's Kubernetes JSON as `self`.
Of Kubernetes' own CEL libraries, only what the model's rules call is here: the quantity
library's `isQuantity(string)`, `quantity(string)` and `<Quantity>.compareTo(<Quantity>)`.
"""

import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError, CELFunction
from kubernetes.utils import parse_quantity

UNSIGNED_QUANTITY = (
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"
)
"""Kubernetes' quantity syntax without a sign (`250m`, `1.5Gi`, `1e3`), unanchored."""

# What Kubernetes' resource.ParseQuantity accepts. Python's Decimal, under parse_quantity, also
# takes spaces, underscores, `NaN` and `Infinity`: the syntax is checked first.
_QUANTITY = re.compile(rf"[+-]?{UNSIGNED_QUANTITY}")


@dataclass(frozen=True)
class Quantity:
    """A CEL `Quantity` value; like Kubernetes', it only compares through its methods."""

    value: Decimal


def _is_quantity(text: celtypes.StringType) -> celtypes.BoolType:
    return celtypes.BoolType(_QUANTITY.fullmatch(text) is not None)


def _quantity(text: celtypes.StringType) -> Quantity:
    if _QUANTITY.fullmatch(text) is None:
        raise ValueError(f"quantities must match the regular expression: {text!r}")
    value: Decimal = parse_quantity(str(text))  # type: ignore[no-untyped-call]
    return Quantity(value)


def _compare_to(quantity: Quantity, other: Quantity) -> celtypes.IntType:
    return celtypes.IntType((quantity.value > other.value) - (quantity.value < other.value))


# cel-python passes a function's result through untouched, so a Quantity can be a CEL value
# although it is none of cel-python's own types.
_KUBERNETES_FUNCTIONS = cast(
    dict[str, CELFunction],
    {"isQuantity": _is_quantity, "quantity": _quantity, "compareTo": _compare_to},
)
_ENVIRONMENT = celpy.Environment()
_RESULTS_KEPT = 4096
"""Results each rule keeps, by distinct object (the objects under rules are small and bounded)."""


class CelRule:
    """One CEL rule, compiled when created (a syntax error fails at import of its model)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._program = _ENVIRONMENT.program(
            _ENVIRONMENT.compile(expression), functions=_KUBERNETES_FUNCTIONS
        )
        # cel-python interprets a rule in milliseconds, and a fleet's specs repeat the same
        # sub-objects: results are kept by the object's JSON text.
        self._holds = functools.lru_cache(maxsize=_RESULTS_KEPT)(self._evaluate)

    def holds(self, obj_json: str) -> bool:
        """Whether the rule is true for `self` = the object whose Kubernetes JSON (defaults
        applied) is `obj_json`. A rule that cannot be evaluated raises ValueError, as the
        apiserver refuses the object."""
        return self._holds(obj_json)

    def _evaluate(self, obj_json: str) -> bool:
        try:
            result = self._program.evaluate({"self": json_to_cel(json.loads(obj_json))})
        except CELEvalError as error:
            raise ValueError(f"rule {self.expression!r} failed to evaluate: {error}") from error
        if not isinstance(result, celtypes.BoolType):
            raise ValueError(f"rule {self.expression!r} gave {result!r}, not a bool")
        return bool(result)
