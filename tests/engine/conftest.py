"""Engine test fixtures: a real redis-server on a free loopback port, stoppable mid-test;
engine processes and an HTTP session to talk to them."""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

if TYPE_CHECKING:
    from .processes import EngineProcesses

REDIS_BINARY = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def files_size(directory: Path) -> int:
    """What the files in a directory take on disk, by their sizes."""
    return sum(path.stat().st_size for path in directory.iterdir())


def stop_process(process: "subprocess.Popen[bytes]", timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A redis-server process without persistence; stop() and start() keep its port."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.password = password
        self._extra_args = list(extra_args)
        self._binary = binary
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            self._binary,
            "--save", "",
            "--appendonly", "no",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self._directory),
        ]  # fmt: skip
        if self.password is not None:
            command += ["--requirepass", self.password]
        command += self._extra_args
        with (self._directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log_text = (self._directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited early:\n{log_text}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not accept connections within 10 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections and data but answers nothing."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Starts redis-servers (optionally with a password and more redis-server arguments); all
    are stopped at teardown."""
    if REDIS_BINARY is None:
        pytest.skip("redis-server is not installed (scripts/system-deps installs it)")
    servers: list[RedisServer] = []

    def start(password: str | None = None, extra_args: Sequence[str] = ()) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(REDIS_BINARY, directory, password, extra_args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A running redis-server; its URL is `.url`."""
    return redis_factory()


@pytest.fixture
def engines(tmp_path: Path) -> Iterator["EngineProcesses"]:
    """Starts engine processes; every one is stopped at teardown."""
    from .processes import EngineProcesses  # it imports this module

    started = EngineProcesses(tmp_path)
    yield started
    started.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session
