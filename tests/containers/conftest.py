"""Fixtures of the container tests.

From docker_fixtures.py: ``docker_engine``, ``ci_bases``, ``project_images`` (see there).

``sample`` -> ``pods.SampleChildren``: the sample NovelEngine's engine and Redis pod specs from the
operator's builders, and the ConfigMaps and Secret they refer to.

``redis_pod`` -> ``pods.PodContainer``: one managed Redis container for the session, under its
pod spec (CI: Debian's redis-server), answering; engines join its network namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from docker_engine import CiBases, DockerEngine
    from docker_fixtures import ci_bases, docker_engine, project_images
    from pods import PodContainer, SampleChildren, sample_children, start_redis
except ModuleNotFoundError:  # tests/containers imported as a package
    from .docker_engine import CiBases, DockerEngine  # type: ignore[no-redef]
    from .docker_fixtures import (  # type: ignore[no-redef]
        ci_bases,
        docker_engine,
        project_images,
    )
    from .pods import (  # type: ignore[no-redef]
        PodContainer,
        SampleChildren,
        sample_children,
        start_redis,
    )

__all__ = ["ci_bases", "docker_engine", "project_images", "redis_pod", "sample"]


@pytest.fixture(scope="session")
def sample() -> SampleChildren:
    """The sample NovelEngine's pod specs and the objects they refer to."""
    return sample_children()


@pytest.fixture(scope="session")
def redis_pod(
    docker_engine: DockerEngine,
    ci_bases: CiBases,
    sample: SampleChildren,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PodContainer]:
    """One managed Redis container for the session (CI: Debian's redis-server)."""
    redis = start_redis(docker_engine, sample, ci_bases.redis, tmp_path_factory.mktemp("redis"))
    try:
        yield redis
    finally:
        redis.remove()
