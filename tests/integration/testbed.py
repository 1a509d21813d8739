"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake Nodes whose Pods become Running/Ready).

Used by the session fixture in tests/integration/conftest.py and by scripts/k8s-testbed (CLI for
humans). Standard library only, so the CLI runs with any python3; `Testbed.api_client()` imports
the kubernetes client lazily.

Everything binds to 127.0.0.1 on free ports. Fake Pod and Node IPs (kwok's CIDR) are config values
only: nothing may connect to them. Each run has one folder (``run_dir``) holding state.json
(PIDs), kubeconfigs, keys, the audit log and ``logs/<component>.log``.

Binaries are found in $KUBEBUILDER_ASSETS first, then in the cache that scripts/k8s-assets fills
($NOVEL_ENGINE_K8S_CACHE or ~/.cache/novel-engine, sub-folder k8s-<kubernetes version>).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "scripts" / "k8s_versions.env"
#: kwok runs no Stages unless given some: node-initialize/heartbeat, pod-ready/complete/delete.
KWOK_STAGES = Path(__file__).resolve().parent / "kwok-stages.yaml"

#: Binaries the bed runs (kubectl and helm, when there, come with them on env()'s PATH).
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: A $KUBEBUILDER_ASSETS folder counts when it holds these (as in scripts/k8s-assets).
KUBEBUILDER_CORE = ("etcd", "kube-apiserver")
#: Verbs the audit policy records for every client.
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
#: Verbs it records for ServiceAccounts outside kube-system only (code under test runs as one;
#: the control plane's own controllers would flood the log).
READ_VERBS = frozenset({"get", "list", "watch"})
#: Annotation kwok selects its fake Nodes by.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: Config values only; never a destination for traffic.
SERVICE_CIDR = "10.96.0.0/24"
KWOK_POD_CIDR = "10.244.0.0/16"
KWOK_NODE_IP = "10.245.0.1"
PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----", re.S)
COMPONENT_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class TestbedError(RuntimeError):
    """The bed could not start or an operation on it failed."""


class AssetsMissingError(TestbedError):
    """The binaries are not there (run scripts/k8s-assets / make k8s-assets)."""


# ----------------------------------------------------------------------------- assets


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value pairs of scripts/k8s_versions.env."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("\"'")
    return out


def cache_dir(version_key: str = "KUBERNETES_VERSION") -> Path:
    """Where scripts/k8s-assets puts the binaries it builds for the release ``version_key``
    names in scripts/k8s_versions.env (same rule as that script)."""
    base = os.environ.get("NOVEL_ENGINE_K8S_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "novel-engine")
    return Path(base).expanduser() / f"k8s-{read_versions()[version_key]}"


def asset_dirs() -> list[Path]:
    """Folders searched for binaries, first match wins: $KUBEBUILDER_ASSETS, then the cache."""
    dirs = []
    if os.environ.get("KUBEBUILDER_ASSETS"):
        kb = Path(os.environ["KUBEBUILDER_ASSETS"]).expanduser()
        if all(os.access(kb / n, os.X_OK) for n in KUBEBUILDER_CORE):
            dirs.append(kb)
    dirs.append(cache_dir())
    return dirs


def find_binaries(names: Iterable[str] = REQUIRED_BINARIES) -> dict[str, Path]:
    """Path of each binary; AssetsMissingError naming the missing ones and where we looked."""
    found: dict[str, Path] = {}
    missing = []
    for name in names:
        for d in asset_dirs():
            p = d / name
            if p.is_file() and os.access(p, os.X_OK):
                found[name] = p
                break
        else:
            missing.append(name)
    if missing:
        raise AssetsMissingError(
            f"Kubernetes test binaries missing: {', '.join(missing)} "
            f"(looked in {', '.join(map(str, asset_dirs()))}); run `make k8s-assets` "
            "(or scripts/k8s-assets), or set KUBEBUILDER_ASSETS"
        )
    return found


def find_oldest_binaries() -> dict[str, Path]:
    """etcd and the kube-apiserver of the oldest supported release (KUBERNETES_OLDEST_VERSION,
    built by scripts/k8s-assets as ``kube-apiserver-oldest``): an ``apiserver_only`` bed."""
    etcd = find_binaries(["etcd"])
    apiserver = cache_dir("KUBERNETES_OLDEST_VERSION") / "kube-apiserver"
    if not (apiserver.is_file() and os.access(apiserver, os.X_OK)):
        raise AssetsMissingError(
            f"the oldest supported kube-apiserver is missing ({apiserver}); run "
            "`make k8s-assets` (or scripts/k8s-assets kube-apiserver-oldest)"
        )
    return {**etcd, "kube-apiserver": apiserver}


# ----------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(signum: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in the
    # child between fork and exec. If the test process dies abruptly, the kernel sends `signum`
    # to the process. SIGKILL by default: etcd and kube-apiserver, both sent SIGTERM at once,
    # were seen to stay in their graceful stops for good (the other components ended),
    # outliving the test run.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _pid_runs(pid: int, binary: str) -> bool:
    """True if `pid` is alive and still runs `binary` (guards against a reused PID)."""
    if not _pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv0 = fh.read().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return argv0 == binary


def stop_pid(pid: int, still_ours: Callable[[], bool], grace: float) -> bool:
    """SIGTERM `pid`, and SIGKILL it if it runs `grace` seconds later, for a process this one
    did not spawn (no Popen to wait on). `still_ours` is asked before each signal, so a PID
    reused by another process is left alone. True if a signal was sent."""
    if not still_ours():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while still_ours() and time.monotonic() < end:
        time.sleep(0.1)
    if still_ours():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"({exc})"
    return "\n".join(data.splitlines()[-lines:])


@dataclass(frozen=True)
class AuditEvent:
    """One audited request from the apiserver's JSON-lines audit log: a write, or a read by a
    ServiceAccount outside kube-system. ``raw["requestURI"]`` holds the query (labelSelector...)."""

    verb: str
    user: str
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    api_group: str
    code: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
    verbs: [get, list, watch]
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
    verbs: [get, list, watch]
  - level: None
"""


@dataclass
class Component:
    name: str
    argv: list[str]
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def binary(self) -> str:
        return self.argv[0]


# ----------------------------------------------------------------------------- the bed


class Testbed:
    """One control plane. ``start()`` returns when it is ready; ``stop()`` ends every process
    it started (by PID) and is safe to call twice or after a failed start.

    After ``start()`` (or ``Testbed.load(run_dir)`` for a bed started by ``scripts/k8s-testbed``):

    - ``kubeconfig``: admin kubeconfig (token of a ``system:masters`` user), ``server`` URL,
      ``ca_file``; ``env()`` gives KUBECONFIG and PATH (binaries' folders first).
    - ``api_client(kubeconfig=None)``: a ``kubernetes.client.ApiClient`` (admin by default).
    - ``service_account_kubeconfig(name, namespace, rules, cluster_scoped=True)``: a kubeconfig
      for a ServiceAccount bound to exactly ``rules`` (PolicyRule dicts), for running code under
      test without admin rights; ``token_kubeconfig(name, namespace)``: one for an existing
      ServiceAccount, bound by whatever RBAC exists.
    - ``audit_log``, ``audit_mark()``, ``audit_events(...)``, ``count_writes(...)``: the writes
      the apiserver served (create/update/patch/delete/deletecollection, metadata level), and
      the reads (get/list/watch) of ServiceAccounts outside kube-system.
    - ``logs_dir``, ``log_tail(lines)``: per-component logs of this run.
    - ``node_names``: the kwok-managed fake Nodes (no taints; Pods land there and turn Ready).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        run_dir: Path,
        *,
        binaries: Mapping[str, Path] | None = None,
        nodes: int = 3,
        service_cidr: str = SERVICE_CIDR,
        detach: bool = False,
        hpa_sync_period: str = "5s",
        extra_args: Mapping[str, Sequence[str]] | None = None,
        apiserver_only: bool = False,
    ) -> None:
        """``detach=True`` (CLI) lets the processes outlive this Python process; otherwise they
        are killed if it dies. ``extra_args`` appends flags per component name.
        ``apiserver_only=True`` starts etcd and kube-apiserver alone (no controllers, no
        Nodes): enough to ask the API what it accepts, e.g. server-side dry-runs.
        ``nodes`` kwok Nodes hold 110 Pods each; ``service_cidr`` is the Service ClusterIP range
        (the default /24 holds about 250 Services)."""
        self.run_dir = Path(run_dir).resolve()
        self.apiserver_only = apiserver_only
        if binaries is not None:
            self.binaries = dict(binaries)
        else:
            self.binaries = find_binaries(KUBEBUILDER_CORE if apiserver_only else REQUIRED_BINARIES)
        self.nodes = nodes
        self.service_cidr = service_cidr
        self.detach = detach
        self.hpa_sync_period = hpa_sync_period
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.logs_dir = self.run_dir / "logs"
        self.pki_dir = self.run_dir / "pki"
        self.kubeconfig = self.run_dir / "kubeconfig"
        self.audit_log = self.run_dir / "audit.log"
        self.serving_cert = self.pki_dir / "apiserver.crt"  # kube-apiserver writes it
        self.ca_file = self.pki_dir / "ca.crt"
        self.state_file = self.run_dir / "state.json"
        self.components: dict[str, Component] = {}
        self.ports: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ public API

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def admin_token(self) -> str:
        return self.tokens["admin"]

    def env(self) -> dict[str, str]:
        """KUBECONFIG and PATH (the binaries' folders first) for subprocesses and shells."""
        return env_for(self.run_dir, self.binaries.values())

    def start(self, timeout: float = 120.0) -> None:
        """Start every component and wait until the bed is ready (TestbedError otherwise,
        with the tail of the component's log). Stops what it started if it fails."""
        started = time.monotonic()
        deadline = started + timeout
        try:
            self._prepare()
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            if not self.apiserver_only:
                self._start_controllers()
                self._create_nodes()
                self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self._write_state(ready=True, startup_seconds=round(time.monotonic() - started, 1))

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every started process by PID (reverse start order), SIGKILL after `grace`."""
        for name in reversed(COMPONENT_ORDER):
            comp = self.components.get(name)
            if comp is None or comp.pid is None:
                continue
            self._stop_one(comp, grace)
        if self.state_file.exists():
            self._write_state(ready=False)

    @classmethod
    def load(cls, run_dir: Path) -> Testbed:
        """The bed described by ``run_dir/state.json`` (started elsewhere, e.g. by the CLI)."""
        run_dir = Path(run_dir).resolve()
        try:
            state = json.loads((run_dir / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise TestbedError(f"no test bed state in {run_dir}: {exc}") from exc
        bed = cls(run_dir, binaries={k: Path(v) for k, v in state["binaries"].items()})
        bed.ports = {k: int(v) for k, v in state["ports"].items()}
        bed.tokens = dict(state["tokens"])
        bed.node_names = list(state["nodes"])
        bed.detach = True
        for name, comp in state["components"].items():
            bed.components[name] = Component(name, list(comp["argv"]), pid=comp["pid"])
        return bed

    def is_running(self) -> bool:
        """All components alive (by PID) and the apiserver answers /readyz."""
        if not self.components or not all(
            c.pid is not None and _pid_runs(c.pid, c.binary) for c in self.components.values()
        ):
            return False
        try:
            return self.request("GET", "/readyz")[0] == 200
        except (OSError, TestbedError):
            return False

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A kubernetes.client.ApiClient for the admin kubeconfig (or the one given)."""
        from kubernetes import config

        api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return api

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """Raw API call (admin token by default): (status, decoded JSON or text)."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.ports["apiserver"], context=self._ssl_context(), timeout=timeout
        )
        headers = {"Authorization": f"Bearer {token or self.admin_token}", "Accept": "*/*"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    def apply(self, path: str, obj: Mapping[str, Any], field_manager: str = "testbed") -> Any:
        """Server-side apply ``obj`` at the object URL ``path`` (create or update)."""
        status, out = self.request(
            "PATCH",
            f"{path}?fieldManager={field_manager}&force=true",
            obj,
            content_type="application/apply-patch+yaml",
        )
        if status >= 300:
            raise TestbedError(f"apply {path} failed: {status} {out}")
        return out

    def service_account_kubeconfig(
        self,
        name: str,
        namespace: str,
        rules: Sequence[Mapping[str, Any]],
        *,
        cluster_scoped: bool = True,
        expiration_seconds: int = 24 * 3600,
    ) -> Path:
        """Create (or update) ServiceAccount ``namespace/name`` bound to exactly ``rules`` and
        return the path of a kubeconfig holding a token for it.

        ``rules`` are RBAC PolicyRule dicts, e.g. ``{"apiGroups": [""], "resources":
        ["configmaps"], "verbs": ["get", "list", "watch"]}``. ``cluster_scoped=True`` grants them
        cluster-wide (ClusterRole + ClusterRoleBinding ``testbed:<ns>:<name>``), else only in
        ``namespace`` (Role + RoleBinding). The audit log shows this client as
        ``system:serviceaccount:<namespace>:<name>``.
        """
        self.apply(
            f"/api/v1/namespaces/{namespace}",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        self.apply(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            },
        )
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
        if cluster_scoped:
            role_name = f"testbed:{namespace}:{name}"
            role_meta: dict[str, Any] = {"name": role_name}
            role_path = f"{rbac}/clusterroles/{role_name}"
            binding_path = f"{rbac}/clusterrolebindings/{role_name}"
            kind = "ClusterRole"
        else:
            role_name = f"testbed:{name}"
            role_meta = {"name": role_name, "namespace": namespace}
            role_path = f"{rbac}/namespaces/{namespace}/roles/{role_name}"
            binding_path = f"{rbac}/namespaces/{namespace}/rolebindings/{role_name}"
            kind = "Role"
        self.apply(
            role_path,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": role_meta,
                "rules": [dict(r) for r in rules],
            },
        )
        self.apply(
            binding_path,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": f"{kind}Binding",
                "metadata": role_meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": kind,
                    "name": role_name,
                },
                "subjects": [subject],
            },
        )
        return self.token_kubeconfig(name, namespace, expiration_seconds=expiration_seconds)

    def token_kubeconfig(
        self, name: str, namespace: str, *, expiration_seconds: int = 24 * 3600
    ) -> Path:
        """A kubeconfig holding a fresh token (TokenRequest) of the existing ServiceAccount
        ``namespace/name``, whatever binds it (e.g. the RBAC a Helm chart rendered)."""
        status, out = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        if status >= 300:
            raise TestbedError(f"token request for {namespace}/{name} failed: {status} {out}")
        path = self.run_dir / f"sa-{namespace}-{name}.kubeconfig"
        self._write_kubeconfig(
            path, f"system:serviceaccount:{namespace}:{name}", out["status"]["token"]
        )
        return path

    def audit_mark(self) -> int:
        """A position in the audit log; pass it as ``since=`` to see only later events."""
        try:
            return self.audit_log.stat().st_size
        except FileNotFoundError:
            return 0

    def audit_events(
        self,
        *,
        since: int = 0,
        user: str | None = None,
        verbs: Iterable[str] = WRITE_VERBS,
        resource: str | None = None,
        namespace: str | None = None,
        exclude_resources: Iterable[str] = ("events",),
    ) -> list[AuditEvent]:
        """Audited requests after ``since``, writes by default, filtered (None = any); reads
        (``READ_VERBS``) are recorded for ServiceAccounts outside kube-system only. Events (the
        ``events`` resource) are left out by default. One entry per request: a watch is seen
        when its response starts, long before it completes. The log is written synchronously,
        but a client may see its response a moment before the line lands: poll when asserting
        "appears"."""
        verbs = set(verbs)
        excluded = set(exclude_resources)
        out: list[AuditEvent] = []
        try:
            with open(self.audit_log, "rb") as fh:
                fh.seek(since)
                data = fh.read()
        except FileNotFoundError:
            return out
        seen: set[str] = set()
        for line in data.split(b"\n")[:-1]:  # the last piece is empty or still being written
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("stage") not in ("ResponseStarted", "ResponseComplete", "Panic"):
                continue
            if ev.get("auditID") in seen:  # a watch's ResponseComplete, after its start
                continue
            seen.add(ev.get("auditID"))
            ref = ev.get("objectRef") or {}
            e = AuditEvent(
                verb=ev.get("verb", ""),
                user=(ev.get("user") or {}).get("username", ""),
                resource=ref.get("resource"),
                subresource=ref.get("subresource"),
                namespace=ref.get("namespace"),
                name=ref.get("name"),
                api_group=ref.get("apiGroup", ""),
                code=(ev.get("responseStatus") or {}).get("code"),
                raw=ev,
            )
            if e.verb not in verbs or e.resource in excluded:
                continue
            if user is not None and e.user != user:
                continue
            if resource is not None and e.resource != resource:
                continue
            if namespace is not None and e.namespace != namespace:
                continue
            out.append(e)
        return out

    def count_writes(self, **filters: Any) -> int:
        """``len(audit_events(**filters))``."""
        return len(self.audit_events(**filters))

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of every component's log, for failure reports."""
        parts = []
        for name in COMPONENT_ORDER:
            p = self.logs_dir / f"{name}.log"
            if p.exists():
                parts.append(f"----- {p} (last {lines} lines) -----\n{tail(p, lines)}")
        return "\n".join(parts) or f"(no logs in {self.logs_dir})"

    def wait_for(
        self, what: str, check: Callable[[], str | None], timeout: float = 60.0, every: float = 0.5
    ) -> None:
        """Poll ``check`` (returns None when done, else a description of the current state)
        until it succeeds; TestbedError naming ``what`` and the last state after ``timeout``."""
        self._poll(what, check, time.monotonic() + timeout, every)

    # ------------------------------------------------------------------ start-up

    def _prepare(self) -> None:
        if self.run_dir.exists():
            for child in self.run_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        for d in (self.run_dir, self.logs_dir, self.pki_dir):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok"):
            self.ports[name] = free_port()
        self.tokens = {
            u: secrets.token_hex(16) for u in ("admin", "controller_manager", "scheduler", "kwok")
        }
        users = {
            "admin": ("admin", "system:masters"),
            "controller_manager": ("system:kube-controller-manager", ""),
            "scheduler": ("system:kube-scheduler", ""),
            "kwok": ("kwok", "system:masters"),
        }
        lines = [
            f'{self.tokens[k]},{user},{user}-uid,"{group}"'
            if group
            else f"{self.tokens[k]},{user},{user}-uid"
            for k, (user, group) in users.items()
        ]
        (self.pki_dir / "tokens.csv").write_text("\n".join(lines) + "\n")
        os.chmod(self.pki_dir / "tokens.csv", 0o600)
        (self.run_dir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        key, pub = self.pki_dir / "sa.key", self.pki_dir / "sa.pub"
        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        self._run_openssl(["genpkey", *ec, "-out", str(key)])
        self._run_openssl(["pkey", "-in", str(key), "-pubout", "-out", str(pub)])

    def _run_openssl(self, args: list[str]) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise TestbedError("openssl not found (needed for service-account keys); install it")
        proc = subprocess.run([openssl, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise TestbedError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")

    def _spawn(self, name: str, args: list[str]) -> None:
        argv = [str(self.binaries[name]), *args, *self.extra_args.get(name, [])]
        with open(self.logs_dir / f"{name}.log", "ab") as log:
            log.write(f"# {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
                start_new_session=True,
                preexec_fn=None if self.detach else _die_with_parent,
            )
        self.components[name] = Component(name, argv, pid=proc.pid, process=proc)
        self._write_state(ready=False)

    def _start_etcd(self, deadline: float) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._spawn(
            "etcd",
            [
                "--name=testbed",
                f"--data-dir={self.run_dir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=testbed={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def check() -> str | None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.ports["etcd"], timeout=2)
                conn.request("GET", "/health")
                body = conn.getresponse().read().decode()
                conn.close()
            except OSError as exc:
                return str(exc)
            return None if '"health":"true"' in body else body

        self._poll("etcd /health", check, deadline, component="etcd")

    def _start_apiserver(self, deadline: float) -> None:
        pki = self.pki_dir
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={pki}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                # As OpenShift and hardened clusters run: a client may set blockOwnerDeletion
                # only on owners whose finalizers it may update.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                "--anonymous-auth=false",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={self.run_dir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
                "--v=1",
            ],
        )

        def check() -> str | None:
            # The self-signed serving cert file holds the leaf, then the CA that signed it.
            try:
                pems = PEM_CERT.findall(self.serving_cert.read_text())
            except FileNotFoundError:
                pems = []
            if not pems:
                return f"waiting for {self.serving_cert}"
            self.ca_file.write_text("\n".join(pems[1:] or pems) + "\n")
            self._ssl = None
            try:
                status, body = self.request("GET", "/readyz", timeout=5)
            except (OSError, ssl.SSLError) as exc:
                return str(exc)
            return None if status == 200 else f"{status} {str(body)[-500:]}"

        self._poll("kube-apiserver /readyz", check, deadline, component="kube-apiserver")
        self._write_kubeconfig(self.kubeconfig, "admin", self.admin_token)

    def _start_controllers(self) -> None:
        kcm_kc = self.run_dir / "controller-manager.kubeconfig"
        self._write_kubeconfig(
            kcm_kc, "system:kube-controller-manager", self.tokens["controller_manager"]
        )
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--authentication-skip-lookup=true",  # no client CA here; tokens only
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller_manager']}",
                f"--cert-dir={self.run_dir / 'controller-manager-certs'}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period}",
                # Each controller's client budget: the default 20 requests/s (burst 30) keeps
                # the Deployment controller's status writes minutes behind a fleet of a
                # thousand; large clusters raise it the same way.
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                "--profiling=false",
                "--v=1",
            ],
        )
        sched_kc = self.run_dir / "scheduler.kubeconfig"
        self._write_kubeconfig(sched_kc, "system:kube-scheduler", self.tokens["scheduler"])
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--authentication-skip-lookup=true",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                f"--cert-dir={self.run_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        kwok_kc = self.run_dir / "kwok.kubeconfig"
        self._write_kubeconfig(kwok_kc, "kwok", self.tokens["kwok"])
        self._spawn(
            "kwok",
            [
                f"--config={KWOK_STAGES}",
                f"--kubeconfig={kwok_kc}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                f"--cidr={KWOK_POD_CIDR}",
                f"--node-ip={KWOK_NODE_IP}",
                "--node-lease-duration-seconds=40",
            ],
        )

    def _create_nodes(self) -> None:
        # Pods are the binding limit (110 per node): an engine pod requests ~1Gi of ephemeral
        # storage and 256Mi of memory by default.
        capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        for name in self.node_names:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        KWOK_NODE_ANNOTATION: "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node-role.kubernetes.io/agent": "",
                    },
                },
                "spec": {},
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "kubeletVersion": "fake",
                        "kubeProxyVersion": "fake",
                    },
                },
            }
            status, out = self.request("POST", "/api/v1/nodes", node)
            if status not in (201, 409):
                raise TestbedError(f"creating Node {name} failed: {status} {out}")

    def _wait_ready(self, deadline: float) -> None:
        def healthz(port_key: str) -> Callable[[], str | None]:
            def check() -> str | None:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # its self-signed serving cert, loopback only
                try:
                    conn = http.client.HTTPSConnection(
                        "127.0.0.1", self.ports[port_key], context=ctx, timeout=3
                    )
                    conn.request("GET", "/healthz")
                    resp = conn.getresponse()
                    body = resp.read().decode(errors="replace")
                    conn.close()
                except OSError as exc:
                    return str(exc)
                return None if resp.status == 200 else f"{resp.status} {body[-300:]}"

            return check

        def kwok_healthz() -> str | None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.ports["kwok"], timeout=3)
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                conn.close()
            except OSError as exc:
                return str(exc)
            return None if resp.status == 200 else f"HTTP {resp.status}"

        def nodes_ready() -> str | None:
            status, out = self.request("GET", "/api/v1/nodes")
            if status != 200:
                return f"{status} {out}"
            ready = {
                n["metadata"]["name"]
                for n in out.get("items", [])
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            }
            missing = sorted(set(self.node_names) - ready)
            return f"not Ready yet: {missing}" if missing else None

        def default_sa() -> str | None:
            status, _ = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return None if status == 200 else f"HTTP {status}"

        cm = "kube-controller-manager"
        self._poll(f"{cm} /healthz", healthz("controller_manager"), deadline, component=cm)
        self._poll(
            "kube-scheduler /healthz", healthz("scheduler"), deadline, component="kube-scheduler"
        )
        self._poll("kwok /healthz", kwok_healthz, deadline, component="kwok")
        self._poll("kwok Nodes Ready", nodes_ready, deadline, component="kwok")
        self._poll(
            "ServiceAccount default/default (controller-manager)",
            default_sa,
            deadline,
            component=cm,
        )

    # ------------------------------------------------------------------ internals

    def _poll(
        self,
        what: str,
        check: Callable[[], str | None],
        deadline: float,
        every: float = 0.25,
        component: str | None = None,
    ) -> None:
        last: str | None = "not checked"
        while True:
            for comp in self.components.values():
                if comp.process is not None and comp.process.poll() is not None:
                    log = self.logs_dir / f"{comp.name}.log"
                    raise TestbedError(
                        f"test bed: {comp.name} exited with code {comp.process.returncode} "
                        f"while waiting for {what}; last lines of {log}:\n{tail(log, 30)}"
                    )
            try:
                last = check()
            except (OSError, TestbedError, ValueError) as exc:
                last = str(exc)
            if last is None:
                return
            if time.monotonic() > deadline:
                hint = ""
                if component:
                    log = self.logs_dir / f"{component}.log"
                    hint = f"; last lines of {log}:\n{tail(log, 30)}"
                raise TestbedError(f"test bed: timed out waiting for {what} (last: {last}){hint}")
            time.sleep(every)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        return self._ssl

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        import base64

        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
            "current-context": "testbed",
        }
        # JSON is YAML: every kubeconfig reader accepts it.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    def _write_state(self, **extra: Any) -> None:
        state = {
            "run_dir": str(self.run_dir),
            "binaries": {k: str(v) for k, v in self.binaries.items()},
            "ports": self.ports,
            "tokens": self.tokens,
            "nodes": self.node_names,
            "kubeconfig": str(self.kubeconfig),
            "components": {n: {"pid": c.pid, "argv": c.argv} for n, c in self.components.items()},
            **extra,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _stop_one(self, comp: Component, grace: float) -> None:
        pid = comp.pid
        assert pid is not None
        if comp.process is not None:
            if comp.process.poll() is None:
                comp.process.terminate()
                try:
                    comp.process.wait(grace)
                except subprocess.TimeoutExpired:
                    comp.process.kill()
                    comp.process.wait(5)
        else:  # started by another process (the CLI's `up`)
            stop_pid(pid, lambda: _pid_runs(pid, comp.binary), grace)
        comp.pid = None
        comp.process = None


def env_for(run_dir: Path, binaries: Iterable[Path] = ()) -> dict[str, str]:
    """KUBECONFIG of the bed in ``run_dir`` and a PATH with the binaries' folders first
    (computed from the asset folders when ``binaries`` is empty, so it works with no bed up)."""
    dirs: list[str] = []
    for d in [*(Path(b).parent for b in binaries), *asset_dirs()]:
        if str(d) not in dirs:
            dirs.append(str(d))
    path = os.pathsep.join([*dirs, os.environ.get("PATH", "")])
    return {"KUBECONFIG": str(Path(run_dir).resolve() / "kubeconfig"), "PATH": path}
