"""Real engine processes: determinism across processes, restarts, SIGTERM drain, SIGKILL, read-only
root."""

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from novel_engine.jobs import SHUTDOWN_REASON
from novel_engine.metrics import IN_FLIGHT_METRIC

from . import pool_faults
from .api import FULL_CAST, SIEGE, metric_samples, until
from .conftest import RedisServer, free_port
from .pool_faults import HALF_WRITTEN_MARKER
from .processes import EngineProcess, EngineProcesses, get, post


async def test_two_processes_compute_the_same_id_and_bytes(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    # Different hash seeds: nothing in the model may depend on str hashing or set order.
    first = engines.start("a", env={"PYTHONHASHSEED": "1"})
    second = engines.start("b", env={"PYTHONHASHSEED": "2"})
    await asyncio.gather(first.ready(session), second.ready(session))
    for body in [SIEGE, {"character_ids": FULL_CAST, "turns": 50, "seed": 99}]:
        status_a, result_a = await post(session, first, "/v1/simulations", body)
        status_b, result_b = await post(session, second, "/v1/simulations", body)
        assert status_a == status_b == 200
        assert result_a == result_b


async def test_content_survives_a_restart(
    engines: EngineProcesses, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    engine = engines.start("data")
    await engine.ready(session)
    created, _ = await post(
        session,
        engine,
        "/v1/characters",
        {"name": "Ada Quill", "faction": "Guild", "archetype": "engineer"},
    )
    assert created == 201
    async with session.delete(engine.url + "/v1/characters/bram-holt") as response:
        assert response.status == 204
    engine.terminate()
    assert await engine.exit_code() == 0

    restarted = engines.start("data")
    await restarted.ready(session)
    assert (await get(session, restarted, "/v1/characters/ada-quill"))[0] == 200
    assert (await get(session, restarted, "/v1/characters/bram-holt"))[0] == 404  # not re-seeded
    assert (await get(session, restarted, "/v1/characters/ilse-varn"))[0] == 200


async def in_flight(session: aiohttp.ClientSession, engine: EngineProcess) -> float:
    _, text = await get(session, engine, "/metrics")
    return metric_samples(text.decode(), IN_FLIGHT_METRIC)[""]


async def in_flight_is(session: aiohttp.ClientSession, engine: EngineProcess, count: int) -> bool:
    return await in_flight(session, engine) == count


async def wait_all_in_flight(
    session: aiohttp.ClientSession, engine: EngineProcess, requests: list[asyncio.Future[Any]]
) -> None:
    """Wait until the engine serves every one of `requests`, none of them answered yet."""

    await until(lambda: in_flight_is(session, engine, len(requests)))
    assert not any(request.done() for request in requests), "requests finished before SIGTERM"


async def test_sigterm_drains_in_flight_requests_and_records_queued_jobs(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    # No shutdown delay: the queued jobs must still be queued when the drain begins.
    engine = engines.start(
        "data",
        *("--shutdown-delay", "0", "--drain-timeout", "20"),
        *("--queue-limit", "100", "--thread-workers", "1"),
    )
    await engine.ready(session)
    # Queue background jobs first (low priority), then the requests whose answers we wait for.
    job_ids = []
    for seed in range(20):
        body = {
            "character_ids": FULL_CAST,
            "turns": 200,
            "seed": seed,
            "mode": "async",
            "priority": "low",
        }
        status, raw = await post(session, engine, "/v1/simulations", body)
        assert status == 202
        job_ids.append(json.loads(raw)["id"])
    requests = [
        asyncio.ensure_future(
            post(
                session,
                engine,
                "/v1/simulations",
                {**SIEGE, "turns": 200, "seed": seed, "priority": "high"},
            )
        )
        for seed in range(4)
    ]
    await wait_all_in_flight(session, engine, requests)

    engine.terminate()
    answers = await asyncio.gather(*requests)
    assert [status for status, _ in answers] == [200] * len(requests)
    assert await engine.exit_code() == 0
    assert "draining" in engine.log()

    restarted = engines.start("data")
    await restarted.ready(session)
    states = []
    for job_id in job_ids:
        status, raw = await get(session, restarted, f"/v1/simulations/{job_id}")
        assert status == 200
        body = json.loads(raw)
        states.append(body["status"])
        if body["status"] == "failed":
            assert body["error"] == SHUTDOWN_REASON
    assert set(states) <= {"succeeded", "failed"}  # never left queued, never lost
    assert "failed" in states


async def test_requests_the_drain_budget_cannot_serve_answer_503_not_a_dropped_connection(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    # One pool worker and a 1 s budget: most of these long simulations cannot run in time.
    engine = engines.start(
        "data",
        *("--shutdown-delay", "0", "--drain-timeout", "1"),
        *("--queue-limit", "100", "--process-workers", "1"),
    )
    await engine.ready(session)
    body = {"character_ids": FULL_CAST, "turns": 200}
    requests = [
        asyncio.ensure_future(post(session, engine, "/v1/simulations", {**body, "seed": seed}))
        for seed in range(40)
    ]
    await wait_all_in_flight(session, engine, requests)

    engine.terminate()
    answers = await asyncio.gather(*requests, return_exceptions=True)
    dropped = [answer for answer in answers if isinstance(answer, BaseException)]
    assert not dropped, dropped
    replies = [answer for answer in answers if not isinstance(answer, BaseException)]
    statuses = {status for status, _ in replies}
    assert 503 in statuses
    assert statuses <= {200, 503}
    for status, raw in replies:
        if status == 503:
            assert "shutting down" in json.loads(raw)["detail"]
    assert await engine.exit_code() == 0


async def test_a_body_still_uploading_when_the_drain_begins_is_read_and_answered(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("data", *("--shutdown-delay", "0", "--drain-timeout", "20"))
    await engine.ready(session)
    body = json.dumps({"name": "Slow Upload", "faction": "Couriers", "archetype": "scout"})
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    head = (
        "POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:10].encode())
    await writer.drain()
    await until(lambda: in_flight_is(session, engine, 1))  # its handler awaits the rest

    engine.terminate()
    await until(lambda: listener_closed(engine))  # and with it, the idle connections
    engine.terminate()  # a signal during the drain changes nothing, and says so
    await until(lambda: "SIGTERM received: already draining" in engine.log())
    writer.write(body[10:].encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)  # to the end: the engine closes it
    writer.close()
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 201"), answer
    assert b"\r\nconnection: close" in head  # no next request on this connection
    assert await engine.exit_code() == 0


async def test_a_request_whose_head_is_arriving_when_the_drain_begins_is_answered(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    """The drain waits for a request whose head has begun to arrive, as for one in flight; a
    connection whose last request left the rest of its body unread is idle, and closes."""
    engine = engines.start("data", *("--shutdown-delay", "0", "--drain-timeout", "60"))
    await engine.ready(session)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", engine.port)
    # A 404 answered before its body was read: aiohttp reads the rest, and the connection idles.
    idle_writer.write(b"POST /nowhere HTTP/1.1\r\nHost: engine\r\nContent-Length: 4\r\n\r\nab")
    await idle_writer.drain()
    assert (await idle_reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 404")
    idle_writer.write(b"cd")
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    writer.write(b"GET /v1/characters/ilse-varn HTTP/1.1\r\nHost: engine\r\n")  # no end yet
    await writer.drain()
    await asyncio.sleep(0.2)  # (loopback: the engine reads what was sent at once)

    engine.terminate()
    await until(lambda: listener_closed(engine))
    # Closed as the drain begins: kept, it would stay until the drain ends, a minute later.
    assert b"no such route" in await asyncio.wait_for(idle_reader.read(), 20)
    writer.write(b"\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    idle_writer.close()
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200"), answer
    assert b"\r\nconnection: close" in head
    assert await engine.exit_code() == 0


async def test_a_misspelt_setting_in_the_environment_is_logged_at_start(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start(
        "data", env={"NOVEL_ENGINE_DATADIR": "/elsewhere", "NOVEL_ENGINE_SERVICE_HOST": "10.0.0.1"}
    )
    await engine.ready(session)
    assert (
        "WARNING novel_engine: NOVEL_ENGINE_DATADIR names no setting; ignored"
        " (did you mean NOVEL_ENGINE_DATA_DIR?)"
    ) in engine.log()
    assert "SERVICE_HOST" not in engine.log()


async def listener_closed(engine: EngineProcess) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


def can_make_root_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -o remount,bind,ro /",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not can_make_root_read_only(), reason="needs mount namespaces (unshare)")
async def test_engine_runs_with_a_read_only_root_filesystem(
    engines: EngineProcesses, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data, scratch, home = tmp_path / "data", tmp_path / "scratch", tmp_path / "home"
    for directory in (data, scratch, home):
        directory.mkdir()
    # A private mount namespace: only the data dir and the temp dir stay writable.
    script = (
        f"mount --bind {data} {data} && mount --bind {scratch} {scratch} && "
        'mount -o remount,bind,ro / && exec "$@"'
    )
    engine = engines.start(
        "data",
        "--process-cost-threshold", "10",
        env={"HOME": str(home), "TMPDIR": str(scratch)},
        cwd=home,
        wrapper=["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"],
    )  # fmt: skip
    await engine.ready(session)
    status, raw = await post(session, engine, "/v1/simulations", SIEGE)  # in the process pool
    assert status == 200, raw
    created, _ = await post(
        session, engine, "/v1/campaigns", {"title": "Read Only Test", "setting": "Nowhere."}
    )
    assert created == 201
    _, metrics = await get(session, engine, "/metrics")
    assert (
        'novel_engine_scheduler_tasks_total{executor="process",outcome="ok"} 1.0'
        in metrics.decode()
    )
    engine.terminate()
    assert await engine.exit_code() == 0
    assert list(home.iterdir()) == []
    assert "Read-only file system" not in engine.log()


@pytest.mark.skipif(not can_make_root_read_only(), reason="needs mount namespaces (unshare)")
def test_no_writable_temp_dir_exits_2_at_start_not_500_at_the_first_pooled_simulation(
    tmp_path: Path,
) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    for directory in (data, home):
        directory.mkdir()
    # Only the data dir stays writable: no temp dir (a read-only root without its /tmp volume).
    # Every candidate temp dir's mount goes read-only, wherever /tmp and the test's folder are
    # mounted on this machine.
    script = (
        f"mount --bind {data} {data} && "
        f'for m in / /tmp /var/tmp "$(findmnt -n -o TARGET -T {home})"; do '
        "if mountpoint -q $m; then mount -o remount,bind,ro $m || exit 99; fi; done && "
        'exec "$@"'
    )
    finished = subprocess.run(
        [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            sys.executable, "-m", "novel_engine",
            "--port", str(free_port()), "--data-dir", str(data),
        ],
        env={**os.environ, "HOME": str(home), "TMPDIR": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert finished.returncode == 2
    assert finished.stderr.startswith("novel-engine: temp dir: "), finished.stderr
    assert "No usable temporary directory found in" in finished.stderr
    assert finished.stderr.count("\n") == 1
    assert list(data.iterdir()) == []  # stopped before it opened anything


async def test_with_l2_any_process_serves_any_result(
    engines: EngineProcesses, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    first = engines.start("a", "--redis-url", redis_server.url)
    second = engines.start("b", "--redis-url", redis_server.url)
    await asyncio.gather(first.ready(session), second.ready(session))
    status, result = await post(session, first, "/v1/simulations", SIEGE)
    assert status == 200
    simulation_id = json.loads(result)["id"]
    assert await get(session, second, f"/v1/simulations/{simulation_id}") == (200, result)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "novel_engine", *args], capture_output=True, text=True, timeout=60
    )


def test_invalid_settings_exit_2_with_a_one_line_message() -> None:
    finished = run_cli("--port", "99999")
    assert finished.returncode == 2
    assert finished.stderr.strip() == (
        "novel-engine: port: Input should be less than or equal to 65535 (from --port)"
    )


@pytest.mark.redis
def test_a_redis_database_the_server_does_not_have_exits_2(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    missing_database = redis_server.url.rsplit("/", 1)[0] + "/99"  # Redis has 16 by default
    finished = run_cli(
        *("--port", str(free_port()), "--data-dir", str(tmp_path / "data")),
        *("--redis-url", missing_database),
    )
    assert finished.returncode == 2
    assert finished.stderr.strip() == (
        "novel-engine: redis_url: Redis refuses the connection: DB index is out of range"
    )


def test_a_bad_content_file_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()
    (content / "cast.yaml").write_text("characters: [{name: Ada, archetype: engineer}]")
    finished = run_cli(
        "--port", str(free_port()), "--data-dir", str(tmp_path / "data"), "--content", str(content)
    )
    assert finished.returncode == 2
    assert "cast.yaml: characters.0.faction: Field required" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_an_unusable_data_dir_exits_2_naming_it(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    finished = run_cli("--port", str(free_port()), "--data-dir", str(not_a_dir / "data"))
    assert finished.returncode == 2
    assert finished.stderr.startswith(
        f"novel-engine: data_dir: cannot open the database {not_a_dir / 'data'}/"
    )
    assert "Traceback" not in finished.stderr


@pytest.mark.parametrize("fault", ["locked", "not-a-database"])
def test_a_database_the_engine_cannot_use_exits_2_naming_it(tmp_path: Path, fault: str) -> None:
    # Each fails at a connection's first statement, whose thread must not outlive the failure.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "engine.sqlite3"
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        if fault == "locked":  # another process holds the file
            holder.execute("CREATE TABLE held (id INTEGER)")
            holder.execute("BEGIN EXCLUSIVE")
            reason = "database is locked"
        else:
            database.write_bytes(os.urandom(20_000))
            reason = "file is not a database"
        finished = run_cli("--port", str(free_port()), "--data-dir", str(data_dir))
    finally:
        holder.close()
    assert finished.returncode == 2
    assert finished.stderr.strip() == (
        f"novel-engine: data_dir: cannot open the database {database}: {reason}"
    )


async def test_a_second_engine_on_a_data_dir_in_use_exits_2_and_touches_nothing(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("data", "--thread-workers", "1", "--process-workers", "1")
    await engine.ready(session)
    job_ids = []
    for seed in range(8):  # queued one behind the other
        body = {"character_ids": FULL_CAST, "turns": 200, "seed": seed, "mode": "async"}
        status, raw = await post(session, engine, "/v1/simulations", body)
        assert status == 202
        job_ids.append(json.loads(raw)["id"])

    second = await asyncio.to_thread(
        run_cli, "--port", str(free_port()), "--data-dir", str(engine.data_dir)
    )
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"novel-engine: data_dir: {engine.data_dir} is in use by another engine process"
        " (it holds engine.sqlite3.lock)"
    )
    # The first engine's queued jobs were not taken for a crashed engine's and failed.
    for job_id in job_ids:
        status, raw = await get(session, engine, f"/v1/simulations/{job_id}")
        assert status == 200
        assert json.loads(raw).get("error") is None, raw


def test_a_busy_port_exits_1_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        finished = run_cli("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert finished.returncode == 1
    assert finished.stderr.startswith(f"novel-engine: cannot serve on 127.0.0.1:{port}: ")
    assert "Traceback" not in finished.stderr


async def test_an_engine_without_redis_or_process_work_never_imports_them(
    engines: EngineProcesses, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # A sitecustomize on the engine's path writes its modules down when the process exits.
    hook = tmp_path / "hook"
    hook.mkdir()
    modules_file = tmp_path / "modules.txt"
    (hook / "sitecustomize.py").write_text(
        "import atexit, pathlib, sys\n"
        f"atexit.register(lambda: pathlib.Path({str(modules_file)!r})"
        ".write_text('\\n'.join(sys.modules)))\n"
    )
    engine = engines.start("lazy", env={"PYTHONPATH": str(hook)})
    await engine.ready(session)
    inline = {**SIEGE, "turns": 10}  # 4 x 10 agent-turns: within the inline limit
    status, _ = await post(session, engine, "/v1/simulations", inline)
    assert status == 200
    assert (await get(session, engine, "/metrics"))[0] == 200
    engine.terminate()
    assert await engine.exit_code() == 0
    modules = set(modules_file.read_text().split())
    assert "novel_engine.cache.tiered" in modules  # the hook saw the serving process
    assert not {m for m in modules if m.partition(".")[0] in {"redis", "multiprocessing"}}


async def test_sigterm_ends_the_process_when_a_pool_worker_died_writing_its_result(
    engines: EngineProcesses, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    marker = tmp_path / "half-written"
    engine = engines.start(
        "data", "--drain-timeout", "1", "--process-workers", "1", "--process-cost-threshold", "0",
        env={HALF_WRITTEN_MARKER: str(marker)},
        entry=(str(Path(pool_faults.__file__)),),
    )  # fmt: skip
    await engine.ready(session)
    request = asyncio.ensure_future(
        post(session, engine, "/v1/simulations", {**SIEGE, "turns": 5, "seed": 1})
    )
    for _ in range(600):
        if marker.exists() or request.done():
            break
        await asyncio.sleep(0.1)
    assert marker.exists(), f"the pool worker did not write half a result:\n{engine.log()}"

    engine.terminate()
    try:
        code = await engine.exit_code(60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 60 s after SIGTERM:\n{engine.log()}") from None
    assert code == 0, engine.log()
    assert engine.log().rstrip().endswith("stopped"), engine.log()
    await asyncio.gather(request, return_exceptions=True)  # cut off by the drain deadline


#: A process as /proc names it: its pid and its start time (a reused pid starts later).
Process = tuple[int, int]


def running_processes() -> dict[Process, int]:
    """Each running process and its parent's pid, from /proc/<pid>/stat (zombies left out:
    they have ended)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        # After the command name in parentheses: state, ppid, ... starttime (the 20th field).
        fields = text.rpartition(")")[2].split()
        if fields[0] != "Z":
            parents[int(stat.parent.name), int(fields[19])] = int(fields[1])
    return parents


def descendants(pid: int) -> set[Process]:
    """The running processes `pid` started, and those they started."""
    parents = running_processes()
    found: set[Process] = set()
    while True:
        pids = {pid, *(child for child, _ in found)}
        new = {child for child, parent in parents.items() if parent in pids} - found
        if not new:
            return found
        found |= new


async def test_a_killed_engine_leaves_no_pool_processes_behind(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("data", "--process-workers", "2", "--process-cost-threshold", "0")
    await engine.ready(session)
    status, raw = await post(session, engine, "/v1/simulations", SIEGE)  # starts the pool
    assert status == 200, raw
    started = descendants(engine.pid)
    assert len(started) >= 4, started  # the resource tracker, the fork server, two workers

    await engine.kill()  # as the OOM killer would: no chance to stop the pool

    def all_ended() -> bool:
        return not started & running_processes().keys()

    try:
        await until(all_ended, seconds=30)
    finally:
        for pid, _ in started & running_processes().keys():
            os.kill(pid, signal.SIGKILL)  # what the test started must not outlive it
