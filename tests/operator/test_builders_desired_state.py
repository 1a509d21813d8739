"""desired_state: every child exactly once, applied or absent, in a fixed order, all owned."""

from typing import Any

import pytest
from operator_samples import OPERATOR_NAMESPACE, OWNER, load_sample, spec_of

from novel_operator import names
from novel_operator.builders import (
    CHILD_KINDS,
    ChildRef,
    DesiredState,
    StartupInputs,
    build_redis_secret,
    child_refs,
    desired_state,
    ref_of,
)
from novel_operator.builders.common import NO_STARTUP_INPUTS, owner_reference


def desired_of(
    data: dict[str, Any] | None = None,
    *,
    replicas_owned_elsewhere: bool = False,
    hpa_min_replicas: int | None = None,
    startup_inputs: StartupInputs = NO_STARTUP_INPUTS,
) -> DesiredState:
    """`desired_state` of OWNER for the spec `data` (None: every default)."""
    return desired_state(
        OWNER,
        spec_of(data),
        engine_replicas_owned_elsewhere=replicas_owned_elsewhere,
        operator_namespace=OPERATOR_NAMESPACE,
        hpa_min_replicas=hpa_min_replicas,
        startup_inputs=startup_inputs,
    )


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
MANAGED = {"replicas": 2, "cache": {"l2": {"mode": "managed"}}}
EXTERNAL_PVC = SPECS["pvc-external-operator-scaled"]


def test_child_refs_name_every_child_of_a_managed_kind() -> None:
    refs = child_refs("demo")

    assert len(refs) == len(set(refs))
    assert set(refs) == EVERY_CHILD
    assert {(ref.api_version, ref.kind) for ref in refs} == set(CHILD_KINDS)


@pytest.mark.parametrize("data", SPECS.values(), ids=SPECS.keys())
def test_every_child_is_either_applied_or_absent(data: dict[str, Any]) -> None:
    spec = spec_of(data)
    state = desired_of(data)
    secret = build_redis_secret(OWNER, spec)  # created by the apply layer, not applied
    generated = [ref_of(secret)] if secret is not None else []
    children = [*map(ref_of, state.apply), *state.absent, *generated]

    assert len(children) == len(set(children))  # no child twice
    assert set(children) == EVERY_CHILD


@pytest.mark.parametrize("data", SPECS.values(), ids=SPECS.keys())
def test_every_applied_child_is_owned_labelled_and_of_a_managed_kind(data: dict[str, Any]) -> None:
    state = desired_of(data)

    for manifest in state.apply:
        metadata = manifest["metadata"]
        assert (manifest["apiVersion"], manifest["kind"]) in CHILD_KINDS
        assert metadata["namespace"] == "stories"
        assert metadata["ownerReferences"] == [owner_reference(OWNER)]
        assert metadata["labels"][names.LABEL_INSTANCE] == "demo"
        assert metadata["labels"][names.LABEL_MANAGED_BY] == "novel-engine-operator"
        assert metadata["labels"][names.LABEL_NAME] in {"novel-engine", "novel-engine-redis"}
        assert metadata["labels"][names.LABEL_COMPONENT] in {"engine", "cache"}


#: Fields the builders may set to `false` or 0 whose Kubernetes types are pointers, so that the
#: apiserver serves them back as set: the apply layer takes a missing one for a hand edit and
#: puts it back. A non-pointer one (e.g. `minReadySeconds`) would be left out of the served
#: object and re-applied at every reconcile.
POINTER_FIELDS = {
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "maxUnavailable",
    "replicas",
    "stabilizationWindowSeconds",
    "tolerationSeconds",
}


def false_or_zero_keys(value: Any) -> set[str]:
    """The keys of every `false` or 0 in a manifest."""
    found: set[str] = set()
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, item in items:
        if isinstance(item, bool | int | float) and not item and isinstance(key, str):
            found.add(key)
        found |= false_or_zero_keys(item)
    return found


@pytest.mark.parametrize("data", [*SPECS.values(), MANAGED], ids=[*SPECS.keys(), "managed"])
def test_every_false_or_zero_a_builder_sets_is_served_back_by_the_apiserver(
    data: dict[str, Any],
) -> None:
    state = desired_of(data)
    for manifest in state.apply:
        assert false_or_zero_keys(manifest) <= POINTER_FIELDS, manifest["kind"]


def test_the_sample_applies_its_children_in_order() -> None:
    state = desired_of(SPECS["sample"], replicas_owned_elsewhere=True)

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
    assert state.absent == [ChildRef("apps/v1", "StatefulSet", "demo")]
    assert "replicas" not in state.apply[1]["spec"]


def test_without_managed_redis_its_secret_must_go() -> None:
    state = desired_of()

    assert build_redis_secret(OWNER, spec_of()) is None
    assert ChildRef("v1", "Secret", "demo-redis-auth") in state.absent


def test_the_hpa_floor_reaches_the_hpa() -> None:
    state = desired_of(SPECS["sample"], replicas_owned_elsewhere=True, hpa_min_replicas=7)
    (hpa,) = [m for m in state.apply if m["kind"] == "HorizontalPodAutoscaler"]

    assert hpa["spec"]["minReplicas"] == 7


def pod_annotations(state: DesiredState) -> dict[ChildRef, dict[str, str]]:
    """Pod-template annotations of every workload in `state`."""
    return {
        ref_of(m): m["spec"]["template"]["metadata"].get("annotations", {})
        for m in state.apply
        if m["kind"] in ("Deployment", "StatefulSet")
    }


@pytest.mark.parametrize(
    ("data", "carriers"),
    [
        (
            MANAGED,
            {
                ChildRef("apps/v1", "Deployment", "demo"),
                ChildRef("apps/v1", "Deployment", "demo-redis"),
            },
        ),
        (EXTERNAL_PVC, {ChildRef("apps/v1", "StatefulSet", "demo")}),
        ({}, set()),  # no L2: no pod reads Redis credentials
    ],
    ids=["managed", "external-statefulset", "no-l2"],
)
def test_the_password_version_is_on_every_pod_template_reading_redis_credentials(
    data: dict[str, Any], carriers: set[ChildRef]
) -> None:
    state = desired_of(data, startup_inputs=StartupInputs(redis_credentials="v1"))

    carrying = {
        ref
        for ref, annotations in pod_annotations(state).items()
        if annotations.get(names.REDIS_PASSWORD_VERSION_ANNOTATION) == "v1"
    }
    assert carrying == carriers


def test_a_new_password_version_changes_only_the_pod_templates_reading_it() -> None:
    def state(version: str) -> DesiredState:
        return desired_of(MANAGED, startup_inputs=StartupInputs(redis_credentials=version))

    before, after = state("v1"), state("v2")
    changed = [
        ref_of(new) for old, new in zip(before.apply, after.apply, strict=True) if old != new
    ]

    assert changed == [
        ChildRef("apps/v1", "Deployment", "demo"),
        ChildRef("apps/v1", "Deployment", "demo-redis"),
    ]
    for annotations in pod_annotations(after).values():
        assert annotations[names.REDIS_PASSWORD_VERSION_ANNOTATION] == "v2"


def test_without_a_password_version_no_pod_template_carries_one() -> None:
    state = desired_of(MANAGED)

    for annotations in pod_annotations(state).values():
        assert names.REDIS_PASSWORD_VERSION_ANNOTATION not in annotations
    assert (
        names.CONFIG_HASH_ANNOTATION
        in pod_annotations(state)[ChildRef("apps/v1", "Deployment", "demo")]
    )


def test_the_content_version_is_on_the_engine_pods_only_and_rolls_only_them() -> None:
    data = {**MANAGED, "content": {"configMapName": "stories"}}

    def state(version: str) -> DesiredState:
        return desired_of(
            data, startup_inputs=StartupInputs(redis_credentials="r1", content=version)
        )

    before, after = state("c1"), state("c2")
    carrying = {
        ref
        for ref, annotations in pod_annotations(before).items()
        if annotations.get(names.CONTENT_VERSION_ANNOTATION) == "c1"
    }
    assert carrying == {ChildRef("apps/v1", "Deployment", "demo")}
    changed = [
        ref_of(new) for old, new in zip(before.apply, after.apply, strict=True) if old != new
    ]
    assert changed == [ChildRef("apps/v1", "Deployment", "demo")]


def test_without_content_no_content_version_is_written() -> None:
    state = desired_of(MANAGED, startup_inputs=StartupInputs(content="c1"))
    assert not [
        ref
        for ref, annotations in pod_annotations(state).items()
        if names.CONTENT_VERSION_ANNOTATION in annotations
    ]
