"""`novel-engine` command line."""

import argparse
from collections.abc import Sequence

from aiohttp import web

from novel_engine.app import create_app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="novel-engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", default=".data")
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port)
