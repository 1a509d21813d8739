"""Typed application keys for everything the app shares between handlers and contexts."""

from aiohttp import web

from novel_engine.cache import TieredCache
from novel_engine.config import Settings
from novel_engine.content.library import ContentLibrary
from novel_engine.db import Database
from novel_engine.drain import DrainState
from novel_engine.jobs import JobRunner
from novel_engine.metrics import EngineMetrics
from novel_engine.openapi import OpenApiDocument
from novel_engine.scheduler import Scheduler
from novel_engine.simulation.service import SimulationService

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", EngineMetrics)
DRAIN = web.AppKey("drain", DrainState)
OPENAPI = web.AppKey("openapi", OpenApiDocument)
DB = web.AppKey("db", Database)
CACHE = web.AppKey("cache", TieredCache)
CONTENT = web.AppKey("content", ContentLibrary)
SCHEDULER = web.AppKey("scheduler", Scheduler)
SIMULATIONS = web.AppKey("simulations", SimulationService)
JOBS = web.AppKey("jobs", JobRunner)
