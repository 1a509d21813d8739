"""Session fixtures for tests that use Docker: an engine, CI's base images, the project's images.

Imported by tests/containers/conftest.py and by other test modules that need the images.

``docker_engine`` -> ``docker_engine.DockerEngine``: the daemon that answers ($DOCKER_HOST,
/var/run/docker.sock), else Debian's dockerd started for the session (installed by
scripts/system-deps when missing) with its state in ``~/.cache/novel-engine/docker``, stopped at
the end by PID. Where it cannot run (no root, no Debian), the tests fail when ``CI`` is set and
are skipped otherwise.

``ci_bases`` -> ``CiBases(python, redis)``: Debian bookworm (debootstrap) with Debian's python3 /
redis-server, built once and cached by a key of their inputs.

``project_images`` -> ``ProjectImages(engine, operator)``: ``make images`` on ``ci_bases.python``,
tagged ``novel-engine-ci/{engine,operator}:<version>`` (Docker's layer cache makes warm runs
cheap). pip in the build stages trusts the host's CA bundle (an egress proxy may re-sign HTTPS).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

try:
    from docker_engine import (
        HOST_CA_BUNDLE,
        CiBases,
        DockerEngine,
        DockerError,
        ProjectImages,
        build_images,
        ensure_ci_bases,
        start_engine,
    )
except ModuleNotFoundError:  # tests/containers imported as a package
    from .docker_engine import (  # type: ignore[no-redef]
        HOST_CA_BUNDLE,
        CiBases,
        DockerEngine,
        DockerError,
        ProjectImages,
        build_images,
        ensure_ci_bases,
        start_engine,
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    try:
        engine = start_engine()
    except DockerError as exc:
        if _in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def ci_bases(docker_engine: DockerEngine) -> CiBases:
    return ensure_ci_bases(docker_engine)


@pytest.fixture(scope="session")
def project_images(docker_engine: DockerEngine, ci_bases: CiBases) -> ProjectImages:
    ca = HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
    return build_images(docker_engine, ci_bases.python, ca_bundle=ca)
