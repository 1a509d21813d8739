"""The in-process cache tier: LRU + TTL bounded by entry count and payload bytes, O(1) per call."""

import time
from collections import OrderedDict
from collections.abc import Callable

from novel_engine.metrics import CacheStats


class L1Cache:
    """Maps str keys to bytes values; the least recently used entries go first when full.

    The byte budget counts key and value lengths (the payload); Python's per-entry overhead
    comes on top, which is why the default budget is only a fraction of the memory limit.
    An entry older than ttl_seconds is treated as absent: a miss, dropped on sight.
    """

    __slots__ = (
        "_clock",
        "_entries",
        "_lookup",
        "_size_bytes",
        "_touch",
        "max_bytes",
        "max_entries",
        "stats",
        "ttl_seconds",
    )

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl_seconds <= 0:
            raise ValueError("L1 cache limits must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.stats = CacheStats("l1")
        self._clock = clock
        # key -> (value, expiry on the clock); order is recency, least recent first
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        # bound once: get() is the hottest call in the engine
        self._lookup = self._entries.get
        self._touch = self._entries.move_to_end
        self._size_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Payload bytes held (keys + values)."""
        return self._size_bytes

    def get(self, key: str) -> bytes | None:
        entry = self._lookup(key)
        if entry is None:
            self.stats.misses += 1
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            self._size_bytes -= len(key) + len(entry[0])
            self.stats.evictions += 1
            self.stats.misses += 1
            return None
        self._touch(key)
        self.stats.hits += 1
        return entry[0]

    def set(self, key: str, value: bytes) -> None:
        """Store value as the most recent entry; a value larger than the budget is not kept."""
        self.delete(key)
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        self._entries[key] = (value, self._clock() + self.ttl_seconds)
        self._size_bytes += size
        entries = self._entries
        while len(entries) > self.max_entries or self._size_bytes > self.max_bytes:
            old_key, (old_value, _) = entries.popitem(last=False)
            self._size_bytes -= len(old_key) + len(old_value)
            self.stats.evictions += 1

    def delete(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size_bytes -= len(key) + len(entry[0])

    def clear(self) -> None:
        self._entries.clear()
        self._size_bytes = 0
