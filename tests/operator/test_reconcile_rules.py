"""The reconcile's own rules: what a spec refers to, and when a change is a repair."""

from datetime import UTC, datetime
from typing import Any

import pytest

from novel_operator import names
from novel_operator.model import Condition, NovelEngineSpec, NovelEngineStatus
from novel_operator.reconcile import Reference, is_repair, references_of

EXTERNAL = {
    "mode": "external",
    "external": {
        "urlSecretRef": {"name": "redis", "key": "url"},
        "passwordSecretRef": {"name": "redis-auth", "key": "password"},
    },
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, {}),
        ({"content": {"configMapName": "stories"}}, {Reference("ConfigMap", "stories"): None}),
        (
            {"cache": {"l2": EXTERNAL}},
            {Reference("Secret", "redis"): "url", Reference("Secret", "redis-auth"): "password"},
        ),
        # The external settings only count in external mode.
        ({"cache": {"l2": {**EXTERNAL, "mode": "managed"}}}, {}),
    ],
)
def test_references_name_the_objects_and_keys_a_spec_needs(
    spec: dict[str, Any], expected: dict[Reference, str | None]
) -> None:
    assert references_of(NovelEngineSpec.model_validate(spec)) == expected


def status(generation: int | None, ready: str = "", stalled: str = "") -> NovelEngineStatus:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    conditions = [
        Condition.model_validate(
            {"type": kind, "status": value, "reason": "R", "message": "m"}
            | {"lastTransitionTime": when}
        )
        for kind, value in ((names.CONDITION_READY, ready), (names.CONDITION_STALLED, stalled))
        if value
    ]
    return NovelEngineStatus(observed_generation=generation, conditions=conditions)


@pytest.mark.parametrize(
    ("previous", "repair"),
    [
        (status(3, ready="True", stalled="False"), True),  # applied before: drift
        (status(3, ready="False", stalled="False"), True),  # still rolling out, same spec
        (status(2, ready="True", stalled="False"), False),  # the spec changed since
        (status(3, ready="False", stalled="True"), False),  # was stalled: never applied
        (status(None), False),  # first reconcile
    ],
)
def test_a_change_is_a_repair_only_when_this_spec_was_applied_before(
    previous: NovelEngineStatus, repair: bool
) -> None:
    assert is_repair(previous, generation=3) is repair
