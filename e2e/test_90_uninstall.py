"""`helm uninstall` leaves nothing behind but the CRD (kept by design: deleting it would delete
every NovelEngine in the cluster). Runs last: it removes the release the other scenarios use."""

from __future__ import annotations

from cluster import Cluster
from conftest import Operator
from options import E2EOptions
from providers import RELEASE, helm_uninstall

from novel_operator import names

#: Kinds a chart release may create, namespaced or not.
RELEASE_KINDS = [
    ("apps/v1", "Deployment"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
]


def release_objects(cluster: Cluster) -> list[str]:
    selector = f"app.kubernetes.io/instance={RELEASE}"
    return [
        f"{kind}/{item['metadata']['name']}"
        for api_version, kind in RELEASE_KINDS
        for item in cluster.list(api_version, kind, selector=selector)
    ]


def test_uninstall_leaves_only_the_crd(
    cluster: Cluster, options: E2EOptions, release: Operator
) -> None:
    assert release_objects(cluster), "the release labels its objects"
    release.stop()
    helm_uninstall(cluster, options)
    assert release_objects(cluster) == []
    crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", names.CRD_NAME, None)
    assert crd is not None
