"""Metadata every child shares: name, namespace, common labels and the controller ownerReference."""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from novel_operator import names
from novel_operator.model import Owner, quantity_value

Manifest = dict[str, Any]
_BINARY_UNITS = (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))


def owner_reference(owner: Owner) -> dict[str, Any]:
    """The NovelEngine as controller of a child (garbage collection deletes the child with it)."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def quantity_sum(quantities: Iterable[str]) -> str:
    """The sum of byte quantities, as a quantity (`1Gi` + `64Mi` -> `1088Mi`)."""
    total = math.ceil(sum(quantity_value(quantity) for quantity in quantities))
    for suffix, unit in _BINARY_UNITS:
        if total and total % unit == 0:
            return f"{total // unit}{suffix}"
    return str(total)


def common_labels(instance: str, app: str, component: str) -> dict[str, str]:
    """The four app.kubernetes.io labels on every child and pod."""
    return {
        names.LABEL_NAME: app,
        names.LABEL_INSTANCE: instance,
        names.LABEL_COMPONENT: component,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def manifest(
    api_version: str,
    kind: str,
    owner: Owner,
    name: str,
    *,
    app: str,
    component: str,
    annotations: dict[str, str] | None = None,
    **body: Any,
) -> Manifest:
    """A complete manifest: identity, metadata with labels and ownerReference, then `body`
    (`spec`, `data`, ...)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": common_labels(owner.name, app, component),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def engine_manifest(
    api_version: str,
    kind: str,
    owner: Owner,
    name: str | None = None,
    *,
    annotations: dict[str, str] | None = None,
    **body: Any,
) -> Manifest:
    """A manifest of the engine component, named after the instance unless `name` is given."""
    return manifest(
        api_version,
        kind,
        owner,
        names.engine_name(owner.name) if name is None else name,
        app=names.ENGINE_APP,
        component=names.COMPONENT_ENGINE,
        annotations=annotations,
        **body,
    )


def redis_manifest(api_version: str, kind: str, owner: Owner, **body: Any) -> Manifest:
    """A manifest of the managed Redis component."""
    return manifest(
        api_version,
        kind,
        owner,
        names.redis_name(owner.name),
        app=names.REDIS_APP,
        component=names.COMPONENT_CACHE,
        **body,
    )


@dataclass(frozen=True)
class StartupInputs:
    """Versions of what the pods read only when they start and the spec does not hold. Each goes
    on the pod templates that read it, so that a change rolls exactly those pods.

    `redis_credentials`: a token that changes when the Secret(s) holding the Redis credentials do,
    made of their metadata, never the password. `content`: a digest of the content ConfigMap's
    data, so that editing the content rolls the engine pods and nothing else (a label) does."""

    redis_credentials: str | None = None
    content: str | None = None

    def redis_credentials_annotation(self) -> dict[str, str]:
        """The annotation of the credentials' version (none when unknown)."""
        if self.redis_credentials is None:
            return {}
        return {names.REDIS_PASSWORD_VERSION_ANNOTATION: self.redis_credentials}

    def content_annotation(self) -> dict[str, str]:
        """The annotation of the content's version (none when unknown)."""
        return {} if self.content is None else {names.CONTENT_VERSION_ANNOTATION: self.content}


#: No version known: the default of builders that take `StartupInputs`.
NO_STARTUP_INPUTS = StartupInputs()


def restricted_security_context(user: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container security contexts meeting the `restricted` Pod Security Standard."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container
