"""The aiohttp application factory: routes inside request layers, a cleanup context per resource.

``create_app`` reads no environment; everything comes from the Settings it is given. Resources
start in order (database, cache, content, jobs, scheduler, simulations, then taking over the jobs
other replicas abandoned, which draining pauses). At shutdown the drain comes first: in-flight
requests get the drain budget, then the scheduler stops (running work gets what is left of it);
then the resources stop in reverse: the jobs the scheduler failed are recorded, then the cache
and the database close.
"""

from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web
from prometheus_client import CollectorRegistry

from novel_engine.cache import MIGRATIONS as CACHE_MIGRATIONS
from novel_engine.cache import build_cache
from novel_engine.config import Settings
from novel_engine.content.library import ContentLibrary
from novel_engine.content.store import MIGRATIONS as CONTENT_MIGRATIONS
from novel_engine.content.store import ContentStore
from novel_engine.db import Database
from novel_engine.drain import DrainState
from novel_engine.jobs import CRASH_REASON, JobRunner, JobStore
from novel_engine.jobs import MIGRATIONS as JOB_MIGRATIONS
from novel_engine.jobs import SQUASHES as JOB_SQUASHES
from novel_engine.keys import (
    CACHE,
    CONTENT,
    DB,
    DRAIN,
    JOBS,
    METRICS,
    OPENAPI,
    SCHEDULER,
    SETTINGS,
    SIMULATIONS,
)
from novel_engine.metrics import EngineMetrics
from novel_engine.middlewares import RequestLayer, layered
from novel_engine.middlewares.body_limit import body_limit, expect_continue
from novel_engine.middlewares.metrics import request_metrics
from novel_engine.middlewares.problems import problem_responses
from novel_engine.middlewares.unmatched import setup_unmatched
from novel_engine.openapi import OpenApiDocument
from novel_engine.routes import setup_routes
from novel_engine.routes.content import library_operations
from novel_engine.routes.ops import ops_operations
from novel_engine.routes.simulations import simulation_operations
from novel_engine.scheduler import Scheduler
from novel_engine.simulation.service import INLINE_COST_LIMIT, SimulationService

DATABASE_FILE = "engine.sqlite3"
MIGRATIONS = (*CACHE_MIGRATIONS, *CONTENT_MIGRATIONS, *JOB_MIGRATIONS)


async def database_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DB] = await Database.open(
        settings.data_dir / DATABASE_FILE,
        size=settings.db_pool_size,
        acquire_timeout=settings.db_acquire_timeout,
        metrics=app[METRICS],
        migrations=MIGRATIONS,
        squashes=JOB_SQUASHES,
    )
    yield
    await app[DB].close()


async def cache_context(app: web.Application) -> AsyncIterator[None]:
    app[CACHE] = await build_cache(app[SETTINGS], app[DB], app[METRICS])
    yield
    await app[CACHE].close()


async def content_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    library = ContentLibrary(
        ContentStore(app[DB]), app[CACHE].l1, read_only=settings.read_only_content
    )
    await library.load_files(settings.content_dirs)
    app[CONTENT] = library
    yield


async def jobs_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = JobStore(app[DB])
    await store.fail_unfinished(CRASH_REASON)  # left queued by a process that did not stop cleanly
    shared = None
    if settings.redis_url is not None:
        from novel_engine.shared_jobs import SharedJobStore  # redis only when configured

        shared = SharedJobStore(
            settings.redis_url,
            settings.redis_secret(),
            lease_seconds=settings.job_lease_seconds,
            retention_seconds=settings.job_retention_seconds,
            max_records=settings.job_max_records,
        )
    app[JOBS] = JobRunner(
        store,
        app[CACHE],
        shared,
        retention_seconds=settings.job_retention_seconds,
        max_records=settings.job_max_records,
    )
    app[JOBS].begin_housekeeping()
    yield
    await app[JOBS].close()


async def scheduler_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    scheduler = Scheduler(
        metrics=app[METRICS],
        queue_limit=settings.queue_limit,
        workers=settings.scheduler_workers,
        thread_workers=settings.thread_workers,
        process_workers=settings.process_workers,
        aging_seconds=settings.aging_seconds,
        default_deadline=settings.task_deadline,
        # Worker processes start with the model imported, not at their first simulation.
        process_preload=("novel_engine.simulation.runner",),
    )
    await scheduler.start()
    app[SCHEDULER] = scheduler
    yield
    # Stopped by the drain already, unless the app stops without having served.
    await scheduler.stop(app[DRAIN].remaining())


async def simulations_context(app: web.Application) -> AsyncIterator[None]:
    app[SIMULATIONS] = SimulationService(
        app[CONTENT],
        app[CACHE],
        app[SCHEDULER],
        process_cost_threshold=app[SETTINGS].process_cost_threshold,
        inline_cost_limit=INLINE_COST_LIMIT,
    )
    yield


async def takeover_context(app: web.Application) -> AsyncIterator[None]:
    """With shared jobs: run the jobs other replicas abandoned (not while draining; the job
    runner's close stops it)."""
    drain = app[DRAIN]
    app[JOBS].begin_takeover(app[SIMULATIONS].submit, lambda: not drain.draining)
    yield


async def drain(app: web.Application) -> None:
    """The drain, run when the listener has closed and before aiohttp ends the connections:
    in-flight requests get the drain budget while the scheduler keeps working; then the
    scheduler stops, and the requests still waiting for it answer 503 at once rather than lose
    their connection when aiohttp cancels them."""
    state = app[DRAIN]
    state.begin()
    await state.requests_finished()
    await app[SCHEDULER].stop(state.remaining())


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> web.Application:
    """The engine application; ``registry`` defaults to a fresh one (one per app, not global).
    Serve it with ``novel_engine.server.SERVER_OPTIONS``, as EngineRunner does."""
    registry = CollectorRegistry() if registry is None else registry
    metrics = EngineMetrics(registry)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[DRAIN] = DrainState(settings.drain_timeout)

    # Outermost first: metrics see the final status, problems see every error. Only the
    # operations that read a body have its size checked.
    layers: list[RequestLayer] = [request_metrics(metrics, app[DRAIN]), problem_responses()]
    body_layers = [*layers, body_limit(settings.max_body_bytes)]
    expect = expect_continue(settings.max_body_bytes)
    operations = [*ops_operations(registry), *library_operations(), *simulation_operations()]
    setup_routes(
        app,
        [
            replace(
                operation,
                handler=layered(
                    operation.handler,
                    operation.path,
                    body_layers if operation.body is not None else layers,
                ),
            )
            for operation in operations
        ],
        expect,
    )
    setup_unmatched(app, layers, expect)
    app[OPENAPI] = OpenApiDocument(operations)
    metrics.precreate_routes((operation.path, operation.method) for operation in operations)

    app.cleanup_ctx.extend(
        [
            database_context,
            cache_context,
            content_context,
            jobs_context,
            scheduler_context,
            simulations_context,
            takeover_context,
        ]
    )
    app.on_shutdown.append(drain)
    return app
