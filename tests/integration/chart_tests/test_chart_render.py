"""The chart as helm renders it: lint, the objects of each values variant, and a values schema
that refuses bad values by name. Needs the helm binary only (no control plane)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import CHART, CI_VALUES, EDGE_VALUES, Helm, Manifest, sample_children
from testbed import read_versions

import novel_operator
from novel_operator import names
from novel_operator.cli import build_parser
from novel_operator.crd import generate_crd
from novel_operator.rbac import RBAC_RULES

NAMESPACE = "novel-engine-system"


def by_kind(manifests: list[Manifest]) -> dict[str, list[Manifest]]:
    found: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        found.setdefault(manifest["kind"], []).append(manifest)
    return found


def only(manifests: list[Manifest], kind: str) -> Manifest:
    [manifest] = by_kind(manifests)[kind]
    return manifest


def container(manifests: list[Manifest]) -> dict[str, Any]:
    [operator] = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def values_file(name: str) -> Path:
    return CHART / "ci" / name


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "default")
def test_lint_strict_passes(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    assert "0 chart(s) failed" in helm.run(*args).stdout


def test_default_values_serve_every_namespace_with_a_cluster_role(helm: Helm) -> None:
    manifests = helm.template()
    kinds = {kind: len(items) for kind, items in by_kind(manifests).items()}
    assert kinds == {
        "CustomResourceDefinition": 1,
        "ServiceAccount": 1,
        "ClusterRole": 1,
        "ClusterRoleBinding": 1,
        "Service": 1,
        "Deployment": 1,
    }
    role = only(manifests, "ClusterRole")
    assert role["rules"] == [rule.to_k8s() for rule in RBAC_RULES]
    binding = only(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = only(manifests, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    ]
    assert container(manifests)["args"] == [
        "run",
        "--all-namespaces",
        "--operator-namespace",
        NAMESPACE,
        "--listen",
        "0.0.0.0:8080",
        "--workers",
        "4",
        "--resync-seconds",
        "300",
        "--watch-timeout-seconds",
        "300",
        "--log-format",
        "json",
    ]


def test_the_operator_pod_is_one_restricted_replica_probed_on_healthz(helm: Helm) -> None:
    manifests = helm.template()
    deployment = only(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(manifests)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == only(manifests, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert operator["image"] == f"novel-engine/operator:{novel_operator.__version__}"
    assert operator["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    [tmp] = [m for m in operator["volumeMounts"] if m["mountPath"] == "/tmp"]
    [volume] = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    # The NetworkPolicies the operator writes let its pods in by this label.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_NAME] == names.OPERATOR_APP
    service = only(manifests, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_the_crd_is_the_generated_one_kept_on_uninstall(helm: Helm) -> None:
    crd = only(helm.template(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert crd["spec"] == generate_crd()["spec"]


def test_crds_off_renders_no_crd(helm: Helm) -> None:
    manifests = helm.template(values=[values_file("no-crds-values.yaml")])
    assert "CustomResourceDefinition" not in by_kind(manifests)
    assert "Deployment" in by_kind(manifests)


def test_listed_namespaces_get_a_role_each_and_no_cluster_role(helm: Helm) -> None:
    manifests = helm.template(values=[values_file("namespaced-values.yaml")])
    found = by_kind(manifests)
    assert "ClusterRole" not in found
    assert "ClusterRoleBinding" not in found
    served = ["stories", "stories-staging"]
    assert [role["metadata"]["namespace"] for role in found["Role"]] == served
    assert [binding["metadata"]["namespace"] for binding in found["RoleBinding"]] == served
    for role in found["Role"]:
        assert role["rules"] == [rule.to_k8s() for rule in RBAC_RULES]
    for binding in found["RoleBinding"]:
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    args = container(manifests)["args"]
    assert args[:5] == ["run", "--namespace", "stories", "--namespace", "stories-staging"]
    assert "--all-namespaces" not in args


def test_monitors_scrape_the_operator_service_and_the_engine_pods(helm: Helm) -> None:
    manifests = helm.template(values=[values_file("monitoring-values.yaml")])
    service = only(manifests, "Service")
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [
        service["spec"]["ports"][0]["name"]
    ]

    engines = only(manifests, "PodMonitor")
    assert engines["spec"]["namespaceSelector"] == {"any": True}
    [endpoint] = engines["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
    # What the operator builds for the sample NovelEngine is what the PodMonitor selects.
    [engine] = [
        m
        for m in sample_children("stories")
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "demo"
    ]
    template = engine["spec"]["template"]
    assert (
        engines["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    )
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert endpoint["port"] in ports


def test_the_engine_monitor_follows_the_served_namespaces(helm: Helm) -> None:
    manifests = helm.template(
        values=[values_file("namespaced-values.yaml"), values_file("monitoring-values.yaml")]
    )
    selector = only(manifests, "PodMonitor")["spec"]["namespaceSelector"]
    assert selector == {"matchNames": ["stories", "stories-staging"]}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("operator.workers=many", "/operator/workers"),  # wrong type
        ("operator.logFormat=xml", "/operator/logFormat"),  # not in the enum
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("image.tag=1.0:latest", "/image/tag"),  # not a tag
        ("runAsUser=0", "/runAsUser"),  # root
        ("watchNamespaces[0]=Not_A_Namespace", "/watchNamespaces/0"),
        ("metrics.port=80", "/metrics/port"),
        ("replicaCount=2", "replicaCount"),  # unknown key: one replica only
        ("operator.extraArgs=x", "extraArgs"),
        ("resources.requests.cpu=-1", "/resources/requests/cpu"),  # a number: no pattern
        ("image.repository=Not A Repo", "/image/repository"),
        ("image.repository=novel-engine/operator:1.0", "/image/repository"),  # image.tag's job
        ("image.repository=Team/operator", "/image/repository"),  # a path is lowercase
        ("fullnameOverride=Bad_Name", "/fullnameOverride"),
        ("serviceAccount.name=Bad_Name", "/serviceAccount/name"),
        ("priorityClassName=Bad_Name", "/priorityClassName"),
        ("imagePullSecrets[0].name=Bad_Name", "/imagePullSecrets/0/name"),
        ("tolerations[0].operator=Bogus", "/tolerations/0/operator"),
        ("tolerations[0].effect=NoRun", "/tolerations/0/effect"),
        ("tolerations[0].tolerationSecond=5", "/tolerations/0': additional properties"),
        # helm template renders without the name; the chart's own check fails only then.
        ("serviceAccount.create=false", "/serviceAccount/name"),
        # The chart's own labels: a second one is a duplicate YAML key the install trips on.
        (r"podLabels.app\.kubernetes\.io/name=x", "/podLabels/app.kubernetes.io~1name"),
        (r"podLabels.app\.kubernetes\.io/instance=x", "/podLabels/app.kubernetes.io~1instance"),
        (
            r"metrics.serviceMonitor.labels.helm\.sh/chart=x",
            "/metrics/serviceMonitor/labels/helm.sh~1chart",
        ),
        ("podLabels.bad key=x", "/podLabels': additional properties 'bad key'"),
        (r"podLabels.Example\.com/team=x", "/podLabels': additional properties 'Example.com/team'"),
        (f"podLabels.{'x' * 64}=x", f"/podLabels': additional properties '{'x' * 64}'"),
        ("podLabels.team=not a value", "/podLabels/team"),
        (f"engineMonitor.labels.team={'x' * 64}", "/engineMonitor/labels/team"),
    ],
)
def test_bad_values_are_refused_by_name(helm: Helm, value: str, named: str) -> None:
    template = helm.run("template", "neo", str(CHART), "--set", value, check=False)
    lint = helm.run("lint", str(CHART), "--set", value, check=False)
    assert template.returncode != 0
    assert named in template.stderr, template.stderr
    assert lint.returncode != 0
    assert named in lint.stdout + lint.stderr


def test_lint_strict_refuses_a_missing_service_account_name(helm: Helm) -> None:
    lint = helm.run(
        "lint", "--strict", str(CHART), "--set", "serviceAccount.create=false", check=False
    )
    assert lint.returncode != 0
    assert "/serviceAccount/name" in lint.stdout + lint.stderr
    named = helm.template(
        set_values=["serviceAccount.create=false", "serviceAccount.name=existing"]
    )
    assert "ServiceAccount" not in by_kind(named)
    assert only(named, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_names_and_labels_at_the_limits_pass_the_schema(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "edge-values.yaml"
    values.write_text(yaml.safe_dump(EDGE_VALUES))
    pod = only(helm.template(values=[values]), "Deployment")["spec"]["template"]
    assert EDGE_VALUES["podLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["priorityClassName"] == EDGE_VALUES["priorityClassName"]
    assert [t["key"] for t in pod["spec"]["tolerations"]] == [
        t["key"] for t in EDGE_VALUES["tolerations"]
    ]


@pytest.mark.parametrize(
    "repository",
    ["localhost:5000/x", "Registry.Example.com/team/operator", "mirror:5000/a/b", "ghcr.io/o/p"],
)
def test_image_repositories_with_a_registry_host_pass_the_schema(
    helm: Helm, repository: str
) -> None:
    deployment = only(helm.template(set_values=[f"image.repository={repository}"]), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].rpartition(":")[0] == repository


@pytest.mark.parametrize("resync", [3_600_000, 0.5, 1e-7])
def test_numbers_of_a_values_file_render_as_the_operator_reads_them(
    helm: Helm, tmp_path: Path, resync: float
) -> None:
    # helm reads a values file's numbers as float64, which print as 1e+06 from a million on.
    values = tmp_path / "big-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "operator": {
                    "workers": 1_000_000,
                    "watchTimeoutSeconds": 1_000_000,
                    "resyncSeconds": resync,
                },
                "metrics": {"port": 65535},
                "runAsUser": 1_000_680_001,
                "runAsGroup": 1_000_680_001,
            }
        )
    )
    manifests = helm.template(values=[values])
    options = build_parser().parse_args(container(manifests)["args"])
    assert options.workers == 1_000_000
    assert options.watch_timeout_seconds == 1_000_000
    assert options.resync_seconds == resync
    assert options.listen == ("0.0.0.0", 65535)
    security = only(manifests, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert [security["runAsUser"], security["runAsGroup"]] == [1_000_680_001] * 2
    assert all(isinstance(security[key], int) for key in ("runAsUser", "runAsGroup"))


def test_helm_refuses_a_kubernetes_older_than_kube_version(helm: Helm) -> None:
    oldest = read_versions()["KUBERNETES_OLDEST_VERSION"]
    major, minor = oldest.removeprefix("v").split(".")[:2]
    older = f"v{major}.{int(minor) - 1}.0"
    assert helm.run("template", "neo", str(CHART), "--kube-version", oldest).returncode == 0
    refused = helm.run("template", "neo", str(CHART), "--kube-version", older, check=False)
    assert refused.returncode != 0
    assert "kubeVersion" in refused.stderr
