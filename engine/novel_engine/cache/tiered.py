"""Read-through over the cache tiers: L1 -> L2 -> L3 -> compute, promoting hits upward."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from novel_engine.cache.l1 import L1Cache
from novel_engine.cache.l3 import SqliteTier

if TYPE_CHECKING:  # redis is imported only when an L2 URL is configured
    from novel_engine.cache.l2 import RedisTier


class _AsyncTier(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes) -> None: ...
    async def delete(self, key: str) -> None: ...


class TieredCache:
    """One cache over the configured tiers; values are bytes (serialised JSON), keys are str.

    Lower tiers never raise (they count their failures), so a cache call only fails when
    compute() does. get_or_compute runs compute once per key however many callers wait;
    a delete() while it runs keeps the stale result out of the tiers.
    """

    def __init__(
        self, l1: L1Cache, l2: "RedisTier | None" = None, l3: SqliteTier | None = None
    ) -> None:
        self.l1 = l1
        self.l2 = l2
        self.l3 = l3
        self._lower: tuple[_AsyncTier, ...] = tuple(t for t in (l2, l3) if t is not None)
        self._loading: dict[str, asyncio.Task[bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        value = self.l1.get(key)
        if value is not None:
            return value
        return await self._get_below_l1(key)

    async def _get_below_l1(self, key: str) -> bytes | None:
        """Look key up in L2 then L3 (L1 was just asked), promoting a hit upward."""
        for depth, tier in enumerate(self._lower):
            value = await tier.get(key)
            if value is not None:
                self.l1.set(key, value)
                await asyncio.gather(*(upper.set(key, value) for upper in self._lower[:depth]))
                return value
        return None

    async def set(self, key: str, value: bytes) -> None:
        self.l1.set(key, value)
        await asyncio.gather(*(tier.set(key, value) for tier in self._lower))

    async def delete(self, key: str) -> None:
        self._loading.pop(key, None)
        self.l1.delete(key)
        await asyncio.gather(*(tier.delete(key) for tier in self._lower))

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        value = self.l1.get(key)
        if value is not None:
            return value
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.create_task(self._load(key, compute), name=f"cache-load {key}")
            self._loading[key] = loading
            loading.add_done_callback(lambda task: self._loaded(key, task))
        # shield: one impatient caller must not cancel the load the others wait for
        return await asyncio.shield(loading)

    async def close(self) -> None:
        if self.l2 is not None:
            await self.l2.close()

    async def _load(self, key: str, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        value = await self._get_below_l1(key)  # get_or_compute counted the L1 miss
        if value is None:
            value = await compute()
            if self._loading.get(key) is asyncio.current_task():  # not deleted meanwhile
                await self.set(key, value)
        return value

    def _loaded(self, key: str, task: asyncio.Task[bytes]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # callers that still wait receive it; nobody else should log it
