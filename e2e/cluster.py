"""What the scenarios do to a cluster: apply, read, wait, run the helm and kind commands.

Every call goes to the cluster of the kubeconfig the provider chose; nothing here knows whether
that cluster is kind, a cloud cluster or a kwok test bed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

Manifest = dict[str, Any]
T = TypeVar("T")
FIELD_MANAGER = "novel-engine-e2e"


class CommandError(RuntimeError):
    """A command failed; the message carries its output."""


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command to completion; its stdout, or CommandError with stdout and stderr."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, env=dict(env) if env else None, timeout=timeout
    )
    if done.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}".strip()
        )
    return done.stdout


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll `check` until it returns something other than None; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Cluster:
    """One cluster, through a kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.api = api
        self.dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
        self.core = k8s.CoreV1Api(api)

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, manifest: Mapping[str, Any]) -> Manifest:
        """Server-side apply as the suite's field manager."""
        meta = manifest["metadata"]
        applied = self._resource(manifest["apiVersion"], manifest["kind"]).server_side_apply(
            body=dict(manifest),
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        return dict(applied.to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Manifest | None:
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(found.to_dict())

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, selector: str = ""
    ) -> list[Manifest]:
        found = self._resource(api_version, kind).get(namespace=namespace, label_selector=selector)
        return [dict(item) for item in found.to_dict()["items"]]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        with contextlib.suppress(NotFoundError):
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Foreground"}
            )

    def patch_merge(
        self, api_version: str, kind: str, name: str, namespace: str, patch: Mapping[str, Any]
    ) -> None:
        self._resource(api_version, kind).patch(
            name=name,
            namespace=namespace,
            body=dict(patch),
            content_type="application/merge-patch+json",
        )

    def create_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        metadata = {"name": name, "labels": dict(labels)}
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})

    def job_output(self, name: str, namespace: str) -> str:
        """The log of the (single) pod of Job `name`."""
        pods = self.list("v1", "Pod", namespace, f"job-name={name}")
        assert len(pods) == 1, f"Job {name} has {len(pods)} pods"
        log: str = self.core.read_namespaced_pod_log(pods[0]["metadata"]["name"], namespace)
        return log

    def token(self, service_account: str, namespace: str, seconds: int = 3600) -> str:
        """A token for a ServiceAccount (TokenRequest, as `kubectl create token` does)."""
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        answer = self.core.create_namespaced_service_account_token(
            service_account, namespace, request
        )
        assert answer.status is not None
        return str(answer.status.token)

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """A kubeconfig for the same server and CA as this one, authenticated by `token`."""
        configuration = self.api.configuration
        cluster: dict[str, Any] = {"server": configuration.host}
        if configuration.ssl_ca_cert:
            cluster["certificate-authority"] = configuration.ssl_ca_cert
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": cluster}],
            "users": [{"name": "e2e", "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
            "current-context": "e2e",
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path


def condition(obj: Mapping[str, Any] | None, condition_type: str) -> Mapping[str, Any] | None:
    """The status condition of that type, if any."""
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found.get("type") == condition_type:
            return dict(found)
    return None
