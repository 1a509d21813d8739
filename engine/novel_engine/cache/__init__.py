"""Cache tiers (L1 in-process, L2 Redis, L3 SQLite) and the read-through cache over them."""

import asyncio
from pathlib import Path

from novel_engine.cache.l1 import L1Cache
from novel_engine.cache.l3 import MIGRATIONS, SqliteTier
from novel_engine.cache.tiered import TieredCache
from novel_engine.config import Settings
from novel_engine.db import Database
from novel_engine.metrics import CacheStats, EngineMetrics

__all__ = [
    "MIGRATIONS",
    "CacheStats",
    "L1Cache",
    "SqliteTier",
    "TieredCache",
    "build_cache",
    "default_l1_bytes",
    "memory_limit",
]

FALLBACK_L1_BYTES = 64 * 1024 * 1024
L1_SHARE_OF_MEMORY_LIMIT = 0.10
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge page-aligned number


def memory_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The tightest memory limit of this process's cgroup (v2 or v1), None when unlimited.

    Synchronous file reads: call it before the event loop runs or through asyncio.to_thread.
    """
    candidates = [cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"]
    try:
        membership = proc_cgroup.read_text(encoding="ascii").splitlines()
    except OSError:
        membership = []
    for line in membership:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":
            candidates.append(cgroup_root / relative / "memory.max")
        elif "memory" in controllers.split(","):
            candidates.append(cgroup_root / "memory" / relative / "memory.limit_in_bytes")
    limits = []
    for candidate in candidates:
        try:
            text = candidate.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED:
            limits.append(int(text))
    return min(limits, default=None)


def default_l1_bytes(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """L1 byte budget: a tenth of the container memory limit, else FALLBACK_L1_BYTES."""
    limit = memory_limit(cgroup_root, proc_cgroup)
    return FALLBACK_L1_BYTES if limit is None else max(1, int(limit * L1_SHARE_OF_MEMORY_LIMIT))


async def build_cache(
    settings: Settings, db: Database | None, metrics: EngineMetrics | None
) -> TieredCache:
    """The cache the settings describe (L2 only with a Redis URL, L3 only with a database)."""
    # The cgroup read is a tiny file read, done off the event loop all the same.
    max_bytes = settings.l1_max_bytes
    if max_bytes is None:
        max_bytes = await asyncio.to_thread(default_l1_bytes)
    l1 = L1Cache(settings.l1_max_entries, max_bytes, settings.l1_ttl_seconds)
    l2 = None
    if settings.redis_url is not None:
        from novel_engine.cache.l2 import RedisTier  # redis is imported only when configured

        l2 = RedisTier(
            settings.redis_url,
            settings.redis_secret(),
            ttl_seconds=settings.l2_ttl_seconds,
        )
        await l2.check()  # so that /metrics says from the start whether L2 answers
    l3 = (
        None
        if db is None or not settings.l3_enabled
        else SqliteTier(db, max_entries=settings.l3_max_entries, max_bytes=settings.l3_max_bytes)
    )
    if metrics is not None:
        for tier in (l1, l2, l3):
            if tier is not None:
                metrics.track_cache(tier.stats)
        if l2 is not None:
            metrics.track_l2(l2.health)
    return TieredCache(l1, l2, l3)
