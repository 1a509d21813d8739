"""One container of a Kubernetes pod spec, run with Docker the way the kubelet would run it.

``docker_run`` (pure) translates the container's command and args (with the kubelet's
``$(VAR)`` expansion), env, volume mounts, user and groups, read-only root, capabilities,
no-new-privileges, resource limits and the pod's grace period into ``docker run`` options.
``write_volumes`` lays out ConfigMap and Secret volumes as the kubelet does (its atomic writer):
``..<timestamp>/<key>`` files, a ``..data`` symlink to that folder and ``<key> -> ..data/<key>``
symlinks; they are bind-mounted read-only, and a ``subPath`` mount is the single file. An emptyDir
is a fresh folder (mode 0777, as the kubelet makes it) bind-mounted read-write, or a tmpfs for
``medium: Memory``. A bind mount, unlike Docker's tmpfs, never takes the mode of the image's
folder beneath it.

Not translated: ports and Services (the caller picks the network), probes and lifecycle hooks
(the tests poll the endpoints themselves), scheduling fields. A field this module cannot honour
(privileged, envFrom, volume items, a custom seccomp profile, another volume type) raises
ValueError rather than being dropped.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from novel_operator.model import quantity_value

#: `$(NAME)` references and the `$$` escape, as the kubelet expands them in command, args, env.
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)")
DEFAULT_VOLUME_MODE = 0o644


@dataclass(frozen=True)
class ClusterObjects:
    """The ConfigMaps and Secrets a pod refers to, by name: key -> decoded bytes."""

    config_maps: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)

    @classmethod
    def from_manifests(cls, manifests: Iterable[Mapping[str, Any]]) -> ClusterObjects:
        """From ConfigMap (``data``, ``binaryData``) and Secret (``data`` in base64,
        ``stringData``) manifests; other kinds are ignored."""
        config_maps: dict[str, dict[str, bytes]] = {}
        secrets: dict[str, dict[str, bytes]] = {}
        for obj in manifests:
            name = obj["metadata"]["name"]
            if obj["kind"] == "ConfigMap":
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                binary = obj.get("binaryData") or {}
                config_maps[name] = data | {k: base64.b64decode(v) for k, v in binary.items()}
            elif obj["kind"] == "Secret":
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                strings = obj.get("stringData") or {}
                secrets[name] = data | {k: v.encode() for k, v in strings.items()}
        return cls(config_maps, secrets)

    def key(self, kind: str, name: str, key: str) -> bytes:
        source = self.config_maps if kind == "configMap" else self.secrets
        try:
            return source[name][key]
        except KeyError:
            raise ValueError(f"{kind} {name!r} has no key {key!r}") from None


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's expansion: `$(NAME)` becomes NAME's value when NAME is defined and stays
    as written otherwise; `$$` is an escaped `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def container_env(container: Mapping[str, Any], objects: ClusterObjects) -> dict[str, str]:
    """The container's environment: literal values (expanded against the variables before
    them) and values from ConfigMap/Secret keys."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand_references(var["value"], env)
            continue
        source = var.get("valueFrom", {})
        for ref, kind in (("secretKeyRef", "secret"), ("configMapKeyRef", "configMap")):
            if ref in source:
                selector = source[ref]
                value = objects.key(kind, selector["name"], selector["key"])
                env[var["name"]] = value.decode()
                break
        else:
            raise ValueError(f"env {var['name']}: unsupported source {sorted(source)}")
    if container.get("envFrom"):
        raise ValueError("envFrom is not translated")
    return env


def find_container(pod_spec: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in pod_spec["containers"]:
        if container["name"] == name:
            return dict(container)
    raise ValueError(f"no container {name!r} in the pod spec")


def _volume_source(volume: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    kinds = [k for k in volume if k != "name"]
    if len(kinds) != 1:
        raise ValueError(f"volume {volume['name']}: expected one source, got {kinds}")
    return kinds[0], volume[kinds[0]] or {}


def _security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    pod = pod_spec.get("securityContext", {})
    ctr = container.get("securityContext", {})
    merged = {**pod, **ctr}  # the container's settings win, as in Kubernetes
    options: list[str] = []
    user, group = merged.get("runAsUser"), merged.get("runAsGroup")
    if merged.get("runAsNonRoot") and user == 0:
        raise ValueError("runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
    if user is not None:
        options += ["--user", f"{user}:{group}" if group is not None else str(user)]
    for extra in [pod.get("fsGroup"), *pod.get("supplementalGroups", [])]:
        if extra is not None:
            options += ["--group-add", str(extra)]
    if ctr.get("privileged"):
        raise ValueError("privileged containers are not translated")
    if ctr.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    capabilities = ctr.get("capabilities", {})
    for cap in capabilities.get("drop", []):
        options += ["--cap-drop", cap]
    for cap in capabilities.get("add", []):
        options += ["--cap-add", cap]
    if ctr.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    seccomp = merged.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        options += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # Docker's default profile is the runtime default
        raise ValueError(f"seccomp profile {seccomp} is not translated")
    return options


def _resources(container: Mapping[str, Any]) -> list[str]:
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    options: list[str] = []
    if "memory" in limits:
        options += ["--memory", str(math.floor(quantity_value(limits["memory"])))]
    if "cpu" in limits:
        options += ["--cpus", str(quantity_value(limits["cpu"]))]
    if "cpu" in requests:  # the kubelet's cpu.shares for a request
        options += ["--cpu-shares", str(max(2, math.floor(quantity_value(requests["cpu"]) * 1024)))]
    return options


def _mounts(
    pod_spec: Mapping[str, Any], container: Mapping[str, Any], volume_paths: Mapping[str, Path]
) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    options: list[str] = []
    for mount in container.get("volumeMounts", []):
        target = mount["mountPath"]
        kind, source = _volume_source(volumes[mount["name"]])
        if kind == "emptyDir" and source.get("medium") == "Memory":
            if "subPath" in mount:
                raise ValueError(f"{target}: subPath of a memory emptyDir is not translated")
            tmpfs = f"{target}:rw,exec,nosuid,nodev,mode=0777"
            if "sizeLimit" in source:
                tmpfs += f",size={math.floor(quantity_value(source['sizeLimit']))}"
            options += ["--tmpfs", tmpfs]
            continue
        if kind not in ("configMap", "secret", "emptyDir", "persistentVolumeClaim"):
            raise ValueError(f"volume {mount['name']}: {kind} is not translated")
        path = volume_paths[mount["name"]]
        if "subPath" in mount:
            # The kubelet resolves the key's symlinks and mounts the file itself.
            path = (path / mount["subPath"]).resolve()
        # ConfigMap and Secret volumes are read-only whatever the mount says.
        read_only = kind in ("configMap", "secret") or mount.get("readOnly", False)
        spec = f"type=bind,source={path},target={target}"
        options += ["--mount", spec + (",readonly" if read_only else "")]
    return options


@dataclass(frozen=True)
class DockerRun:
    """`docker run <options> <image> <args>`."""

    options: Sequence[str]
    image: str
    args: Sequence[str]

    def argv(self) -> list[str]:
        return ["run", *self.options, self.image, *self.args]


def docker_run(
    pod_spec: Mapping[str, Any],
    container_name: str,
    *,
    env: Mapping[str, str],
    volume_paths: Mapping[str, Path],
    image: str | None = None,
    extra_options: Sequence[str] = (),
) -> DockerRun:
    """The `docker run` of one container of `pod_spec`. `env` is its resolved environment
    (`container_env`), `volume_paths` the host folders of its ConfigMap, Secret and claim
    volumes (`write_volumes`); `image` replaces the spec's (a test tag); `extra_options`
    (name, network, detach...) go first."""
    container = find_container(pod_spec, container_name)
    options = [*extra_options]
    for name, value in env.items():
        options += ["--env", f"{name}={value}"]
    options += _security(pod_spec, container)
    options += _resources(container)
    options += _mounts(pod_spec, container, volume_paths)
    if "workingDir" in container:
        options += ["--workdir", container["workingDir"]]
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    options += ["--stop-timeout", str(grace)]
    command = [expand_references(part, env) for part in container.get("command", [])]
    args = [expand_references(part, env) for part in container.get("args", [])]
    if command:
        options += ["--entrypoint", command[0]]
        args = [*command[1:], *args]
    return DockerRun(options, image or container["image"], args)


def write_volume(
    directory: Path,
    files: Mapping[str, bytes],
    *,
    mode: int = DEFAULT_VOLUME_MODE,
    group: int | None = None,
) -> Path:
    """A ConfigMap/Secret volume in `directory`, laid out as the kubelet's atomic writer does;
    `group` (the pod's fsGroup) owns the files when this process may chown them."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    stamp = directory / datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    stamp.mkdir(mode=0o755)
    for key, content in files.items():
        path = stamp / key
        path.write_bytes(content)
        path.chmod(mode)
        if group is not None and os.geteuid() == 0:
            os.chown(path, -1, group)
    (directory / "..data").symlink_to(stamp.name)
    for key in files:
        (directory / key).symlink_to(f"..data/{key}")
    return directory


def write_volumes(
    pod_spec: Mapping[str, Any], objects: ClusterObjects, root: Path
) -> dict[str, Path]:
    """Write every ConfigMap and Secret volume of `pod_spec` under `root` (one folder each) and
    make a folder for each claim and disk emptyDir; their paths by volume name, for
    `docker_run`."""
    group = pod_spec.get("securityContext", {}).get("fsGroup")
    paths: dict[str, Path] = {}
    for volume in pod_spec.get("volumes", []):
        kind, source = _volume_source(volume)
        directory = root / volume["name"]
        if kind in ("configMap", "secret"):
            if "items" in source:
                raise ValueError(f"volume {volume['name']}: items are not translated")
            name = source["name"] if kind == "configMap" else source["secretName"]
            store = objects.config_maps if kind == "configMap" else objects.secrets
            mode = source.get("defaultMode", DEFAULT_VOLUME_MODE)
            paths[volume["name"]] = write_volume(directory, store[name], mode=mode, group=group)
        elif kind == "persistentVolumeClaim" or (
            kind == "emptyDir" and source.get("medium") != "Memory"
        ):
            # A fresh folder, writable by anyone, as the kubelet makes an emptyDir.
            directory.mkdir(parents=True)
            directory.chmod(0o777)
            if group is not None and os.geteuid() == 0:
                os.chown(directory, -1, group)
            paths[volume["name"]] = directory
    return paths
