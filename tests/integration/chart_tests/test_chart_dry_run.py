"""Every manifest the chart renders, for each values variant, is accepted whole by the current
kube-apiserver (server-side apply, dryRun=All)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chart_harness import CI_VALUES, EDGE_VALUES, Helm, create_namespace, dry_run_apply
from testbed import Testbed

pytestmark = pytest.mark.integration

NAMESPACE = "novel-engine-system"
SERVED = ("stories", "stories-staging")  # ci/namespaced-values.yaml


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "default")
def test_rendered_manifests_are_accepted(
    helm: Helm, testbed: Testbed, prometheus_crds: None, values: Path | None
) -> None:
    for namespace in (NAMESPACE, *SERVED):
        create_namespace(testbed, namespace)
    manifests = helm.template(namespace=NAMESPACE, values=[values] if values else [])
    refused = [problem for m in manifests if (problem := dry_run_apply(testbed, m))]
    assert not refused


def test_the_longest_release_name_gives_names_the_apiserver_accepts(
    helm: Helm, testbed: Testbed, prometheus_crds: None
) -> None:
    create_namespace(testbed, NAMESPACE)
    release = "production-stories-operator-eu-west-1-blue-green-abcd"  # Helm allows 53 characters
    assert len(release) == 53
    manifests = helm.template(namespace=NAMESPACE, release=release)
    refused = [problem for m in manifests if (problem := dry_run_apply(testbed, m))]
    assert not refused


def test_values_at_the_schemas_limits_give_manifests_the_apiserver_accepts(
    helm: Helm, testbed: Testbed, tmp_path: Path
) -> None:
    create_namespace(testbed, NAMESPACE)
    values = tmp_path / "edge-values.yaml"
    values.write_text(yaml.safe_dump(EDGE_VALUES))
    manifests = helm.template(namespace=NAMESPACE, values=[values])
    refused = [problem for m in manifests if (problem := dry_run_apply(testbed, m))]
    assert not refused
