"""The operator process: kube client, reconciler, controller, autoscaler (with its scrape
session), kopf and the ops endpoints, started together and stopped together."""

import asyncio
import copy
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kopf
import urllib3
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from novel_operator import names
from novel_operator.autoscaler import DEFAULT_CACHE_PERIOD_SECONDS, Autoscaler
from novel_operator.cache_health import CacheMemory
from novel_operator.child_index import ChildIndex
from novel_operator.controller import Controller
from novel_operator.handlers import build_registry, operator_settings
from novel_operator.kube.client import KubeClient, status_message
from novel_operator.kube.watch import LabelSelectorWatch
from novel_operator.metrics import OperatorMetrics
from novel_operator.ops import create_ops_app, serve
from novel_operator.reconcile import REFERENCE_KINDS, Reconciler
from novel_operator.scaling import ScalingMemory
from novel_operator.scrape import (
    DEFAULT_TIMEOUT_SECONDS,
    AddressMapFile,
    AddressResolver,
    PodIPResolver,
    Scraper,
)

log = logging.getLogger(__name__)

#: Referenced ConfigMaps and Secrets users label for instant reaction (the others are read at
#: each reconcile and resync).
WATCH_SELECTOR = f"{names.WATCH_LABEL}={names.WATCH_LABEL_VALUE}"


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...]  # empty: all namespaces
    operator_namespace: str  # where the operator's own pods run
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    workers: int = 4
    resync_seconds: float = 300.0
    watch_timeout_seconds: int = 300
    scrape_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    cache_check_seconds: float = DEFAULT_CACHE_PERIOD_SECONDS
    # Test beds only: scrape the pods this file names at its addresses, and no other pod.
    scrape_address_map: Path | None = None

    @property
    def api_concurrency(self) -> int:
        """Requests in flight at once: each reconcile reads its children concurrently."""
        return self.workers * 4


class StartError(Exception):
    """The operator could only idle with this cluster and these credentials; ``exit_status`` 2
    when a person must act (install the CRD, fix the credentials or the grants), 1 when the
    apiserver could not be reached (a restart may find it)."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


#: (connect, read) seconds of each request of the start check: all of them, made at once, end
#: well within the 30 s a liveness probe gives (the chart's: 3 failures 10 s apart).
CHECK_TIMEOUT = (5.0, 10.0)


def check_scope(configuration: k8s.Configuration, namespaces: tuple[str, ...]) -> None:
    """List NovelEngines once where the operator watches them (each namespace, or all), as its
    watches will. Without the CRD, with refused credentials or without the grant, the watches
    would fail and be retried for good while /healthz says 200: the start fails instead.

    Synchronous: run it before the event loop."""
    once = copy.copy(configuration)
    once.retries = 0  # (urllib3 would retry at once, with a warning each) a restart retries
    with k8s.ApiClient(once) as client:
        api = k8s.CustomObjectsApi(client)

        def list_once(namespace: str | None) -> None:
            scope = f"in namespace {namespace}" if namespace else "in all namespaces"
            try:
                if namespace is None:
                    api.list_cluster_custom_object(
                        names.GROUP, names.VERSION, names.PLURAL, limit=1,
                        _request_timeout=CHECK_TIMEOUT,
                    )  # fmt: skip
                else:
                    api.list_namespaced_custom_object(
                        names.GROUP, names.VERSION, namespace, names.PLURAL, limit=1,
                        _request_timeout=CHECK_TIMEOUT,
                    )  # fmt: skip
            except k8s.ApiException as error:
                needs_a_person = error.status in (401, 403, 404)  # else a passing fault
                raise StartError(_refusal(error, scope), 2 if needs_a_person else 1) from None
            except urllib3.exceptions.HTTPError as error:
                reason = getattr(error, "reason", None) or error
                if isinstance(reason, urllib3.exceptions.SSLError):  # reached, not trusted
                    message = f"the apiserver at {configuration.host} is not trusted: {reason}"
                    raise StartError(message, 2) from None
                message = f"cannot reach the apiserver at {configuration.host}: {reason}"
                raise StartError(message, 1) from None

        scopes: list[str | None] = list(namespaces) or [None]
        with ThreadPoolExecutor(max_workers=min(len(scopes), 8)) as pool:
            for listed in [pool.submit(list_once, scope) for scope in scopes]:
                listed.result()  # the first failure, in the order the namespaces were given


def _refusal(error: k8s.ApiException, scope: str) -> str:
    if error.status == 404:
        return (
            f"the NovelEngine CRD ({names.CRD_NAME}) is not installed; install it first"
            " (novel-engine-operator crd | kubectl apply --server-side -f -)"
        )
    if error.status == 401:
        return "the apiserver refused the credentials (401 Unauthorized)"
    return f"cannot list NovelEngines {scope}: {status_message(error)}"


async def run_operator(options: OperatorOptions, configuration: k8s.Configuration) -> None:
    """Run until SIGTERM/SIGINT (kopf handles both), then stop everything. Should the reconcile
    loop fail, the operator logs why and stops (exit status 1) rather than run on without it."""
    metrics = OperatorMetrics(CollectorRegistry(auto_describe=True))
    kube = KubeClient(
        configuration, metrics, field_manager=names.FIELD_MANAGER, threads=options.api_concurrency
    )
    resolver: AddressResolver = (
        PodIPResolver()
        if options.scrape_address_map is None
        else AddressMapFile(options.scrape_address_map)
    )
    scraper = Scraper(resolver, timeout=options.scrape_timeout_seconds)
    memory = ScalingMemory()
    cache_memory = CacheMemory()
    children = ChildIndex()
    reconciler = Reconciler(
        kube,
        metrics,
        memory,
        cache_memory,
        operator_namespace=options.operator_namespace,
        children=children,
    )
    controller = Controller(
        reconciler.reconcile,
        metrics,
        workers=options.workers,
        resync_seconds=options.resync_seconds,
        children=children,
        autoscaler=Autoscaler(
            kube, scraper, memory, cache_memory, metrics, cache_period=options.cache_check_seconds
        ),
        forget=reconciler.forget,
    )
    failed = asyncio.Event()  # the reconcile loop failed: kopf stops, then the operator

    def check_loop(task: asyncio.Task[None]) -> None:
        # (cancelled: the operator is stopping; its loops run until then, or fail)
        if not task.cancelled() and task.exception() is not None:
            log.error("the reconcile loop failed; stopping", exc_info=task.exception())
            failed.set()

    async with scraper:
        reconciling = asyncio.create_task(controller.run(), name="controller")
        reconciling.add_done_callback(check_loop)
        watching = [
            asyncio.create_task(watch.run(), name="reference-watch")
            for watch in reference_watches(options, configuration, controller)
        ]
        try:
            app = create_ops_app(metrics, controller.healthy)
            async with serve(app, options.listen_host, options.listen_port):
                log.info(
                    "serving /metrics and /healthz on %s:%d",
                    options.listen_host,
                    options.listen_port,
                )
                await kopf.operator(
                    registry=build_registry(controller, configuration),
                    settings=operator_settings(watch_timeout=options.watch_timeout_seconds),
                    clusterwide=not options.namespaces,
                    namespaces=options.namespaces,
                    standalone=True,
                    stop_flag=failed,
                )
        finally:
            for task in (reconciling, *watching):
                task.cancel()
            await asyncio.gather(reconciling, *watching, return_exceptions=True)
            await kube.close()
    if failed.is_set():
        raise SystemExit(1)


def reference_watches(
    options: OperatorOptions, configuration: k8s.Configuration, controller: Controller
) -> list[LabelSelectorWatch]:
    """One watch per referenced kind and served namespace (one for all namespaces), of the
    objects labelled for watching; each change goes to the NovelEngines that refer to it."""
    return [
        LabelSelectorWatch(
            configuration,
            kind,
            namespace,
            WATCH_SELECTOR,
            functools.partial(controller.referenced_object_seen, kind),
            timeout_seconds=options.watch_timeout_seconds,
        )
        for kind in REFERENCE_KINDS
        for namespace in options.namespaces or (None,)
    ]
