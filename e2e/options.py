"""The e2e suite's command-line options, checked up front (pure: no cluster, no processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Provider = Literal["kind", "existing"]
PROVIDERS: tuple[Provider, ...] = ("kind", "existing")
DEFAULT_CLUSTER = "novel-engine-e2e"
DEFAULT_RELEASE_NAMESPACE = "novel-engine-system"


class OptionsError(ValueError):
    """The options contradict each other or miss something the provider needs."""


@dataclass(frozen=True)
class E2EOptions:
    """How the suite reaches a cluster and what it installs there.

    `simulated_pods`: the cluster's pods run no containers (a kwok test bed). The chart's
    operator pod then does nothing, so the suite runs the operator as a local process with the
    token of the ServiceAccount the chart created, and skips the scenarios that need real pods.
    """

    provider: Provider
    keep: bool
    cluster_name: str
    kubeconfig: Path | None
    engine_image: str | None
    operator_image: str | None
    kind_node_image: str | None
    metrics_server_version: str | None
    release_namespace: str
    simulated_pods: bool

    @property
    def real_pods(self) -> bool:
        return not self.simulated_pods


#: Each option as (flag, keyword arguments): the same for pytest's `parser.addoption` and for
#: an `argparse` parser (the unit tests parse with one).
OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--provider", {"choices": PROVIDERS, "default": "kind", "help": "kind (default) or existing"}),
    ("--keep", {"action": "store_true", "help": "kind: keep the cluster afterwards"}),
    ("--cluster-name", {"default": DEFAULT_CLUSTER, "help": "kind: the cluster's name"}),
    (
        "--kubeconfig",
        {"type": Path, "default": None, "help": "existing: kubeconfig (default: $KUBECONFIG)"},
    ),
    ("--engine-image", {"default": None, "help": "engine image (default: the chart's)"}),
    ("--operator-image", {"default": None, "help": "operator image (default: the chart's)"}),
    ("--kind-node-image", {"default": None, "help": "kind: node image (make e2e pins it)"}),
    (
        "--metrics-server-version",
        {"default": None, "help": "kind: the metrics-server release to install"},
    ),
    (
        "--release-namespace",
        {"default": DEFAULT_RELEASE_NAMESPACE, "help": "namespace of the chart's release"},
    ),
    (
        "--simulated-pods",
        {
            "action": "store_true",
            "help": "existing: the pods run no containers (kwok); run the operator locally",
        },
    ),
)


def parse_options(values: dict[str, object]) -> E2EOptions:
    """Options from their parsed values (keyed by dest), with the cross-checks."""
    options = E2EOptions(
        provider=values["provider"],  # type: ignore[arg-type]
        keep=bool(values["keep"]),
        cluster_name=str(values["cluster_name"]),
        kubeconfig=values["kubeconfig"],  # type: ignore[arg-type]
        engine_image=values["engine_image"],  # type: ignore[arg-type]
        operator_image=values["operator_image"],  # type: ignore[arg-type]
        kind_node_image=values["kind_node_image"],  # type: ignore[arg-type]
        metrics_server_version=values["metrics_server_version"],  # type: ignore[arg-type]
        release_namespace=str(values["release_namespace"]),
        simulated_pods=bool(values["simulated_pods"]),
    )
    if options.provider == "kind":
        if options.simulated_pods:
            raise OptionsError("--simulated-pods is for --provider existing (kind runs real pods)")
        if options.kubeconfig is not None:
            raise OptionsError("--kubeconfig is for --provider existing (kind makes its own)")
        missing = [
            flag
            for flag, value in (
                ("--kind-node-image", options.kind_node_image),
                ("--metrics-server-version", options.metrics_server_version),
            )
            if not value
        ]
        if missing:
            raise OptionsError(
                f"--provider kind needs {' and '.join(missing)} (`make e2e` passes the pinned ones)"
            )
    elif options.keep:
        raise OptionsError("--keep is for --provider kind (an existing cluster is never deleted)")
    return options
