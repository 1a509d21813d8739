"""What the operator's integration tests drive: the operator as a real process (the
`novel-engine-operator` console script) and an admin view of the cluster to assert on."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from prometheus_client.parser import text_string_to_metric_families
from testbed import _die_with_parent

from novel_operator import names
from novel_operator.builders import CHILD_KINDS

OPERATOR_BIN = Path(sys.executable).with_name("novel-engine-operator")
OPERATOR_SA_NAMESPACE = "novel-engine-system"
OPERATOR_SA_NAME = "novel-engine-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_SA_NAMESPACE}:{OPERATOR_SA_NAME}"
#: Field manager of "hand edits" in the tests (what `kubectl edit` would be).
HAND = "kubectl-edit"
DEPLOYMENT = ("apps/v1", "Deployment")

Obj = dict[str, Any]


class AddressMap:
    """The operator's `--scrape-address-map` file: the loopback address of the engine process
    that answers for each pod (`namespace/pod`). Pods it does not name are never scraped, so
    no test connects to a kwok pod IP."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.write({})

    def write(self, addresses: Mapping[str, str]) -> None:
        """Replace the map at once (the operator may read it at any moment)."""
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(dict(addresses)))
        partial.replace(self.path)


class OperatorProcess:
    """One `novel-engine-operator run` process; stop() is idempotent and checks the exit."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        port: int,
        addresses: AddressMap,
    ):
        self.argv = list(argv)
        self.log_path = log_path
        self.port = port
        self.addresses = addresses
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
                preexec_fn=_die_with_parent,  # a test run stopped by a signal leaves none behind
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "not asked"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                status, body = self.get("/healthz")
                if status == 200:
                    return
                last = f"{status} {body}"
            except OSError as error:
                last = str(error)
            time.sleep(0.2)
        raise AssertionError(
            f"operator /healthz not OK after {timeout}s ({last}):\n{self.log_tail()}"
        )

    def metrics(self) -> dict[str, float]:
        """Every sample as `name{label="value",...}` (labels sorted) -> value."""
        status, text = self.get("/metrics")
        assert status == 200, text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def reconciles(self) -> float:
        """Reconciles finished so far, whatever their result."""
        return sum(
            value
            for key, value in self.metrics().items()
            if key.startswith("novel_operator_reconciles_total{")
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait; the exit code (SIGKILL and AssertionError if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"operator ignored SIGTERM for {timeout}s") from None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the operator dies mid-work, as on a node failure."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_records(self) -> list[Obj]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


#: The `start_operator` fixture: `start(*scope_args, resync_seconds=2.0, kubeconfig=None,
#: operator_namespace=OPERATOR_SA_NAMESPACE, options=()) -> OperatorProcess` (`options`: more
#: `run` flags).
StartOperator = Callable[..., OperatorProcess]


def operator_argv(
    kubeconfig: Path,
    port: int,
    scope: Sequence[str],
    resync_seconds: float,
    address_map: Path,
    operator_namespace: str = OPERATOR_SA_NAMESPACE,
) -> list[str]:
    """`novel-engine-operator run` for tests: scrapes go only to the pods `address_map` (the
    file of an `AddressMap`) names, never to a kwok pod IP."""
    return [
        str(OPERATOR_BIN),
        "run",
        *scope,
        "--kubeconfig",
        str(kubeconfig),
        "--operator-namespace",
        operator_namespace,
        "--listen",
        f"127.0.0.1:{port}",
        "--resync-seconds",
        str(resync_seconds),
        "--watch-timeout-seconds",
        "60",
        "--log-format",
        "json",
        "--scrape-address-map",
        str(address_map),
    ]


def operator_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Cluster:
    """Admin access for arranging and asserting; never used by the operator."""

    def __init__(self, api_client: k8s.ApiClient, wait_for: Callable[..., None]) -> None:
        self.dynamic = DynamicClient(api_client)
        self._wait_for = wait_for

    def wait(self, what: str, check: Callable[[], str | None], timeout: float = 60.0) -> None:
        """Poll `check` (None when done, else the state seen) until it passes."""
        self._wait_for(what, check, timeout=timeout, every=0.2)

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        result: Obj = found.to_dict()
        return result

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[Obj]:
        found = self._resource(api_version, kind).get(
            namespace=namespace, label_selector=selector or None
        )
        return [item.to_dict() for item in found.items]

    def create(self, obj: Mapping[str, Any]) -> Obj:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        created = resource.create(body=dict(obj), namespace=obj["metadata"].get("namespace"))
        result: Obj = created.to_dict()
        return result

    def create_quota(self, namespace: str, name: str, hard: Mapping[str, str]) -> None:
        """A ResourceQuota, once the quota controller counts it (until then the apiserver
        admits what it would refuse)."""
        self.create(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"hard": dict(hard)},
            }
        )

        def counted() -> str | None:
            found = self.get("v1", "ResourceQuota", namespace, name) or {}
            return None if (found.get("status") or {}).get("used") else "not counted yet"

        self.wait(f"ResourceQuota {namespace}/{name} counted", counted, timeout=30)

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Obj:
        """A JSON merge patch, as a person would send with `kubectl patch --type merge`."""
        result: Obj = (
            self._resource(api_version, kind)
            .patch(
                name=name,
                namespace=namespace,
                body=dict(patch),
                content_type="application/merge-patch+json",
                field_manager=HAND,
            )
            .to_dict()
        )
        return result

    def apply(self, obj: Mapping[str, Any], field_manager: str) -> None:
        """Server-side apply `obj` as `field_manager`, as `kubectl apply --server-side` does."""
        self._resource(obj["apiVersion"], obj["kind"]).server_side_apply(
            body=dict(obj),
            name=obj["metadata"]["name"],
            namespace=obj["metadata"]["namespace"],
            field_manager=field_manager,
            force_conflicts=True,
        )

    def remove_field(
        self, api_version: str, kind: str, namespace: str, name: str, path: str
    ) -> None:
        """Remove the field at the JSON pointer `path`, as `kubectl patch --type json` with a
        "remove" operation does (a merge patch cannot reach into a list item)."""
        self.json_patch(api_version, kind, namespace, name, [{"op": "remove", "path": path}])

    def replace_field(
        self, api_version: str, kind: str, namespace: str, name: str, path: str, value: Any
    ) -> None:
        """Set the field at the JSON pointer `path`, as `kubectl patch --type json` with a
        "replace" operation does."""
        operation = {"op": "replace", "path": path, "value": value}
        self.json_patch(api_version, kind, namespace, name, [operation])

    def json_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        operations: list[dict[str, Any]],
    ) -> None:
        self._resource(api_version, kind).patch(
            name=name,
            namespace=namespace,
            body=operations,
            content_type="application/json-patch+json",
            field_manager=HAND,
        )

    def scale(self, api_version: str, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource, as `kubectl scale` does."""
        self._resource(api_version, kind).subresources["scale"].patch(
            name=name,
            namespace=namespace,
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
            field_manager=HAND,
        )

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, propagation: str = ""
    ) -> None:
        """Delete (`propagation`: "Orphan" as `kubectl delete --cascade=orphan`, "" the
        kind's default); gone already is fine."""
        with contextlib.suppress(NotFoundError):
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, propagation_policy=propagation or None
            )

    # NovelEngine shortcuts -------------------------------------------------------------

    def novelengine(self, namespace: str, name: str) -> Obj | None:
        return self.get(names.API_VERSION, names.KIND, namespace, name)

    def create_novelengine(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        annotations: Mapping[str, str] | None = None,
    ) -> Obj:
        meta: Obj = {"name": name, "namespace": namespace}
        if annotations:
            meta["annotations"] = dict(annotations)
        body = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta}
        return self.create({**body, "spec": dict(spec)})

    def patch_novelengine(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        return self.patch(names.API_VERSION, names.KIND, namespace, name, patch)

    def wait_ready(self, namespace: str, name: str, timeout: float = 90.0) -> Obj:
        """Wait for Ready=True with observedGeneration current; the NovelEngine then."""

        def check() -> str | None:
            obj = self.novelengine(namespace, name)
            if obj is None:
                return "not found"
            status = obj.get("status") or {}
            ready = condition(obj, names.CONDITION_READY)
            generation = obj["metadata"]["generation"]
            if status.get("observedGeneration") != generation:
                return f"observedGeneration {status.get('observedGeneration')} != {generation}"
            if ready is None or ready["status"] != "True":
                return f"Ready: {ready}"
            return None

        self.wait(f"NovelEngine {namespace}/{name} Ready", check, timeout)
        found = self.novelengine(namespace, name)
        assert found is not None
        return found

    def events(self, namespace: str, name: str) -> list[Obj]:
        """Events about the NovelEngine `name`, oldest first."""
        events = [
            event
            for event in self.list("v1", "Event", namespace)
            if event["involvedObject"].get("kind") == names.KIND
            and event["involvedObject"].get("name") == name
        ]
        # Creation times have whole seconds: within one, the apiserver's resourceVersion (its
        # storage revision, which only grows) tells the order.
        return sorted(
            events,
            key=lambda event: (
                event["metadata"]["creationTimestamp"],
                int(event["metadata"]["resourceVersion"]),
            ),
        )

    def children(self, namespace: str, instance: str) -> set[tuple[str, str]]:
        """(kind, name) of every object labelled as a child of `instance`."""
        selector = f"{names.LABEL_INSTANCE}={instance},{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
        found = set()
        for api_version, kind in CHILD_KINDS:
            for item in self.list(api_version, kind, namespace, selector):
                found.add((kind, item["metadata"]["name"]))
        return found


def condition(obj: Mapping[str, Any], condition_type: str) -> Obj | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == condition_type:
            return dict(item)
    return None


def condition_status(obj: Mapping[str, Any], condition_type: str) -> str | None:
    found = condition(obj, condition_type)
    return None if found is None else str(found["status"])


def wait_reconciles(
    cluster: Cluster, operator: OperatorProcess, count: int, timeout: float = 30.0
) -> None:
    """Wait until the operator has finished `count` more reconciles (resyncs included)."""
    seen = operator.reconciles()
    cluster.wait(
        f"{count} more reconciles",
        lambda: None if operator.reconciles() >= seen + count else f"{operator.reconciles()}",
        timeout=timeout,
    )


#: How the apiserver words an RBAC refusal (a quota refusal is "forbidden" too, but not this).
RBAC_DENIAL = re.compile(r'User ".*" cannot [a-z]+ resource')


def is_problem(record: dict[str, Any], expected_failures: Sequence[str] = ()) -> bool:
    """A missing permission, a failed reconcile (logged as a warning when an API request
    failed) unless it names one of `expected_failures`, or an error other than a request kopf
    says it retries."""
    message = str(record.get("message", ""))
    if RBAC_DENIAL.search(message) or RBAC_DENIAL.search(str(record.get("exc_info", ""))):
        return True
    if record.get("name") == "novel_operator.workqueue" and "failed (attempt" in message:
        return not any(failure in message for failure in expected_failures)
    return record.get("severity") in ("error", "fatal") and "will retry" not in message


def wait_replicas(cluster: Cluster, namespace: str, name: str, replicas: int) -> None:
    """Wait for the Deployment to ask for `replicas` and have that many ready pods."""

    def check() -> str | None:
        deployment = cluster.get(*DEPLOYMENT, namespace, name)
        if deployment is None:
            return "no Deployment"
        wanted = deployment["spec"]["replicas"]
        ready = (deployment.get("status") or {}).get("readyReplicas", 0)
        return None if wanted == ready == replicas else f"replicas {wanted}, ready {ready}"

    cluster.wait(f"Deployment {namespace}/{name} at {replicas} ready replicas", check, 60)


def wait_events(
    cluster: Cluster, namespace: str, name: str, reason: str, messages: set[str]
) -> None:
    """Wait until each of ``messages`` is the message of an Event of ``reason`` about the
    NovelEngine, or its part before a colon: the operator posts its Events in the background,
    after the change they report."""

    def check() -> str | None:
        found = set()
        for event in cluster.events(namespace, name):
            if event["reason"] == reason:
                found |= {event["message"], event["message"].split(":")[0]}
        missing = messages - found
        return f"no {reason} Event for {sorted(missing)}" if missing else None

    cluster.wait(f"{reason} Events about {namespace}/{name}", check, 10)


def scaled_messages(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [
        str(event["message"])
        for event in cluster.events(namespace, name)
        if event["reason"] == "Scaled"
    ]


def scale_decisions(operator: OperatorProcess) -> dict[str, float]:
    prefix = "novel_operator_scale_decisions_total{"
    return {key: value for key, value in operator.metrics().items() if key.startswith(prefix)}


def autoscaling_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.novelengine(namespace, name)
    assert obj is not None
    return dict((obj.get("status") or {}).get("autoscaling") or {})


def wait_condition(
    cluster: Cluster,
    namespace: str,
    name: str,
    condition_type: str,
    status: str | None = None,
    timeout: float = 60.0,
) -> Obj:
    """Wait until the NovelEngine has the condition (with `status`, if given); the condition."""

    def check() -> str | None:
        obj = cluster.novelengine(namespace, name)
        found = condition(obj, condition_type) if obj is not None else None
        if found is None:
            return f"no {condition_type} condition"
        return None if status in (None, found["status"]) else str(found)

    cluster.wait(f"{condition_type}={status or 'any'} on {namespace}/{name}", check, timeout)
    obj = cluster.novelengine(namespace, name)
    found = condition(obj, condition_type) if obj is not None else None
    assert found is not None
    return found
