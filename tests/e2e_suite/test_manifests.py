"""What the e2e suite sends to a cluster: valid for the operator's own model, bounded loads."""

from pathlib import Path

import pytest
from manifests import (
    E2E_LABEL,
    JOB_SLACK_SECONDS,
    content_config_map,
    engine_scaling_spec,
    load_job,
    novel_engine,
    sample_spec,
    service_url,
)

from novel_engine.loadgen import LoadPlan, plan_from
from novel_operator import names
from novel_operator.model import NovelEngineSpec

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "examples" / "novelengine.yaml"


def test_the_load_job_runs_the_loadgen_once_within_a_deadline() -> None:
    plan = LoadPlan(
        url=service_url("demo", "ns"), duration_seconds=90, concurrency=4, report_every_seconds=5
    )
    job = load_job("load", "ns", "novel-engine/engine:1", plan)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 90 + JOB_SLACK_SECONDS
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "novel_engine.loadgen"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The Job's arguments ask the load generator for exactly this plan.
    assert plan_from(container["args"]) == plan
    assert plan.url == "http://demo.ns.svc:8080"


@pytest.mark.parametrize(
    "spec",
    [
        sample_spec(SAMPLE.read_text()),
        sample_spec(SAMPLE.read_text(), "registry.example/engine:2"),
        engine_scaling_spec(
            image=None, in_flight_per_pod=2, max_replicas=4, scale_down_window_seconds=30
        ),
    ],
)
def test_novelengines_are_valid_for_the_operator(spec: dict[str, object]) -> None:
    manifest = novel_engine("demo", "ns", spec)
    assert manifest["metadata"]["labels"] == {E2E_LABEL: "engine"}
    NovelEngineSpec.model_validate(manifest["spec"])


def test_scaling_spec_leaves_replicas_to_the_operator() -> None:
    spec = NovelEngineSpec.model_validate(
        engine_scaling_spec(
            image="e:1", in_flight_per_pod=2, max_replicas=4, scale_down_window_seconds=30
        )
    )
    assert spec.replicas_writer == "operator"
    assert spec.image == "e:1"


def test_content_config_map_is_watched_and_loadable() -> None:
    config_map = content_config_map("c", "ns", [{"name": "Ada Quill"}])
    assert config_map["metadata"]["labels"][names.WATCH_LABEL] == names.WATCH_LABEL_VALUE
    assert "Ada Quill" in config_map["data"]["characters.yaml"]
