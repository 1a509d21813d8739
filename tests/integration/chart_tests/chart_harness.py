"""What the chart tests drive: the helm binary on the chart, and server-side dry-runs of
manifests against a real kube-apiserver."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from testbed import Testbed

from novel_operator.builders import build_redis_secret, desired_state
from novel_operator.kube.compare import first_difference
from novel_operator.model import NovelEngineSpec, Owner

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "novel-engine-operator"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SAMPLE = REPO_ROOT / "crds" / "examples" / "novelengine.yaml"
FIELD_MANAGER = "chart-tests"
# Values at the limits of what values.schema.json lets through, which the apiserver must take.
LONGEST_KEY = f"{'.'.join(['a' * 63, 'b' * 63, 'c' * 63, 'd' * 61])}/{'n' * 63}"  # 317
EDGE_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.com:5000/novel-engine/operator_x"},
    "fullnameOverride": "n" * 52,
    "serviceAccount": {"name": "operator.example-1"},
    "priorityClassName": "system-cluster-critical",
    "podLabels": {LONGEST_KEY: "v" * 63, "example.com/team": "", "tier": "A_b.c-1"},
    "resources": {"requests": {"cpu": 0.5}},
    "tolerations": [
        {"key": LONGEST_KEY, "operator": "Exists", "effect": None, "tolerationSeconds": None},
        {
            "key": "k",
            "operator": "Equal",
            "value": "v" * 63,
            "effect": "NoExecute",
            "tolerationSeconds": -1,
        },
    ],
}

Manifest = dict[str, Any]


class Helm:
    """The helm binary with its state (repositories, cache) in a folder of its own."""

    def __init__(self, binary: Path, home: Path, kubeconfig: Path | None = None) -> None:
        """`kubeconfig`: the cluster of install/upgrade/uninstall (none for template/lint)."""
        self.binary = binary
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.env.update(
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)

    def on(self, kubeconfig: Path) -> Helm:
        """The same helm, talking to the cluster of `kubeconfig`."""
        return Helm(self.binary, self.home, kubeconfig)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc

    def template(
        self,
        *,
        namespace: str = "novel-engine-system",
        release: str = "neo",
        values: Sequence[Path] = (),
        set_values: Sequence[str] = (),
        kube_version: str | None = None,
    ) -> list[Manifest]:
        """The manifests `helm template` renders (NOTES.txt aside), in order."""
        args = ["template", release, str(CHART), "--namespace", namespace]
        args += [arg for path in values for arg in ("--values", str(path))]
        args += [arg for value in set_values for arg in ("--set", value)]
        if kube_version:
            args += ["--kube-version", kube_version]
        out = self.run(*args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def object_path(bed: Testbed, obj: Mapping[str, Any]) -> str:
    """The URL of `obj` on `bed`'s apiserver (its kind's resource from discovery)."""
    group_version = obj["apiVersion"]
    prefix = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    status, discovery = bed.request("GET", prefix)
    if status != 200:
        raise AssertionError(f"{bed.server} does not serve {group_version}: {status}")
    resource = next(
        (r for r in discovery["resources"] if r["kind"] == obj["kind"] and "/" not in r["name"]),
        None,
    )
    if resource is None:
        raise AssertionError(f"{bed.server} has no {obj['kind']} in {group_version}")
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if resource["namespaced"] else ""
    return f"{prefix}{scope}/{resource['name']}/{quote(obj['metadata']['name'])}"


def dry_run_apply(bed: Testbed, obj: Mapping[str, Any]) -> str | None:
    """Server-side apply `obj` with dryRun=All. None when the apiserver accepts it and keeps
    every field sent (a field of a disabled feature would be dropped silently); else why not."""
    path = object_path(bed, obj)
    status, answer = bed.request(
        "PATCH",
        f"{path}?dryRun=All&fieldManager={FIELD_MANAGER}&force=true",
        dict(obj),
        content_type="application/apply-patch+yaml",
    )
    what = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
    if status >= 300:
        return f"{what}: {status} {answer.get('message') if isinstance(answer, dict) else answer}"
    dropped = first_difference(obj, answer)
    return None if dropped is None else f"{what}: the apiserver dropped or changed {dropped}"


def install_crd(bed: Testbed, crd: Mapping[str, Any]) -> None:
    """Apply a CRD for real and wait until it is Established."""
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    bed.apply(path, crd, field_manager=FIELD_MANAGER)

    def established() -> str | None:
        _, body = bed.request("GET", path)
        found = (body.get("status") or {}).get("conditions") or []
        conditions = {c["type"]: c["status"] for c in found}
        return None if conditions.get("Established") == "True" else str(conditions)

    bed.wait_for(f"CRD {crd['metadata']['name']} established", established, timeout=30)


def create_namespace(bed: Testbed, name: str) -> None:
    bed.apply(
        f"/api/v1/namespaces/{name}",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )


def sample() -> Manifest:
    """The sample NovelEngine of crds/examples/."""
    found: Manifest = yaml.safe_load(SAMPLE.read_text())
    return found


def children(namespace: str, name: str, spec: Mapping[str, Any]) -> list[Manifest]:
    """Every child the operator builds for a NovelEngine `namespace/name` with `spec`, the
    generated Redis password Secret included."""
    owner = Owner(
        name=name, namespace=namespace, uid="4f1c5a52-0000-4000-8000-000000000001", generation=1
    )
    parsed = NovelEngineSpec.model_validate(dict(spec))
    state = desired_state(
        owner,
        parsed,
        engine_replicas_owned_elsewhere=parsed.autoscaling.enabled,
        operator_namespace="novel-engine-system",
    )
    secret = build_redis_secret(owner, parsed)
    return [*state.apply, *([secret] if secret is not None else [])]


def sample_children(namespace: str) -> list[Manifest]:
    return children(namespace, sample()["metadata"]["name"], sample()["spec"])
