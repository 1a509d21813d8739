"""Shared inputs of the operator's unit tests: an owner, specs built from Kubernetes JSON, the
sample resource in crds/examples/, and every model of the resource."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from novel_operator.model import KubeModel, NovelEngineSpec, Owner

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PATH = REPO_ROOT / "crds" / "examples" / "novelengine.yaml"
CRD_PATH = REPO_ROOT / "crds" / "novelengines.novelengine.io.yaml"

OWNER = Owner(name="demo", namespace="stories", uid="0b1c2d3e-uid", generation=4)
#: Where the operator runs (its NetworkPolicy peer selects this namespace).
OPERATOR_NAMESPACE = "novel-engine-system"


def spec_of(data: dict[str, Any] | None = None) -> NovelEngineSpec:
    """A spec from the camelCase JSON a user writes."""
    return NovelEngineSpec.model_validate(data or {})


def all_models(base: type[KubeModel] = KubeModel) -> Iterator[type[KubeModel]]:
    """Every model class of the resource (the subclasses of `base`, recursively)."""
    for model in base.__subclasses__():
        yield model
        yield from all_models(model)


def load_sample() -> dict[str, Any]:
    """The sample NovelEngine resource."""
    sample: dict[str, Any] = yaml.safe_load(SAMPLE_PATH.read_text())
    return sample


def containers_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod template's containers of a workload manifest."""
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers
