"""The sample NovelEngine's children, and their containers run with Docker under their pod specs.

``sample_children()`` is what the operator's pure builders produce for the sample resource
(crds/examples/novelengine.yaml, with a content ConfigMap added to its spec), plus the objects
the cluster would hold beside them: the Redis password Secret (the apply layer creates it with a
generated password) and the content ConfigMap (the user's). ``PodContainer.start`` runs one
container of such a pod spec (tests/containers/podrun.py does the translation); tests talk to it
from inside its network namespace with ``docker exec``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from novel_operator import names
from novel_operator.builders import desired_state
from novel_operator.builders.pod import ENGINE_CONTAINER, redis_url
from novel_operator.builders.redis import REDIS_CONTAINER, build_redis_secret
from novel_operator.model import NovelEngineSpec, Owner

try:
    from docker_engine import REPO_ROOT, DockerEngine, DockerError
    from podrun import ClusterObjects, container_env, docker_run, find_container, write_volumes
except ModuleNotFoundError:  # tests/containers imported as a package
    from .docker_engine import REPO_ROOT, DockerEngine, DockerError  # type: ignore[no-redef]
    from .podrun import (  # type: ignore[no-redef]
        ClusterObjects,
        container_env,
        docker_run,
        find_container,
        write_volumes,
    )

SAMPLE_PATH = REPO_ROOT / "crds" / "examples" / "novelengine.yaml"
OWNER = Owner(name="demo", namespace="stories", uid="6f1d2c3b-0000-4000-8000-000000000001")
CONTENT_CONFIG_MAP = "demo-content"
#: A content file as a user would put it in the content ConfigMap.
CONTENT_FILE = """\
characters:
  - {name: Ada Quill, faction: Free Companies, archetype: engineer, traits: [curious]}
  - {name: Bram Lowe, faction: Free Companies, archetype: scout, traits: [cautious]}
campaigns:
  - {id: night-market, title: The Night Market, setting: Lanterns and knives., atmosphere: tense}
"""

# Runs inside the engine container: one HTTP request to the engine on its own loopback.
_HTTP_CLIENT = """\
import http.client, json, sys
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=30)
headers = {"Content-Type": "application/json"} if body else {}
try:
    conn.request(method, path, body=body or None, headers=headers)
    response = conn.getresponse()
    print(json.dumps({"status": response.status, "body": response.read().decode()}))
except OSError as error:  # not listening (yet, or any more)
    print(json.dumps({"status": 0, "body": repr(error)}))
"""


@dataclass(frozen=True)
class SampleChildren:
    spec: NovelEngineSpec
    engine_pod: Mapping[str, Any]
    redis_pod: Mapping[str, Any]
    grace_seconds: int
    objects: ClusterObjects
    redis_password: str


def sample_children() -> SampleChildren:
    """The sample's engine and Redis pod specs from the operator's builders, and the ConfigMaps
    and Secret they refer to."""
    sample = yaml.safe_load(SAMPLE_PATH.read_text())
    spec_data = {**sample["spec"], "content": {"configMapName": CONTENT_CONFIG_MAP}}
    spec = NovelEngineSpec.model_validate(spec_data)
    state = desired_state(
        OWNER, spec, engine_replicas_owned_elsewhere=True, operator_namespace="novel-engine-system"
    )
    workloads = {m["metadata"]["name"]: m for m in state.apply if m["kind"] == "Deployment"}
    engine_pod = workloads[names.engine_name(OWNER.name)]["spec"]["template"]["spec"]
    redis_pod = workloads[names.redis_name(OWNER.name)]["spec"]["template"]["spec"]
    secret = build_redis_secret(OWNER, spec)
    assert secret is not None  # the sample's L2 tier is managed
    password = secrets.token_urlsafe(24)
    secret["data"] = {names.REDIS_PASSWORD_KEY: base64.b64encode(password.encode()).decode()}
    content = {
        "kind": "ConfigMap",
        "metadata": {"name": CONTENT_CONFIG_MAP},
        "data": {"library.yaml": CONTENT_FILE},
    }
    return SampleChildren(
        spec=spec,
        engine_pod=engine_pod,
        redis_pod=redis_pod,
        grace_seconds=engine_pod["terminationGracePeriodSeconds"],
        objects=ClusterObjects.from_manifests([*state.apply, secret, content]),
        redis_password=password,
    )


class PodContainer:
    """One running container of a pod spec; ``remove()`` deletes it (tests' finalizers)."""

    def __init__(self, engine: DockerEngine, name: str) -> None:
        self.engine = engine
        self.name = name

    @classmethod
    def start(
        cls,
        engine: DockerEngine,
        pod_spec: Mapping[str, Any],
        container: str,
        *,
        objects: ClusterObjects,
        image: str,
        volumes_root: Path,
        network: str = "none",
        extra_options: tuple[str, ...] = (),
    ) -> PodContainer:
        """`docker run -d` of `container` under `pod_spec`, with `image` instead of the spec's,
        on `network` (`none`: its own loopback; `container:<name>`: another's)."""
        name = f"ne-{container}-{secrets.token_hex(4)}"
        volume_paths = write_volumes(pod_spec, objects, volumes_root / name)
        run = docker_run(
            pod_spec,
            container,
            env=container_env(find_container(pod_spec, container), objects),
            volume_paths=volume_paths,
            image=image,
            extra_options=("--detach", "--name", name, "--network", network, *extra_options),
        )
        engine.docker(*run.argv())
        return cls(engine, name)

    def exec(self, *argv: str, check: bool = True) -> str:
        """Output of `argv` run inside the container (stdout and stderr)."""
        proc = self.engine.docker("exec", self.name, *argv, check=check, timeout=60)
        return proc.stdout + proc.stderr

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A request to the engine on the container's loopback: (status, decoded JSON body);
        status 0 when nothing listens."""
        payload = "" if body is None else json.dumps(body)
        out = json.loads(self.exec("python3", "-c", _HTTP_CLIENT, method, path, payload))
        try:
            return out["status"], json.loads(out["body"])
        except ValueError:
            return out["status"], out["body"]

    def process_status(self) -> dict[str, str]:
        """/proc/1/status of the container's main process (Uid, CapEff, NoNewPrivs, ...)."""
        lines = self.exec("cat", "/proc/1/status").splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)

    def state(self) -> dict[str, Any]:
        out = self.engine.docker("inspect", "--format", "{{json .State}}", self.name)
        state: dict[str, Any] = json.loads(out.stdout)
        return state

    def logs(self) -> str:
        proc = self.engine.docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
        """Poll `check` until true; DockerError naming `what` with the container's logs."""
        deadline = time.monotonic() + timeout
        while not (self.state()["Running"] and check()):
            if time.monotonic() > deadline or not self.state()["Running"]:
                raise DockerError(f"{self.name}: {what} did not happen; logs:\n{self.logs()}")
            time.sleep(0.5)

    def stop(self, timeout: int) -> int:
        """`docker stop -t timeout` (SIGTERM, SIGKILL after `timeout` s); the exit code."""
        self.engine.docker("stop", "--time", str(timeout), self.name, timeout=timeout + 60)
        return int(self.state()["ExitCode"])

    def remove(self) -> None:
        self.engine.docker("rm", "--force", self.name, check=False)


def start_redis(
    engine: DockerEngine, sample: SampleChildren, image: str, volumes_root: Path
) -> PodContainer:
    """The managed Redis container under its pod spec, answering. Its network namespace maps
    the Redis Service's DNS name to its loopback: engines that join it reach Redis by that name."""
    service_host = urlsplit(redis_url(OWNER)).hostname
    redis = PodContainer.start(
        engine,
        sample.redis_pod,
        REDIS_CONTAINER,
        objects=sample.objects,
        image=image,
        volumes_root=volumes_root,
        extra_options=("--add-host", f"{service_host}:127.0.0.1"),
    )
    redis.wait_for("PONG", lambda: redis_cli(redis, sample.redis_password, "PING") == "PONG")
    return redis


def redis_cli(redis: PodContainer, password: str | None, *command: str) -> str:
    """`redis-cli` inside the Redis container (with `password` when given); its output."""
    auth = ("-a", password, "--no-auth-warning") if password is not None else ()
    return redis.exec("redis-cli", *auth, *command, check=False).strip()


def start_engine_pod(
    engine: DockerEngine,
    sample: SampleChildren,
    image: str,
    redis: PodContainer,
    volumes_root: Path,
) -> PodContainer:
    """The engine container under its pod spec in `redis`'s network namespace (started, not
    yet ready)."""
    return PodContainer.start(
        engine,
        sample.engine_pod,
        ENGINE_CONTAINER,
        objects=sample.objects,
        image=image,
        volumes_root=volumes_root,
        network=f"container:{redis.name}",
    )
