"""The reconcile's own rules: what a spec refers to, which Secrets' version rolls the pods, and
when a change is a repair."""

from datetime import UTC, datetime
from typing import Any

import pytest
from operator_samples import OWNER

from novel_operator import names
from novel_operator.model import Condition, NovelEngineSpec, NovelEngineStatus
from novel_operator.reconcile import (
    Reference,
    content_version,
    credential_secrets,
    is_repair,
    references_of,
    secret_version,
)

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


@pytest.mark.parametrize(
    ("l2", "expected"),
    [
        ({"mode": "managed"}, ["demo-redis-auth"]),
        (EXTERNAL, ["redis", "redis-auth"]),
        ({"mode": "none"}, []),
    ],
)
def test_the_credentials_come_from_the_generated_or_the_referenced_secrets(
    l2: dict[str, Any], expected: list[str]
) -> None:
    spec = NovelEngineSpec.model_validate({"cache": {"l2": l2}})

    assert credential_secrets(OWNER, spec) == expected


def secret(uid: str, resource_version: str, password: str = "hunter2") -> dict[str, Any]:
    """A Secret as the API serves it."""
    meta = {"name": "s", "uid": uid, "resourceVersion": resource_version}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"password": password}}


def test_the_secret_version_changes_when_a_secret_is_replaced_or_rewritten() -> None:
    version = secret_version([secret("uid-1", "10")])

    assert version == secret_version([secret("uid-1", "10")])  # stable: no needless rollout
    assert secret_version([secret("uid-2", "11")]) != version  # deleted and created again
    assert secret_version([secret("uid-1", "12")]) != version  # data rewritten in place


def test_the_secret_version_is_short_and_never_made_from_the_data() -> None:
    one, two = secret_version([secret("u", "1", "first")]), secret_version([secret("u", "1", "x")])

    assert one == two
    assert one is not None
    assert len(one) == 16


def test_the_version_of_several_secrets_ignores_order_repeats_and_absent_ones() -> None:
    url, password = secret("uid-1", "10"), secret("uid-2", "20")

    assert secret_version([url, password]) == secret_version([password, None, url, url])
    assert secret_version([url, password]) != secret_version([url])
    assert secret_version([None]) is None
    assert secret_version([]) is None


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


def content(data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "stories", "labels": labels or {}}, "data": data}


def test_the_content_version_follows_the_data_and_nothing_else() -> None:
    version = content_version(content({"a.yaml": "characters: []"}))
    assert version is not None
    assert len(version) == 16
    assert content_version(content({"a.yaml": "characters: []"}, {"team": "lore"})) == version
    assert content_version(content({"a.yaml": "campaigns: []"})) != version
    assert content_version(content({"a.yaml": "characters: []", "b.yaml": ""})) != version
    assert content_version(None) is None
