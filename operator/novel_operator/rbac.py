"""The Kubernetes permissions the operator needs, in one place (the chart and tests render them).

Each rule names the code that uses it (`used_by`, as `module:qualified.name`): a permission is
added together with the code that needs it, and removed with it. A unit test checks that every
name resolves; an integration test runs the operator through every code path and checks in the
apiserver's audit log that each verb of each rule was used (but of the rules only admission
checks, `admission_only`), and that nothing was refused.

Every resource here is namespaced, so the same rules work as a ClusterRole (all namespaces) or
as a Role in each watched namespace. No `update` verbs but the one on `novelengines/finalizers`,
which, like `delete` on ConfigMaps, no request uses but admission checks (server-side apply is a
`patch`; creating an object through it needs `create` as well), no access to CRDs or
Namespaces; Pods and PersistentVolumeClaims are only listed, Events listed and created.
"""

from dataclasses import dataclass
from typing import Any, Final

from novel_operator import names

#: Reading children: each reconcile gets every child by name, kopf watches them by label.
_READ_CHILDREN = (
    "novel_operator.reconcile:Reconciler._read",
    "novel_operator.handlers:build_registry",
)
#: Server-side apply of a child (a PATCH; creating a missing child through it needs `create`).
_APPLY = "novel_operator.kube.client:KubeClient.sync_child"
#: Deleting a child the spec no longer calls for.
_DELETE = "novel_operator.kube.client:KubeClient.delete_owned"
_GET_LIST_WATCH = ("get", "list", "watch")


@dataclass(frozen=True)
class PolicyRule:
    """One RBAC PolicyRule, and the functions that use it (`module:qualified.name`)."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    used_by: tuple[str, ...]
    # True for a permission that no request of the operator's uses, but that the apiserver checks
    # when admitting one (so the audit log, which records requests, never shows it).
    admission_only: bool = False

    def to_k8s(self) -> dict[str, Any]:
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


def _applied_and_deleted(group: str, *resources: str) -> PolicyRule:
    """Children read, watched, applied and deleted."""
    return PolicyRule(
        (group,),
        resources,
        (*_GET_LIST_WATCH, "create", "patch", "delete"),
        (*_READ_CHILDREN, _APPLY, _DELETE),
    )


RBAC_RULES: Final[tuple[PolicyRule, ...]] = (
    # The custom resource: each reconcile reads it; kopf lists and watches it.
    PolicyRule(
        (names.GROUP,),
        (names.PLURAL,),
        _GET_LIST_WATCH,
        (
            "novel_operator.reconcile:Reconciler._reconcile",
            "novel_operator.handlers:build_registry",
        ),
    ),
    PolicyRule(
        (names.GROUP,),
        (f"{names.PLURAL}/status",),
        ("patch",),
        ("novel_operator.kube.client:KubeClient.apply_status",),
    ),
    # Every child's ownerReference sets blockOwnerDeletion (a foreground deletion of the
    # NovelEngine waits for its children); where the OwnerReferencesPermissionEnforcement
    # admission plugin runs (OpenShift, hardened clusters), setting it takes `update` on the
    # owner's finalizers. The operator never updates them; no finalizer is ever added.
    PolicyRule(
        (names.GROUP,),
        (f"{names.PLURAL}/finalizers",),
        ("update",),
        ("novel_operator.builders.common:owner_reference",),
        admission_only=True,
    ),
    # The engine settings ConfigMap is applied and never deleted (every spec has one). Referenced
    # ConfigMaps (content) are read by the reconcile and, when labelled, watched.
    PolicyRule(
        ("",),
        ("configmaps",),
        (*_GET_LIST_WATCH, "create", "patch"),
        (*_READ_CHILDREN, "novel_operator.kube.watch:LabelSelectorWatch.run", _APPLY),
    ),
    # Where that plugin runs, changing an object's ownerReferences also takes `delete` on the
    # object: putting back a settings ConfigMap's stripped ownerReference (the apply adopts
    # it). The operator never deletes a ConfigMap. (Every other child kind is deleted anyway.)
    PolicyRule(("",), ("configmaps",), ("delete",), (_APPLY,), admission_only=True),
    # The managed Redis password Secret is created once with its password (which is never
    # applied, so never changed), patched to put back a password a hand edit removed or its
    # metadata (ownerReference, labels) that one stripped, and deleted with the managed Redis.
    # Referenced Secrets (external Redis) are read by the reconcile and, when labelled, watched.
    PolicyRule(
        ("",),
        ("secrets",),
        (*_GET_LIST_WATCH, "create", "patch", "delete"),
        (
            *_READ_CHILDREN,
            "novel_operator.kube.watch:LabelSelectorWatch.run",
            "novel_operator.kube.client:KubeClient.ensure_password_secret",
            _DELETE,
        ),
    ),
    # The other children are applied, and deleted when the spec no longer calls for them.
    _applied_and_deleted("", "services"),
    _applied_and_deleted("apps", "deployments", "statefulsets"),
    _applied_and_deleted("autoscaling", "horizontalpodautoscalers"),
    _applied_and_deleted("policy", "poddisruptionbudgets"),
    _applied_and_deleted("networking.k8s.io", "networkpolicies"),
    # Replicas the autoscaler sets when no HPA owns them (engine targets only): a merge patch on the
    # workload's scale subresource (the current count is read from the workload itself).
    PolicyRule(
        ("apps",),
        ("deployments/scale", "statefulsets/scale"),
        ("patch",),
        ("novel_operator.kube.client:KubeClient.scale",),
    ),
    # Engine pods: the autoscaler lists a NovelEngine's engine pods by label selector at each
    # sync, to scrape the ready ones' /metrics; the reconcile, to name what holds up a rollout.
    # List only.
    PolicyRule(
        ("",),
        ("pods",),
        ("list",),
        (
            "novel_operator.kube.client:KubeClient.list_pods",
            "novel_operator.reconcile:Reconciler._blockers",
        ),
    ),
    # Events about NovelEngines (the reconcile records core Events; kopf posts none).
    PolicyRule(
        ("",),
        ("events",),
        ("create",),
        ("novel_operator.kube.client:KubeClient.record_event",),
    ),
    # What holds up a rollout that does not finish: the engine pods (above), the StatefulSet's
    # volume claims by the engine selector, the volume controller's Events about a claim that
    # does not bind (by field selector on the claim), and the StatefulSet controller's
    # FailedCreate Events about the StatefulSet (by field selector on it and the reason).
    PolicyRule(
        ("",),
        ("persistentvolumeclaims", "events"),
        ("list",),
        ("novel_operator.reconcile:Reconciler._blockers",),
    ),
)
