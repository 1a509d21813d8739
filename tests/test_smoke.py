"""Both packages import and the engine app factory serves its liveness probe."""

from pathlib import Path

from pytest_aiohttp import AiohttpClient

import novel_engine
import novel_operator
from novel_engine.app import create_app
from novel_engine.config import Settings


def test_packages_have_versions() -> None:
    assert novel_engine.__version__ == novel_operator.__version__


async def test_engine_app_serves_healthz(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path)))
    response = await client.get("/healthz")
    assert response.status == 200
