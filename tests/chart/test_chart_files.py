"""The chart's generated and derived files agree with their one source: the project version, the
operator's CRD and RBAC rules, the sample NovelEngine and the oldest supported Kubernetes."""

from pathlib import Path
from typing import Any

import yaml

import novel_engine
import novel_operator
from novel_operator import names
from novel_operator.crd import render_crd
from novel_operator.rbac import RBAC_RULES

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "novel-engine-operator"
VERSIONS_FILE = REPO_ROOT / "scripts" / "k8s_versions.env"


def chart_yaml() -> dict[str, Any]:
    chart: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart


def annotation(key: str) -> Any:
    return yaml.safe_load(chart_yaml()["annotations"][key])


def versions() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in VERSIONS_FILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def test_chart_version_and_app_version_are_the_package_version() -> None:
    chart = chart_yaml()
    assert chart["version"] == novel_engine.__version__, "Chart.yaml version != package version"
    assert chart["appVersion"] == novel_engine.__version__, "Chart.yaml appVersion != package"


def test_artifact_hub_images_are_the_default_images_of_this_version() -> None:
    images = {image["name"]: image["image"] for image in annotation("artifacthub.io/images")}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert images == {
        "operator": f"{values['image']['repository']}:{novel_operator.__version__}",
        "engine": names.DEFAULT_ENGINE_IMAGE,
    }


def test_artifact_hub_crds_and_example_are_the_real_ones() -> None:
    [crd] = annotation("artifacthub.io/crds")
    assert (crd["kind"], crd["version"], crd["name"]) == (names.KIND, names.VERSION, names.CRD_NAME)
    sample = yaml.safe_load((REPO_ROOT / "crds" / "examples" / "novelengine.yaml").read_text())
    assert annotation("artifacthub.io/crdsExamples") == [sample]
    assert annotation("artifacthub.io/license") == "Apache-2.0"


def test_the_chart_crd_is_the_generated_crd() -> None:
    copy = CHART / "files" / "crd-novelengines.novelengine.io.yaml"
    assert copy.read_text() == render_crd(), "stale chart CRD: run `make generate`"


def test_the_chart_rbac_rules_are_the_operator_rules() -> None:
    generated = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text())
    assert generated["rules"] == [rule.to_k8s() for rule in RBAC_RULES], (
        "stale chart RBAC rules: run `make generate`"
    )


def test_kube_version_is_the_oldest_release_the_tests_dry_run_against() -> None:
    oldest = versions()["KUBERNETES_OLDEST_VERSION"]  # e.g. v1.30.14
    major, minor, _ = oldest.removeprefix("v").split(".")
    assert chart_yaml()["kubeVersion"] == f">={major}.{minor}.0-0"
