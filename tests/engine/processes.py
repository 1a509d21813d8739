"""Engine processes for tests: `python -m novel_engine` (or a launcher script) on a free loopback
port, stopped by PID."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import free_port, stop_process


class EngineProcess:
    """One engine process; its output goes to a log file next to its data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        wrapper: Sequence[str] = (),
        entry: Sequence[str] = ("-m", "novel_engine"),
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-{self.port}.log"
        self._command = [
            *wrapper,
            sys.executable, *entry,
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir),
            "--shutdown-delay", "0",  # tests stop engines at once; `args` may set another delay
            *args,
        ]  # fmt: skip
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> "EngineProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=self._cwd
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, session: aiohttp.ClientSession, seconds: float = 60) -> None:
        """Wait until /readyz answers 200; fail with the log if the process dies first."""
        assert self._process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"engine exited ({self._process.returncode}):\n{self.log()}")
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"engine not ready within {seconds} s:\n{self.log()}")

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    async def kill(self) -> None:
        """SIGKILL: the process dies at once, as when its node fails."""
        os.kill(self.pid, signal.SIGKILL)
        await self.exit_code()

    async def exit_code(self, seconds: float = 60) -> int:
        assert self._process is not None
        return await asyncio.to_thread(self._process.wait, seconds)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 30 s."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=30)


class EngineProcesses:
    """Starts engines for one test and stops every one of them at the end."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[EngineProcess] = []

    def start(
        self,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        wrapper: Sequence[str] = (),
        entry: Sequence[str] = ("-m", "novel_engine"),
    ) -> EngineProcess:
        """Start an engine whose data directory is ``<test dir>/<name>``; ``entry`` is what
        follows the Python interpreter on the command line (a module or a launcher script)."""
        engine = EngineProcess(
            self._directory / name, args=args, env=env, cwd=cwd, wrapper=wrapper, entry=entry
        )
        self._started.append(engine)
        return engine.start()

    def close(self) -> None:
        for engine in self._started:
            engine.stop()


async def post(
    session: aiohttp.ClientSession, engine: EngineProcess, path: str, body: dict[str, Any]
) -> tuple[int, bytes]:
    async with session.post(engine.url + path, json=body) as response:
        return response.status, await response.read()


async def get(
    session: aiohttp.ClientSession, engine: EngineProcess, path: str
) -> tuple[int, bytes]:
    async with session.get(engine.url + path) as response:
        return response.status, await response.read()
