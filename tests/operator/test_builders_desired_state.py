"""desired_state: every child exactly once, applied or absent, in a fixed order, all owned."""

from typing import Any

import pytest
from operator_samples import OWNER, load_sample, spec_of

from novel_operator import names
from novel_operator.builders import CHILD_KINDS, ChildRef, desired_state
from novel_operator.builders.common import owner_reference

EVERY_CHILD = {
    ChildRef("v1", "ConfigMap", "demo-config"),
    ChildRef("apps/v1", "Deployment", "demo"),
    ChildRef("apps/v1", "StatefulSet", "demo"),
    ChildRef("v1", "Service", "demo"),
    ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", "demo"),
    ChildRef("policy/v1", "PodDisruptionBudget", "demo"),
    ChildRef("apps/v1", "Deployment", "demo-redis"),
    ChildRef("v1", "Service", "demo-redis"),
    ChildRef("v1", "Secret", "demo-redis-auth"),
    ChildRef("networking.k8s.io/v1", "NetworkPolicy", "demo"),
    ChildRef("networking.k8s.io/v1", "NetworkPolicy", "demo-redis"),
}
SPECS = {
    "defaults": {},
    "sample": load_sample()["spec"],
    "everything-off": {"replicas": 1, "cache": {"l3": {"enabled": False}}},
    "pvc-external-operator-scaled": {
        "cache": {
            "l2": {"mode": "external", "external": {"urlSecretRef": {"name": "r", "key": "u"}}},
            "l3": {"persistence": "pvc"},
        },
        "autoscaling": {"enabled": True, "minReplicas": 3, "engine": {"inFlightPerPod": 4}},
        "networkPolicy": {"enabled": True},
    },
}


def ref_of(manifest: dict[str, Any]) -> ChildRef:
    return ChildRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])


@pytest.mark.parametrize("data", SPECS.values(), ids=SPECS.keys())
def test_every_child_is_either_applied_or_absent(data: dict[str, Any]) -> None:
    state = desired_state(OWNER, spec_of(data), engine_replicas_owned_elsewhere=False)
    generated = [ChildRef("v1", "Secret", state.redis_secret)] if state.redis_secret else []
    children = [*map(ref_of, state.apply), *state.absent, *generated]

    assert len(children) == len(set(children))  # no child twice
    assert set(children) == EVERY_CHILD


@pytest.mark.parametrize("data", SPECS.values(), ids=SPECS.keys())
def test_every_applied_child_is_owned_labelled_and_of_a_managed_kind(data: dict[str, Any]) -> None:
    state = desired_state(OWNER, spec_of(data), engine_replicas_owned_elsewhere=False)

    for manifest in state.apply:
        metadata = manifest["metadata"]
        assert (manifest["apiVersion"], manifest["kind"]) in CHILD_KINDS
        assert metadata["namespace"] == "stories"
        assert metadata["ownerReferences"] == [owner_reference(OWNER)]
        assert metadata["labels"][names.LABEL_INSTANCE] == "demo"
        assert metadata["labels"][names.LABEL_MANAGED_BY] == "novel-engine-operator"
        assert metadata["labels"][names.LABEL_NAME] in {"novel-engine", "novel-engine-redis"}
        assert metadata["labels"][names.LABEL_COMPONENT] in {"engine", "cache"}


def test_the_sample_applies_its_children_in_order() -> None:
    state = desired_state(OWNER, spec_of(SPECS["sample"]), engine_replicas_owned_elsewhere=True)

    assert [(m["kind"], m["metadata"]["name"]) for m in state.apply] == [
        ("ConfigMap", "demo-config"),
        ("Deployment", "demo"),
        ("Service", "demo"),
        ("HorizontalPodAutoscaler", "demo"),
        ("PodDisruptionBudget", "demo"),
        ("Deployment", "demo-redis"),
        ("Service", "demo-redis"),
        ("NetworkPolicy", "demo"),
        ("NetworkPolicy", "demo-redis"),
    ]
    assert state.redis_secret == "demo-redis-auth"
    assert state.absent == [ChildRef("apps/v1", "StatefulSet", "demo")]
    assert "replicas" not in state.apply[1]["spec"]


def test_without_managed_redis_its_secret_must_go() -> None:
    state = desired_state(OWNER, spec_of(), engine_replicas_owned_elsewhere=False)

    assert state.redis_secret is None
    assert ChildRef("v1", "Secret", "demo-redis-auth") in state.absent


def test_the_hpa_floor_reaches_the_hpa() -> None:
    state = desired_state(
        OWNER, spec_of(SPECS["sample"]), engine_replicas_owned_elsewhere=True, hpa_min_replicas=7
    )
    (hpa,) = [m for m in state.apply if m["kind"] == "HorizontalPodAutoscaler"]

    assert hpa["spec"]["minReplicas"] == 7
