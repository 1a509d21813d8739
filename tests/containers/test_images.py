"""What the engine and operator images hold and how they are configured (CI base)."""

import hashlib
import json
from typing import Any

import pytest

try:
    from docker_engine import HOST_CA_BUNDLE, DockerEngine, ProjectImages, package_version
except ModuleNotFoundError:  # tests/containers imported as a package
    from .docker_engine import (  # type: ignore[no-redef]
        HOST_CA_BUNDLE,
        DockerEngine,
        ProjectImages,
        package_version,
    )

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

# Runs as root inside an image: what a build might have left behind, as JSON.
_LEFTOVERS = """\
import hashlib, importlib.util, json, os, shutil, sys
ca_size, ca_sha = int(sys.argv[1]), sys.argv[2]
same_as_ca = []
for folder, subfolders, files in os.walk("/"):
    if folder == "/":
        subfolders[:] = [d for d in subfolders if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        if os.path.getsize(path) == ca_size:
            with open(path, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() == ca_sha:
                    same_as_ca.append(path)
print(json.dumps({
    "same_as_ca": same_as_ca,
    "pip_caches": [p for p in ("/root/.cache/pip", "/tmp/pip-cache") if os.path.exists(p)],
    "sources": os.path.exists("/src"),
    "pip": importlib.util.find_spec("pip") is not None,
    "tools": [t for t in ("gcc", "cc", "c++", "make", "ld", "as") if shutil.which(t)],
}))
"""


def _config(engine: DockerEngine, image: str) -> dict[str, Any]:
    out = engine.docker("image", "inspect", "--format", "{{json .Config}}", image)
    config: dict[str, Any] = json.loads(out.stdout)
    return config


@pytest.mark.parametrize(
    ("target", "user"), [("engine", "10001:10001"), ("operator", "10002:10002")]
)
def test_images_are_labelled_with_the_version_and_run_as_a_numeric_user(
    docker_engine: DockerEngine, project_images: ProjectImages, target: str, user: str
) -> None:
    config = _config(docker_engine, getattr(project_images, target))

    assert config["User"] == user
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == package_version()
    assert (
        labels["org.opencontainers.image.title"]
        == f"novel-engine{'-operator' * (target == 'operator')}"
    )
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    # tini first: PID 1 passes signals on to the program.
    assert config["Entrypoint"] == [
        "/usr/bin/tini",
        "--",
        f"novel-engine{'-operator' * (target == 'operator')}",
    ]


def test_the_engine_image_checks_its_own_health(
    docker_engine: DockerEngine, project_images: ProjectImages
) -> None:
    config = _config(docker_engine, project_images.engine)
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "novel-engine"]


@pytest.mark.parametrize("target", ["engine", "operator"])
def test_images_hold_nothing_from_the_build(
    docker_engine: DockerEngine, project_images: ProjectImages, target: str
) -> None:
    ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else b"no CA bundle on this host"
    out = docker_engine.docker(
        "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "python3",
        getattr(project_images, target),
        "-c", _LEFTOVERS, str(len(ca)), hashlib.sha256(ca).hexdigest(),
    )  # fmt: skip
    assert json.loads(out.stdout) == {
        "same_as_ca": [],
        "pip_caches": [],
        "sources": False,
        "pip": False,
        "tools": [],
    }


def test_only_the_operator_image_carries_the_operator_dependencies(
    docker_engine: DockerEngine, project_images: ProjectImages
) -> None:
    probe = ["--network", "none", "--read-only", "--cap-drop", "ALL", "--entrypoint", "python3"]
    check = "import kopf, kubernetes"
    engine = docker_engine.docker(
        "run", "--rm", *probe, project_images.engine, "-c", check, check=False
    )
    assert "No module named 'kopf'" in engine.stderr
    docker_engine.docker("run", "--rm", *probe, project_images.operator, "-c", check)
    # The operator starts on a read-only root as its non-root user.
    out = docker_engine.docker(
        "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", project_images.operator, "--help",
    )  # fmt: skip
    assert "novel-engine-operator" in out.stdout
