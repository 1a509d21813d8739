"""Schemathesis against a real engine process: every check, seeded and bounded.

The run's settings are in schemathesis.toml beside this file (each is listed in the engine's
README, with the command of the full run).
"""

import asyncio
import sys
from pathlib import Path

import aiohttp

from .processes import EngineProcesses

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "1"
EXAMPLES_PER_OPERATION = "5"  # keeps the run near a minute; the README's full run uses 100


async def test_the_engine_keeps_its_openapi_contract(
    engines: EngineProcesses, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    engine = engines.start("fuzzed")
    await engine.ready(session)
    run = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "--config-file", str(CONFIG),
        "run", f"{engine.url}/openapi.json",
        "--checks", "all",
        "--seed", SEED,
        "--max-examples", EXAMPLES_PER_OPERATION,
        "--generation-database", "none",
        "--workers", "1",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(run.communicate(), 600)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    assert run.returncode == 0, output.decode(errors="replace")
    assert "Traceback" not in engine.log()
