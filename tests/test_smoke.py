"""Both packages import and the engine app factory serves its liveness probe."""

from pytest_aiohttp import AiohttpClient

import novel_engine
import novel_operator
from novel_engine.app import create_app


def test_packages_have_versions() -> None:
    assert novel_engine.__version__ == novel_operator.__version__


async def test_engine_app_serves_healthz(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app())
    response = await client.get("/healthz")
    assert response.status == 200
