"""The scrape loop: one operator-wide schedule keyed by NovelEngine, for the engine-metric
autoscaler and the CacheDegraded condition.

Each reconcile tells the loop whether its NovelEngine is to be scraped (`set_target`): to scale
it on engine metrics, to watch its L2 tier, or both; a deleted NovelEngine is forgotten at once
(`forget`). One loop starts the syncs that are due, every `autoscaling.syncPeriodSeconds` per
NovelEngine scaled on engine metrics and every `cache_period` seconds (slower, by default) for
one only watched for its L2 tier, a bounded number at a time; there is no timer task per
object, and kopf adds no finalizer for it. A sync:

1. lists the engine pods by label selector (and, to scale, reads the workload's replicas);
2. scrapes the ready pods' /metrics concurrently (scrape.Scraper);
3. to scale: decides with the HPA algorithm (scaling.recommend, pure) and acts, as the one
   writer of what it scales: with engine targets only, the workload's replicas through the
   scale subresource; with an HPA, the floor, which the reconcile writes into the HPA's
   minReplicas; and stores what status.autoscaling and ScalingActive should say in the
   `ScalingMemory`;
4. with an L2 tier: stores the CacheDegraded verdict from the pods' L2 states in the
   `CacheMemory` (cache_health.cache_verdict, pure);
5. asks for a reconcile (which writes the status) only when a memory changed.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3

from novel_operator import names
from novel_operator.cache_health import CacheMemory, cache_verdict
from novel_operator.kube.client import ApiError, KubeClient, Manifest, describe
from novel_operator.metrics import OperatorMetrics
from novel_operator.model import AutoscalingStatus, NovelEngineSpec
from novel_operator.scaling import (
    EngineMetric,
    Key,
    PodReadings,
    Recommendation,
    ScaleTarget,
    ScalingMemory,
    SyncResult,
    recommend,
    reported_average,
    scraped_verdict,
    targets,
)
from novel_operator.scrape import PodScrape, Scraper, ScrapeResult

log = logging.getLogger(__name__)

#: Longest sleep of the schedule loop, so that its liveness is visible to /healthz.
IDLE_TICK_SECONDS = 1.0
#: NovelEngines synced at once (each holds an API request or its pods' scrapes).
DEFAULT_CONCURRENCY = 32
#: Sync period of a NovelEngine scraped only for its L2 tier's state (CacheDegraded).
DEFAULT_CACHE_PERIOD_SECONDS = 30.0


def scales_on_engine_metrics(spec: NovelEngineSpec) -> bool:
    """Whether the autoscaler scrapes and decides for this spec (enabled, with engine targets)."""
    return spec.autoscaling.enabled and bool(targets(spec.autoscaling))


def has_l2(spec: NovelEngineSpec) -> bool:
    """Whether the engines have an L2 tier whose state CacheDegraded reports."""
    return spec.cache.l2.mode != "none"


@dataclass(frozen=True)
class ScalingTarget:
    """A NovelEngine to scrape (to scale it on engine metrics, to watch its L2 tier, or both),
    as its last reconcile found it."""

    novelengine: Manifest  # as served: Events name it
    spec: NovelEngineSpec
    workload_kind: str

    @property
    def scales(self) -> bool:
        return scales_on_engine_metrics(self.spec)

    @property
    def watches_cache(self) -> bool:
        return has_l2(self.spec)


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_gone(pod: Mapping[str, Any]) -> bool:
    """Terminating or finished: the HPA ignores such pods entirely."""
    phase = (pod.get("status") or {}).get("phase")
    return bool(pod["metadata"].get("deletionTimestamp")) or phase in ("Failed", "Succeeded")


class Autoscaler:
    def __init__(
        self,
        kube: KubeClient,
        scraper: Scraper,
        memory: ScalingMemory,
        cache_memory: CacheMemory,
        metrics: OperatorMetrics,
        *,
        clock: Callable[[], datetime] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        cache_period: float = DEFAULT_CACHE_PERIOD_SECONDS,
    ) -> None:
        self._kube = kube
        self._scraper = scraper
        self._memory = memory
        self._cache_memory = cache_memory
        self._cache_period = cache_period
        self._metrics = metrics
        self._clock = clock or (lambda: datetime.now(UTC))
        self._slots = asyncio.Semaphore(concurrency)
        self._targets: dict[Key, ScalingTarget] = {}
        self._due: dict[Key, float] = {}  # monotonic time of the next sync
        self._syncs: dict[Key, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._last_tick = time.monotonic()
        self._running = False

    # ------------------------------------------------------------------ targets in

    def set_target(self, key: Key, target: ScalingTarget | None) -> None:
        """After each reconcile: scrape `key` as `target` says, or (None) not at all."""
        if target is None:
            self.forget(key)
            return
        now = time.monotonic()
        self._targets[key] = target
        self._due[key] = min(self._due.get(key, now), now + self._period(target))
        self._wake.set()

    def forget(self, key: Key) -> None:
        """Stop scraping `key` (deleted, paused, neither engine targets nor L2): no sync of it
        runs after this."""
        self._targets.pop(key, None)
        self._due.pop(key, None)
        sync = self._syncs.pop(key, None)
        if sync is not None:
            sync.cancel()

    # ------------------------------------------------------------------ running

    def healthy(self) -> bool:
        return self._running and time.monotonic() - self._last_tick < 2 * IDLE_TICK_SECONDS + 30

    async def run(self, on_change: Callable[[Key], None]) -> None:
        """Sync what is due until cancelled; `on_change(key)` asks for a status write."""
        self._running = True
        try:
            while True:
                self._last_tick = now = time.monotonic()
                due = [k for k, at in self._due.items() if at <= now and k not in self._syncs]
                if due:
                    await self._scraper.refresh()
                for key in due:
                    target = self._targets.get(key)
                    if target is None:  # forgotten while the refresh awaited
                        continue
                    self._due[key] = now + self._period(target)
                    task = asyncio.create_task(self._guarded_sync(key, target, on_change))
                    self._syncs[key] = task
                    task.add_done_callback(self._sync_done(key))
                # A key still syncing waits for its sync, whose end wakes the loop: counting its
                # past due time here would make the loop spin until then.
                waiting = (at for key, at in self._due.items() if key not in self._syncs)
                pause = min(waiting, default=now + IDLE_TICK_SECONDS) - now
                self._wake.clear()
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for loses a cancellation
                # that lands as the wake-up comes, and the loop then outlives the operator's stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(max(pause, 0.0), IDLE_TICK_SECONDS)):
                        await self._wake.wait()
        finally:
            self._running = False
            syncs = list(self._syncs.values())
            for sync in syncs:
                sync.cancel()
            await asyncio.gather(*syncs, return_exceptions=True)

    def _period(self, target: ScalingTarget) -> float:
        if target.scales:
            return float(target.spec.autoscaling.sync_period_seconds)
        return self._cache_period

    def _sync_done(self, key: Key) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._syncs.get(key) is task:
                del self._syncs[key]
                self._wake.set()  # it may be due again already

        return done

    async def _guarded_sync(
        self, key: Key, target: ScalingTarget, on_change: Callable[[Key], None]
    ) -> None:
        async with self._slots:
            started = time.perf_counter()
            try:
                result = await self._sync(key, target, on_change)
            except (ApiError, OSError, urllib3.exceptions.HTTPError) as error:
                log.warning("autoscaler sync of %s/%s failed: %s", *key, error)
                result = SyncResult.ERROR
            except Exception:  # a bug: say so, and keep scaling the others
                log.exception("autoscaler sync of %s/%s failed", *key)
                result = SyncResult.ERROR
            self._metrics.autoscaler_syncs.labels(result.value).inc()
            self._metrics.autoscaler_sync_duration.observe(time.perf_counter() - started)
            self._metrics.autoscaler_last_sync.set(time.time())

    async def _sync(
        self, key: Key, target: ScalingTarget, on_change: Callable[[Key], None]
    ) -> SyncResult:
        """One sync of one NovelEngine (see the module docstring)."""
        namespace, name = key
        workload = None
        if target.scales:
            workload = await self._kube.get(
                "apps/v1", target.workload_kind, namespace, names.engine_name(name)
            )
            if workload is None:  # the next reconcile creates it
                return SyncResult.NO_METRICS
        pods = [
            pod
            for pod in await self._kube.list_pods(
                namespace, names.selector_string(names.engine_selector(name))
            )
            if not is_gone(pod)
        ]
        ready = [pod for pod in pods if is_ready(pod)]
        scrapes = await self._scraper.scrape(ready)
        for scrape in scrapes:
            self._metrics.scrapes.labels(scrape.result.value).inc()
            if scrape.seconds:
                self._metrics.scrape_duration.observe(scrape.seconds)
        answered = [scrape for scrape in scrapes if scrape.result is ScrapeResult.OK]
        changed = False
        if workload is not None:
            changed = await self._scale(key, target, workload, len(pods), scrapes)
        if target.watches_cache:
            states = {s.pod: s.l2_state for s in answered if s.l2_state is not None}
            changed = self._cache_memory.update(key, cache_verdict(states)) or changed
        if changed:
            on_change(key)
        if answered:
            return SyncResult.OK
        return SyncResult.SCRAPE_FAILED if ready else SyncResult.NO_METRICS

    async def _scale(
        self,
        key: Key,
        target: ScalingTarget,
        workload: Manifest,
        pods: int,
        scrapes: list[PodScrape],
    ) -> bool:
        """Decide and act on the scrapes of the ready pods (of `pods` not gone); True if what
        status.autoscaling or ScalingActive say changed."""
        autoscaling = target.spec.autoscaling
        answered = [scrape for scrape in scrapes if scrape.result is ScrapeResult.OK]
        failures = {s.pod: s.result.value for s in scrapes if s.result is not ScrapeResult.OK}
        readings = PodReadings(
            {metric: [s.values[metric] for s in answered] for metric in EngineMetric},
            missing=len(failures),
            unready=pods - len(scrapes),
        )
        verdict = scraped_verdict(len(scrapes), failures)

        report = self._memory.report(key) or AutoscalingStatus()
        replicas = int(workload["spec"].get("replicas", 1))
        current = (report.floor or autoscaling.min_replicas) if autoscaling.uses_hpa else replicas
        now = self._clock()
        history = self._memory.history(key, floor=autoscaling.uses_hpa)
        decision = recommend(
            autoscaling,
            replicas=replicas,
            current=current,
            readings=readings,
            history=history,
            now=now.timestamp(),
        )
        report = self._report(report, decision, target)
        # Replicas outside the bounds are the reconcile's to fix (at once, on the workload's
        # watch event): one writer for them.
        bounds_only = decision.bound is not None and not autoscaling.uses_hpa
        if decision.desired != current and not bounds_only:
            if not autoscaling.uses_hpa:
                await self._kube.scale(workload, decision.desired)
            history.record_change(now.timestamp(), current, decision.desired)
            report = report.model_copy(
                update={
                    "last_scale_time": now.replace(microsecond=0),
                    "last_scale_reason": decision.explain(autoscaling),
                }
            )
            self._announce(target, workload, decision)
        return self._memory.update(key, report, verdict)

    def _report(
        self, report: AutoscalingStatus, decision: Recommendation, target: ScalingTarget
    ) -> AutoscalingStatus:
        autoscaling = target.spec.autoscaling
        wanted = targets(autoscaling)
        recommended = report.recommended_replicas
        if decision.proposal is not None:
            recommended = decision.proposal
        elif not autoscaling.uses_hpa:  # no metrics: the replicas, once within the bounds
            recommended = decision.desired
        if recommended is not None:
            recommended = min(max(recommended, autoscaling.min_replicas), autoscaling.max_replicas)
        return report.model_copy(
            update={
                "in_flight_per_pod": reported_average(
                    report.in_flight_per_pod,
                    decision.averages.get(EngineMetric.IN_FLIGHT),
                    wanted.get(EngineMetric.IN_FLIGHT),
                ),
                "queue_depth_per_pod": reported_average(
                    report.queue_depth_per_pod,
                    decision.averages.get(EngineMetric.QUEUE_DEPTH),
                    wanted.get(EngineMetric.QUEUE_DEPTH),
                ),
                "recommended_replicas": recommended,
                "floor": decision.desired if autoscaling.uses_hpa else None,
            }
        )

    def _announce(
        self, target: ScalingTarget, workload: Manifest, decision: Recommendation
    ) -> None:
        autoscaling = target.spec.autoscaling
        why = decision.explain(autoscaling)
        reason = decision.reason
        assert reason is not None  # desired != current
        if autoscaling.uses_hpa:
            scaled = ScaleTarget.FLOOR
            instance = target.novelengine["metadata"]["name"]
            hpa = f"HorizontalPodAutoscaler/{names.engine_name(instance)}"
            message = (
                f"Set the minReplicas floor of {hpa} from {decision.current} to "
                f"{decision.desired}: {why}"
            )
        else:
            scaled = ScaleTarget.REPLICAS
            message = (
                f"Scaled {describe(workload)} from {decision.current} to {decision.desired} "
                f"replicas: {why}"
            )
        self._metrics.scale_decisions.labels(scaled.value, reason.value).inc()
        log.info(message, extra={"reason": "Scaled"})
        self._kube.record_event(target.novelengine, "Normal", "Scaled", message)
