"""The operator's own metrics: every name, help text, label set and bucket list lives here.

Built against the registry it is given, so each operator instance (and each test) has its own.
Label values come from closed sets only: reconcile results, API verbs, resource plurals, scale
targets and reasons, scrape results, autoscaler sync results. No per-NovelEngine series.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from novel_operator.scaling import ScaleReason, ScaleTarget, SyncResult
from novel_operator.scrape import ScrapeResult

RECONCILE_RESULTS = ("ready", "progressing", "stalled", "paused", "error")
WRITE_VERBS = ("apply", "create", "delete", "patch")
#: Every resource the operator may write (the plural names in the API paths).
WRITTEN_RESOURCES = (
    "configmaps",
    "secrets",
    "services",
    "deployments",
    "statefulsets",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "networkpolicies",
    "novelengines/status",
    "deployments/scale",
    "statefulsets/scale",
)
EVENT_TYPES = ("Normal", "Warning")
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCRAPE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class OperatorMetrics:
    """Counters and gauges the operator updates; `registry` is what /metrics serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        self.reconciles = Counter(
            "novel_operator_reconciles",
            "Reconciles of a NovelEngine, by result (the status it ended with, or error).",
            ["result"],
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            "novel_operator_reconcile_duration_seconds",
            "Time one reconcile of a NovelEngine took, from spec to status.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "novel_operator_reconcile_errors",
            "Reconciles that failed (an API request or an unexpected error) and were retried "
            "with backoff.",
            registry=registry,
        )
        self.api_writes = Counter(
            "novel_operator_api_writes",
            "Write requests sent to the Kubernetes API (Events excluded), by verb and resource.",
            ["verb", "resource"],
            registry=registry,
        )
        self.events = Counter(
            "novel_operator_events",
            "Kubernetes Events the operator recorded on NovelEngines, by type.",
            ["type"],
            registry=registry,
        )
        self.scale_decisions = Counter(
            "novel_operator_scale_decisions",
            "Changes the operator's scaler made, by what it set (a workload's replicas through "
            "the scale subresource, or an HPA's minReplicas floor) and why.",
            ["target", "reason"],
            registry=registry,
        )
        self.scrapes = Counter(
            "novel_operator_scrapes",
            "Scrapes of engine pods' /metrics by the autoscaler, by result.",
            ["result"],
            registry=registry,
        )
        self.scrape_duration = Histogram(
            "novel_operator_scrape_duration_seconds",
            "Time one engine pod's /metrics took to answer (scrapes that sent a request).",
            buckets=SCRAPE_BUCKETS,
            registry=registry,
        )
        self.autoscaler_syncs = Counter(
            "novel_operator_autoscaler_syncs",
            "Autoscaler syncs of a NovelEngine (list pods, scrape, decide, act), by result.",
            ["result"],
            registry=registry,
        )
        self.autoscaler_sync_duration = Histogram(
            "novel_operator_autoscaler_sync_duration_seconds",
            "Time one autoscaler sync of a NovelEngine took.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.autoscaler_last_sync = Gauge(
            "novel_operator_autoscaler_last_sync_timestamp_seconds",
            "When the autoscaler last finished a sync of any NovelEngine (Unix time).",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "novel_operator_queue_depth",
            "NovelEngines waiting to be reconciled.",
            registry=registry,
        )
        self.known_resources = Gauge(
            "novel_operator_novelengines",
            "NovelEngines the operator currently watches.",
            registry=registry,
        )
        for result in RECONCILE_RESULTS:
            self.reconciles.labels(result)
        for verb in WRITE_VERBS:
            for resource in WRITTEN_RESOURCES:
                self.api_writes.labels(verb, resource)
        for event_type in EVENT_TYPES:
            self.events.labels(event_type)
        for target in ScaleTarget:
            for reason in ScaleReason:
                self.scale_decisions.labels(target, reason)
        for scrape_result in ScrapeResult:
            self.scrapes.labels(scrape_result)
        for sync_result in SyncResult:
            self.autoscaler_syncs.labels(sync_result)
