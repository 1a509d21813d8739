"""`novel-engine-operator` command line."""

import argparse
import asyncio
import logging
import math
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import kopf
import yaml
from kubernetes.config import ConfigException

from novel_operator import names
from novel_operator.autoscaler import DEFAULT_CACHE_PERIOD_SECONDS
from novel_operator.crd import render_crd
from novel_operator.kube.auth import (
    SERVICE_ACCOUNT_NAMESPACE_FILE,
    load_configuration,
    pod_namespace,
)
from novel_operator.ops import ListenError
from novel_operator.rbac import RBAC_RULES
from novel_operator.runtime import OperatorOptions, StartError, check_scope, run_operator
from novel_operator.scrape import DEFAULT_TIMEOUT_SECONDS


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port 1-65535, got {value!r}")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address, [::1]:8080
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _namespace(value: str) -> str:
    if not _NAMESPACE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a namespace name (a DNS-1123 label): {value!r}")
    return value


def _positive(value: str) -> float:
    number = float(value)
    if not 0 < number < math.inf:  # (nan compares false)
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novel-engine-operator", description="Runs NovelEngine resources on Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.set_defaults(usage_error=run.error)  # for what is checked after parsing
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve NovelEngines in every namespace"
    )
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        type=_namespace,
        metavar="NS",
        help="serve NovelEngines in namespace NS (repeat for several)",
    )
    run.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: in-cluster ServiceAccount, else $KUBECONFIG or "
        "~/.kube/config)",
    )
    run.add_argument(
        "--operator-namespace",
        type=_namespace,
        metavar="NS",
        help="namespace of the operator's own pods: engine NetworkPolicies let in the operator's "
        "pods from there only (default: the pod's namespace, from its ServiceAccount; required "
        "outside a pod)",
    )
    run.add_argument(
        "--listen",
        type=_listen_address,
        default=("0.0.0.0", 8080),
        metavar="HOST:PORT",
        help="address of /metrics and /healthz (default 0.0.0.0:8080)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=4,
        help="NovelEngines reconciled concurrently (default 4)",
    )
    run.add_argument(
        "--resync-seconds",
        type=_positive,
        default=300.0,
        help="period of the safety resync of every NovelEngine (default 300)",
    )
    run.add_argument(
        "--watch-timeout-seconds",
        type=_positive_int,
        default=300,
        help="server-side timeout of each watch request (default 300)",
    )
    run.add_argument(
        "--scrape-timeout-seconds",
        type=_positive,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"time one engine pod's /metrics may take (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    run.add_argument(
        "--cache-check-seconds",
        type=_positive,
        default=DEFAULT_CACHE_PERIOD_SECONDS,
        help="how often the engine pods of a NovelEngine with an L2 tier and no engine-metric "
        "autoscaling are scraped for CacheDegraded (default "
        f"{DEFAULT_CACHE_PERIOD_SECONDS:g}; with engine targets, autoscaling.syncPeriodSeconds)",
    )
    run.add_argument(
        "--scrape-address-map",
        type=Path,
        metavar="FILE",
        help='for test beds: a JSON file {"namespace/pod": "host:port", ...}, re-read when it '
        "changes; pods are scraped at those addresses instead of their pod IP, and pods it "
        "does not name are not scraped (their scrape counts as failed)",
    )
    run.add_argument(
        "--log-format", choices=["json", "text"], default="json", help="log format (default json)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    commands.add_parser("crd", help="print the NovelEngine CustomResourceDefinition (YAML)")
    rbac = commands.add_parser(
        "rbac", help="print the ClusterRole holding exactly the permissions the operator uses"
    )
    rbac.add_argument("--name", default=names.OPERATOR_APP, help="ClusterRole name")
    return parser


def cluster_role(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {names.LABEL_NAME: names.OPERATOR_APP}},
        "rules": [rule.to_k8s() for rule in RBAC_RULES],
    }


def _name_loggers_in_json() -> None:
    """kopf's JSON formatter, asked to add the logger's name to every record."""
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None:
            handler.setFormatter(type(handler.formatter)("%(name)s %(message)s"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crd())
        return
    if args.command == "rbac":
        sys.stdout.write(yaml.safe_dump(cluster_role(args.name), sort_keys=False))
        return
    operator_namespace = args.operator_namespace or pod_namespace()
    if operator_namespace is None:
        usage_error: Callable[[str], NoReturn] = args.usage_error  # `run`'s parser.error
        usage_error(
            f"--operator-namespace is required outside a pod ({SERVICE_ACCOUNT_NAMESPACE_FILE} "
            "does not exist): engine NetworkPolicies let in the operator's pods from that "
            "namespace only"
        )
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    if args.log_format == "json":
        _name_loggers_in_json()
    # cel-python, which evaluates the spec's CEL rules, logs every step of every evaluation.
    logging.getLogger("celpy").setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs every handled watch event ("Handler ... succeeded"); ours are on every
        # change of every child, which would drown what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    options = OperatorOptions(
        namespaces=tuple(args.namespaces or ()),
        operator_namespace=operator_namespace,
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        workers=args.workers,
        resync_seconds=args.resync_seconds,
        watch_timeout_seconds=args.watch_timeout_seconds,
        scrape_timeout_seconds=args.scrape_timeout_seconds,
        cache_check_seconds=args.cache_check_seconds,
        scrape_address_map=args.scrape_address_map,
    )
    try:
        # The Kubernetes client writes the certificates of a kubeconfig there.
        tempfile.gettempdir()
    except OSError as error:  # "No usable temporary directory found in [...]"
        parser.exit(2, f"{parser.prog}: temp dir: {error} (set TMPDIR)\n")
    if args.kubeconfig is not None and not args.kubeconfig.exists():
        # (the client would say only "Invalid kube-config file. No configuration found.")
        parser.exit(2, f"{parser.prog}: --kubeconfig {args.kubeconfig}: no such file\n")
    try:
        # Connections of failed requests go back to the pool late; room for them avoids
        # discarding (and re-handshaking) warm ones.
        configuration = load_configuration(args.kubeconfig, pool_size=2 * options.api_concurrency)
    except (ConfigException, yaml.YAMLError, OSError, TypeError, AttributeError, KeyError) as error:
        # No credentials, or a file that is no kubeconfig (the client's loader fails on one
        # that is YAML of another shape with these errors too): one line, not a traceback.
        message = " ".join(str(error).split())
        if isinstance(error, (TypeError, AttributeError, KeyError)):  # (Python's words, no use)
            message = (
                f"{args.kubeconfig or 'the kubeconfig'} is no kubeconfig (not the clusters,"
                " contexts and users one holds)"
            )
        if args.kubeconfig is None:
            message += " (without --kubeconfig: in a pod its ServiceAccount, else $KUBECONFIG"
            message += " or ~/.kube/config)"
        parser.exit(2, f"{parser.prog}: cluster credentials: {message}\n")
    # kopf names itself after POD_ID, else after the login user: a lookup that fails for a user
    # id the image has no account for (any other runAsUser, or a platform's random one).
    os.environ.setdefault("POD_ID", socket.gethostname())
    try:
        check_scope(configuration, options.namespaces)
    except StartError as error:
        parser.exit(error.exit_status, f"{parser.prog}: {error}\n")
    try:
        asyncio.run(run_operator(options, configuration))
    except ListenError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
