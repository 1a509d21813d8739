"""The in-process cache keeps recent entries within its entry, byte and time limits."""

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novel_engine.cache import L1Cache


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_entry_goes_first() -> None:
    cache = L1Cache(max_entries=2, max_bytes=10_000, ttl_seconds=60)
    cache.set("a", b"1")
    cache.set("b", b"2")
    assert cache.get("a") == b"1"  # a is now more recent than b
    cache.set("c", b"3")
    assert cache.get("b") is None
    assert cache.get("a") == b"1"
    assert cache.get("c") == b"3"
    assert len(cache) == 2
    assert cache.stats.evictions == 1


def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache = L1Cache(max_entries=10, max_bytes=10_000, ttl_seconds=5, clock=clock)
    cache.set("a", b"1")
    clock.now += 4.9
    assert cache.get("a") == b"1"
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.size_bytes == 0
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (1, 1, 1)


def test_overwriting_refreshes_ttl_and_size() -> None:
    clock = FakeClock()
    cache = L1Cache(max_entries=10, max_bytes=10_000, ttl_seconds=5, clock=clock)
    cache.set("a", b"1")
    clock.now += 4
    cache.set("a", b"22")
    clock.now += 4
    assert cache.get("a") == b"22"
    assert cache.size_bytes == len("a") + 2


def test_byte_budget_evicts_oldest_entries() -> None:
    cache = L1Cache(max_entries=100, max_bytes=30, ttl_seconds=60)
    for key in ("k1", "k2", "k3"):
        cache.set(key, b"x" * 8)  # 10 bytes each with the key
    assert cache.size_bytes == 30
    cache.set("k4", b"x" * 18)  # 20 bytes: k1 and k2 must go
    assert [cache.get(k) is not None for k in ("k1", "k2", "k3", "k4")] == [
        False,
        False,
        True,
        True,
    ]
    assert cache.size_bytes == 30
    assert cache.stats.evictions == 2


def test_value_larger_than_budget_is_not_kept() -> None:
    cache = L1Cache(max_entries=10, max_bytes=16, ttl_seconds=60)
    cache.set("big", b"small")
    cache.set("big", b"x" * 100)
    assert cache.get("big") is None
    assert cache.size_bytes == 0


def test_counters_delete_and_clear() -> None:
    cache = L1Cache(max_entries=10, max_bytes=1000, ttl_seconds=60)
    cache.set("a", b"1")
    cache.set("b", b"2")
    cache.get("a")
    cache.get("zzz")
    cache.delete("a")
    cache.delete("never-set")
    assert cache.get("a") is None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (1, 2, 0)
    cache.clear()
    assert len(cache) == 0
    assert cache.size_bytes == 0


@pytest.mark.parametrize("limits", [(0, 10, 1.0), (10, 0, 1.0), (10, 10, 0.0)])
def test_limits_must_be_positive(limits: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        L1Cache(*limits)


class ModelCache:
    """The same contract written the slow, obvious way: a list in recency order."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float) -> None:
        self.items: list[tuple[str, bytes, float]] = []
        self.max_entries, self.max_bytes, self.ttl = max_entries, max_bytes, ttl

    def _find(self, key: str) -> int | None:
        return next((i for i, item in enumerate(self.items) if item[0] == key), None)

    def get(self, key: str, now: float) -> bytes | None:
        index = self._find(key)
        if index is None:
            return None
        item = self.items.pop(index)
        if item[2] <= now:
            return None
        self.items.append(item)
        return item[1]

    def set(self, key: str, value: bytes, now: float) -> None:
        self.delete(key)
        if len(key) + len(value) <= self.max_bytes:
            self.items.append((key, value, now + self.ttl))
        while len(self.items) > self.max_entries or self.size() > self.max_bytes:
            self.items.pop(0)

    def delete(self, key: str) -> None:
        index = self._find(key)
        if index is not None:
            self.items.pop(index)

    def size(self) -> int:
        return sum(len(k) + len(v) for k, v, _ in self.items)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.sampled_from("abcdef"), st.just(b"")),
        st.tuples(st.just("set"), st.sampled_from("abcdef"), st.binary(max_size=12)),
        st.tuples(st.just("delete"), st.sampled_from("abcdef"), st.just(b"")),
        st.tuples(st.just("tick"), st.just(""), st.just(b"")),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_matches_a_simple_model(ops: list[tuple[str, str, bytes]]) -> None:
    clock = FakeClock()
    cache = L1Cache(max_entries=4, max_bytes=24, ttl_seconds=3, clock=clock)
    model = ModelCache(4, 24, 3)
    for op, key, value in ops:
        if op == "get":
            assert cache.get(key) == model.get(key, clock.now)
        elif op == "set":
            cache.set(key, value)
            model.set(key, value, clock.now)
        elif op == "delete":
            cache.delete(key)
            model.delete(key)
        else:
            clock.now += 1
        assert cache.size_bytes == model.size()
        assert len(cache) == len(model.items)
