"""Credentials: one kubernetes client Configuration, shared by kopf's watches and our requests."""

import os
from pathlib import Path

import kopf
from kubernetes import client, config

#: Set in every pod by the kubelet; in-cluster config is used when no kubeconfig is given.
_IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
#: Mounted by the kubelet in every pod with a ServiceAccount token: the pod's own namespace.
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace() -> str | None:
    """The namespace of the pod this process runs in (from its ServiceAccount mount), None
    outside a pod. Reads a file: call it off the loop."""
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    except FileNotFoundError:
        return None
    return namespace or None


def load_configuration(kubeconfig: Path | None, *, pool_size: int) -> client.Configuration:
    """Client configuration from `kubeconfig`, else in-cluster (ServiceAccount), else the
    usual kubeconfig lookup ($KUBECONFIG, ~/.kube/config). Reads files: call it off the loop."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
        )
    elif os.environ.get(_IN_CLUSTER_ENV):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration, persist_config=False
        )
    configuration.connection_pool_maxsize = pool_size
    return configuration


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials as kopf's ConnectionInfo. May re-read a rotated token file."""
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
