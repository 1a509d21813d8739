"""A Docker engine for the container tests, and the images they run.

Used by the session fixtures in tests/containers/conftest.py and by scripts/docker-engine (CLI for
humans). Standard library only.

The daemon: one that already answers (``$DOCKER_HOST``, else /var/run/docker.sock, as on GitHub
runners) is used as it is. Otherwise Debian's ``dockerd`` (package docker.io, installed by
scripts/system-deps when missing) is started here with no bridge and no iptables rules, its state
under ``<cache>/docker/`` (``~/.cache/novel-engine/docker`` by default), so images and layers
survive between runs. Builds and containers then use the host network or none.

No registry can be reached from CI, so CI's base images are made locally (``ensure_ci_bases``):
Debian bookworm from ``debootstrap --variant=minbase`` imported as an image, plus
images/ci-base/Dockerfile (Debian's python3 3.11; Debian's redis-server 7.0). They are tagged with a
key of their inputs and skipped when present. ``build_images`` builds the project's images with
``make images`` on such a base.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
CI_BASE_DOCKERFILE = REPO_ROOT / "images" / "ci-base" / "Dockerfile"
#: Free space the daemon's data root needs for the bases, the images and their build cache.
MIN_FREE_BYTES = 6 * 2**30
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: The host's CA bundle: pip inside a build trusts it (an egress proxy may re-sign HTTPS).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SYSTEM_PACKAGES = ("docker.io", "debootstrap")
DEFAULT_SOCKETS = ("/var/run/docker.sock",)
PROXY_VARIABLES = tuple(
    name for base in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY") for name in (base, base.lower())
)
#: Folders under /usr/share that the CI base leaves out, as Debian's slim images do.
SLIM_EXCLUDED = ("doc", "man", "info", "locale")


def _load_testbed() -> ModuleType:
    """tests/integration/testbed.py: its cache rule and process helpers (PID checks, logs)."""
    path = REPO_ROOT / "tests" / "integration" / "testbed.py"
    spec = importlib.util.spec_from_file_location("novel_engine_testbed_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


_testbed = _load_testbed()


class DockerError(RuntimeError):
    """The engine could not be found or started, or a docker command failed."""


def state_dir() -> Path:
    """The started daemon's folder: data root, exec root, socket, pidfile and log."""
    k8s_cache: Path = _testbed.cache_dir()
    return k8s_cache.parent / "docker"


# ----------------------------------------------------------------------------- the daemon


def _ping_unix(path: str, timeout: float = 2.0) -> bool:
    """True if a Docker API answers `GET /_ping` on the unix socket `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and reply.rstrip().endswith(b"OK")


def _answers(host: str) -> bool:
    if host.startswith("unix://"):
        return _ping_unix(host.removeprefix("unix://"))
    # Another transport (tcp, ssh): let the client try it.
    proc = subprocess.run(
        ["docker", "--host", host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode == 0


@dataclass
class DockerEngine:
    """A Docker daemon to talk to. ``pid`` is set when this process started it: ``stop()``
    ends that daemon (by PID) and does nothing to a daemon found running."""

    host: str
    pid: int | None = None
    directory: Path | None = None  # the started daemon's state

    def env(self) -> dict[str, str]:
        """The environment for docker commands (and `make images`) aimed at this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(
        self, *args: str, check: bool = True, timeout: float | None = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker args...`; DockerError with its output when it fails and `check`."""
        proc = subprocess.run(
            ["docker", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and proc.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the daemon this process started (SIGKILL after `grace`)."""
        if self.pid is None or self.directory is None:
            return
        _stop_pid(self.pid, grace)
        self.pid = None
        _unmount_below(self.directory / "exec")


def _stop_pid(pid: int, grace: float) -> None:
    _testbed.stop_pid(pid, lambda: _testbed._pid_alive(pid), grace)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def running_engine(directory: Path | None = None) -> DockerEngine | None:
    """A daemon that answers: $DOCKER_HOST, else the default socket, else ours; or None."""
    if os.environ.get("DOCKER_HOST"):
        host = os.environ["DOCKER_HOST"]
        if not _answers(host):
            raise DockerError(f"DOCKER_HOST={host} does not answer")
        return DockerEngine(host)
    sockets = [*DEFAULT_SOCKETS, str((directory or state_dir()) / "docker.sock")]
    for path in sockets:
        if _ping_unix(path):
            return DockerEngine(f"unix://{path}")
    return None


def check_free_disk(directory: Path, needed: int = MIN_FREE_BYTES) -> None:
    """DockerError naming the folder and the figures when it has less than `needed` free."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DockerError(
            f"{directory}: {free / 2**30:.1f} GiB free, the Docker engine's images need "
            f"{needed / 2**30:.0f} GiB: free some space (or set XDG_CACHE_HOME elsewhere)"
        )


def ensure_installed() -> None:
    """Install Debian's docker.io and debootstrap through scripts/system-deps when missing."""
    if shutil.which("dockerd") and shutil.which("debootstrap") and shutil.which("docker"):
        return
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "system-deps"), *SYSTEM_PACKAGES])
    if proc.returncode != 0:
        raise DockerError(f"could not install {' '.join(SYSTEM_PACKAGES)} (scripts/system-deps)")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One starter at a time (two test sessions may start together)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start_engine(
    directory: Path | None = None, *, detach: bool = False, timeout: float = 60.0
) -> DockerEngine:
    """A running daemon: an answering one, else dockerd started with its state in `directory`
    (``pid`` set). ``detach=False`` makes the kernel SIGTERM it if this process dies."""
    directory = directory or state_dir()
    with _locked(directory):
        found = running_engine(directory)
        if found is not None:
            return found
        check_free_disk(directory)
        ensure_installed()
        sock = directory / "docker.sock"
        log = directory / "dockerd.log"
        argv = [
            shutil.which("dockerd") or "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--storage-driver=overlay2",
            f"--data-root={directory / 'data'}",
            f"--exec-root={directory / 'exec'}",
            f"--host=unix://{sock}",
            f"--pidfile={directory / 'docker.pid'}",
        ]
        with open(log, "ab") as out:
            out.write(f"# {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
                # SIGTERM: dockerd then stops its containers, which a SIGKILL would leave behind.
                preexec_fn=None
                if detach
                else functools.partial(_testbed._die_with_parent, signal.SIGTERM),
            )
        engine = DockerEngine(f"unix://{sock}", pid=proc.pid, directory=directory)
        deadline = time.monotonic() + timeout
        while not _ping_unix(str(sock)):
            if proc.poll() is not None or time.monotonic() > deadline:
                engine.stop()
                raise DockerError(f"dockerd did not start; its log:\n{_testbed.tail(log, 30)}")
            time.sleep(0.3)
        return engine


def stop_started_engine(directory: Path | None = None, grace: float = 30.0) -> bool:
    """Stop the dockerd started with its state in `directory` (by its pidfile, after checking
    that the PID still runs dockerd on that data root). False if none runs."""
    directory = directory or state_dir()
    try:
        pid = int((directory / "docker.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return False
    if not cmdline[0].endswith("dockerd") or f"--data-root={directory / 'data'}" not in cmdline:
        return False
    _stop_pid(pid, grace)
    _unmount_below(directory / "exec")
    return True


# ----------------------------------------------------------------------------- CI base images


@dataclass(frozen=True)
class CiBases:
    """Local stand-ins for the bases users get: `python` for python:3.12-slim (Debian's
    python3 3.11) and `redis` for redis:7.4-alpine (Debian's redis-server 7.0)."""

    python: str
    redis: str


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for bookworm (the default one otherwise)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if uri.startswith("http") and uri.endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


def ci_base_key(mirror: str) -> str:
    """Tag of the CI bases: changes with their Dockerfile, the suite or the mirror."""
    digest = hashlib.sha256()
    digest.update(CI_BASE_DOCKERFILE.read_bytes())
    digest.update(f"{DEBIAN_SUITE} minbase {mirror} slim {SLIM_EXCLUDED}".encode())
    return digest.hexdigest()[:12]


def _unmount_below(directory: Path) -> None:
    """Unmount what is left mounted below `directory`: proc and sys after a failed debootstrap,
    the network namespace dockerd keeps in its exec root after it stopped."""
    prefix = f"{directory.resolve()}/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


def _build_rootfs(engine: DockerEngine, ref: str, mirror: str, work: Path) -> None:
    rootfs = work / "rootfs"
    try:
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
            capture_output=True,
            text=True,
        )
    finally:
        _unmount_below(work)
    if proc.returncode != 0:
        raise DockerError(f"debootstrap failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    # As in Debian's official slim images: package scripts never start services in a build,
    # and neither debootstrap's downloads nor docs, man pages and translations are kept.
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "slim").write_text(
        "".join(f"path-exclude /usr/share/{d}/*\n" for d in SLIM_EXCLUDED)
    )
    for folder in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        *(f"usr/share/{d}" for d in SLIM_EXCLUDED),
    ):
        shutil.rmtree(rootfs / folder, ignore_errors=True)
    tar = subprocess.Popen(
        ["tar", "--one-file-system", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    )
    imported = subprocess.run(
        ["docker", "import", "-", ref], stdin=tar.stdout, env=engine.env(), capture_output=True
    )
    tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        raise DockerError(f"docker import failed: {imported.stderr.decode(errors='replace')}")


def ensure_ci_bases(engine: DockerEngine) -> CiBases:
    """Build the CI base images unless images tagged with their key exist."""
    mirror = debian_mirror()
    key = ci_base_key(mirror)
    bases = CiBases(python=f"novel-engine-ci/python:{key}", redis=f"novel-engine-ci/redis:{key}")
    if engine.has_image(bases.python) and engine.has_image(bases.redis):
        return bases
    rootfs_ref = f"novel-engine-ci/{DEBIAN_SUITE}-minbase:{key}"
    if not engine.has_image(rootfs_ref):
        if os.geteuid() != 0:
            raise DockerError(
                f"{rootfs_ref} is missing and debootstrap needs root: run "
                "`sudo scripts/docker-engine ci-bases` once (it builds into the same daemon)"
            )
        check_free_disk(state_dir())
        with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=state_dir()) as work:
            _build_rootfs(engine, rootfs_ref, mirror, Path(work))
    for target, ref in (("python", bases.python), ("redis", bases.redis)):
        engine.docker(
            "build",
            "--network=host",
            "--build-arg",
            f"ROOTFS={rootfs_ref}",
            "--target",
            target,
            "--tag",
            ref,
            str(CI_BASE_DOCKERFILE.parent),
            timeout=1800,
        )
    _remove_other_keys(engine, key, [rootfs_ref, bases.python, bases.redis])
    return bases


def _remove_other_keys(engine: DockerEngine, key: str, refs: list[str]) -> None:
    """Untag the CI bases of earlier keys (their layers go once nothing uses them)."""
    repositories = [ref.rpartition(":")[0] for ref in refs]
    listed = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    stale = [
        ref
        for ref in listed.stdout.split()
        if ref.rpartition(":")[0] in repositories and ref.rpartition(":")[2] != key
    ]
    if stale:
        engine.docker("image", "rm", *stale, check=False)


# ----------------------------------------------------------------------------- project images


@dataclass(frozen=True)
class ProjectImages:
    engine: str
    operator: str


def package_version() -> str:
    """The one version of the project (engine/novel_engine/__init__.py)."""
    text = (REPO_ROOT / "engine" / "novel_engine" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if match is None:
        raise DockerError("no __version__ in engine/novel_engine/__init__.py")
    return match.group(1)


def build_images(
    engine: DockerEngine, base: str, *, repository: str = "novel-engine-ci", ca_bundle: Path | None
) -> ProjectImages:
    """`make images` on `base`, tagged `<repository>/{engine,operator}:<version>`. `ca_bundle`
    (the host's, when an egress proxy re-signs HTTPS) is what pip trusts in the build stages;
    it is in the build context only while the build runs."""
    version = package_version()
    images = ProjectImages(f"{repository}/engine:{version}", f"{repository}/operator:{version}")
    # Docker's predefined proxy args: set for the build's commands, left out of the history.
    proxies = [f"--build-arg={name}" for name in PROXY_VARIABLES if os.environ.get(name)]
    variables: Mapping[str, str] = {
        "BASE_IMAGE": base,
        "ENGINE_IMAGE": images.engine,
        "OPERATOR_IMAGE": images.operator,
        "DOCKER_BUILD_FLAGS": " ".join(["--network=host", *proxies]),
    }
    argv = ["make", "--no-print-directory", "images", *(f"{k}={v}" for k, v in variables.items())]
    if ca_bundle is not None:
        argv.append(f"PIP_CA={ca_bundle}")
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=engine.env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise DockerError(f"make images failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    return images
