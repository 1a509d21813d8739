"""The engine image under the operator's pod spec for the sample NovelEngine: the Deployment's
engine container with exactly its args, env, volumes, user and security settings, sharing the
network namespace of the managed Redis container."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from docker_engine import CiBases, DockerEngine, ProjectImages
    from pods import PodContainer, SampleChildren, redis_cli, start_engine_pod, start_redis
except ModuleNotFoundError:  # tests/containers imported as a package
    from .docker_engine import CiBases, DockerEngine, ProjectImages  # type: ignore[no-redef]
    from .pods import (  # type: ignore[no-redef]
        PodContainer,
        SampleChildren,
        redis_cli,
        start_engine_pod,
        start_redis,
    )

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

#: Characters and campaign from the content ConfigMap (pods.CONTENT_FILE).
SIMULATION = {
    "character_ids": ["ada-quill", "bram-lowe"],
    "campaign_id": "night-market",
    "turns": 12,
    "seed": 3,
}


def _ready(pod: PodContainer) -> bool:
    return pod.http("GET", "/readyz") == (200, {"status": "ready"})


@pytest.fixture(scope="module")
def engine_pod(
    docker_engine: DockerEngine,
    project_images: ProjectImages,
    sample: SampleChildren,
    redis_pod: PodContainer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PodContainer]:
    pod = start_engine_pod(
        docker_engine, sample, project_images.engine, redis_pod, tmp_path_factory.mktemp("engine")
    )
    try:
        pod.wait_for("/readyz ready", lambda: _ready(pod))
        yield pod
    finally:
        pod.remove()


def test_the_image_healthcheck_turns_healthy(engine_pod: PodContainer) -> None:
    engine_pod.wait_for(
        "HEALTHCHECK healthy", lambda: engine_pod.state()["Health"]["Status"] == "healthy"
    )


def test_runs_as_the_pod_user_on_a_read_only_root(engine_pod: PodContainer) -> None:
    status = engine_pod.process_status()
    assert status["Uid"].split()[0] == "10001"
    assert int(status["CapEff"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    probe = "open('/opt/venv/written', 'w')"
    assert "Read-only file system" in engine_pod.exec("python3", "-c", probe, check=False)


def test_serves_the_content_mounted_from_the_configmap(engine_pod: PodContainer) -> None:
    status, character = engine_pod.http("GET", "/v1/characters/ada-quill")
    assert status == 200
    assert character["faction"] == "Free Companies"
    # Cluster mode: content is read-only, so replicas never diverge.
    status, problem = engine_pod.http("DELETE", "/v1/characters/ada-quill")
    assert status == 409
    assert "read-only" in problem["detail"]


def test_serves_a_simulation_and_shares_it_through_the_managed_redis(
    engine_pod: PodContainer, redis_pod: PodContainer, sample: SampleChildren
) -> None:
    status, result = engine_pod.http("POST", "/v1/simulations", SIMULATION)
    assert status == 200
    assert result["status"] == "succeeded"
    assert [p["id"] for p in result["participants"]] == SIMULATION["character_ids"]
    assert engine_pod.http("GET", f"/v1/simulations/{result['id']}") == (200, result)
    # The engine reached Redis by the Service's name with the password from the Secret.
    pattern = f"*sim:{result['id']}"
    redis_pod.wait_for(
        f"a key {pattern} in Redis",
        lambda: redis_cli(redis_pod, sample.redis_password, "KEYS", pattern) != "",
    )


def test_runs_costly_simulations_in_its_process_pool_on_the_read_only_root(
    engine_pod: PodContainer,
) -> None:
    # The pool's forkserver needs a writable temp dir: here only the pod's /tmp emptyDir.
    status, page = engine_pod.http("GET", "/v1/characters?limit=8")
    assert status == 200
    ids = [character["id"] for character in page["items"]]
    body = {"character_ids": ids, "turns": 60, "seed": 11}  # 480 agent-turns: above 400
    status, result = engine_pod.http("POST", "/v1/simulations", body)
    assert status == 200
    assert result["status"] == "succeeded"
    _, metrics = engine_pod.http("GET", "/metrics")
    done = 'novel_engine_scheduler_tasks_total{executor="process",outcome="ok"} 1.0'
    assert done in metrics.splitlines()


@pytest.fixture
def starting_engine_pod(
    docker_engine: DockerEngine,
    project_images: ProjectImages,
    ci_bases: CiBases,
    sample: SampleChildren,
    tmp_path: Path,
) -> Iterator[PodContainer]:
    """An engine just started, with its own Redis (the module's engine holds port 8080 in the
    other)."""
    with contextlib.ExitStack() as cleanup:
        redis = start_redis(docker_engine, sample, ci_bases.redis, tmp_path)
        cleanup.callback(redis.remove)
        pod = start_engine_pod(docker_engine, sample, project_images.engine, redis, tmp_path)
        cleanup.callback(pod.remove)
        yield pod


@pytest.fixture
def engine_pod_to_stop(starting_engine_pod: PodContainer) -> PodContainer:
    starting_engine_pod.wait_for("/readyz ready", lambda: _ready(starting_engine_pod))
    return starting_engine_pod


def test_sigterm_while_it_starts_ends_it_at_once_not_at_the_end_of_the_grace_period(
    starting_engine_pod: PodContainer, sample: SampleChildren
) -> None:
    # The signal comes while Python loads the engine, before its handlers exist: 143 (SIGTERM's
    # own), or 0 if the engine got as far as its drain. A signal lost by PID 1 would leave it
    # running until the SIGKILL: 137.
    exit_code = starting_engine_pod.stop(sample.grace_seconds)
    assert exit_code in (143, 0), starting_engine_pod.logs()


def test_sigterm_drains_within_the_grace_period_and_exits_zero(
    engine_pod_to_stop: PodContainer, sample: SampleChildren
) -> None:
    pod = engine_pod_to_stop
    status, _ = pod.http("POST", "/v1/simulations", {**SIMULATION, "mode": "async"})
    assert status == 202

    # What the kubelet does at the end of the grace period: SIGKILL (exit code 137).
    assert pod.stop(sample.grace_seconds) == 0
    logs = pod.logs()
    # The operator's --shutdown-delay: unready but serving first, then the drain.
    assert "SIGTERM received: not ready; serving 5 s more" in logs
    assert "novel_engine: draining" in logs
    assert logs.rstrip().endswith("stopped")
