"""The benches' baseline servers: bare aiohttp apps, each run as a process of its own.

A module apart from the benches, so that a baseline process imports aiohttp (and, for the
libraries-only floor, the engine's libraries) and nothing of the benches' own machinery
(subprocess, urllib, statistics...), which would count in its memory and lift the floor that
bench_rss compares the engine with.

Run: `python -m bench.baseline_apps hello PORT`, `... libraries PORT` (the hello app after
importing the engine's libraries) or `... same-bytes PORT BODY_FILE CONTENT_TYPE`.
"""

import importlib
import sys
from pathlib import Path

from aiohttp import web

CHARACTER_ROUTE = "/v1/characters/{id}"
# What the engine imports beyond aiohttp: its libraries, without the engine's own code.
ENGINE_LIBRARIES = ("pydantic", "prometheus_client", "aiosqlite", "yaml")


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


def serve(app: web.Application, port: int) -> None:
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_hello(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    serve(app, port)


def serve_libraries(port: int) -> None:
    """The hello app after importing the engine's libraries (no engine code)."""
    for name in ENGINE_LIBRARIES:
        importlib.import_module(name)
    pydantic = sys.modules["pydantic"]
    # The first model class builds pydantic's validation machinery, as the engine's do.
    model = pydantic.create_model("Probe", name=(str, ...))
    model(name="probe")
    serve_hello(port)


def serve_same_bytes(port: int, body: bytes, content_type: str) -> None:
    """A bare app answering GET CHARACTER_ROUTE with ``body`` as ``content_type``."""

    async def same_bytes(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get(CHARACTER_ROUTE, same_bytes)
    serve(app, port)


def main(arguments: list[str]) -> None:
    match arguments:
        case ["hello", port]:
            serve_hello(int(port))
        case ["libraries", port]:
            serve_libraries(int(port))
        case ["same-bytes", port, body_file, content_type]:
            serve_same_bytes(int(port), Path(body_file).read_bytes(), content_type)
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
