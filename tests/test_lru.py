"""The one LRU (sim.engine.LRU) that serves the dentry cache and the page cache, against a naive
reference: a list in recency order."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sim.engine import LRU, MISS, PageCache, Transfer


class NaiveLRU:
    """Keys in a list, least recent first; values beside them in a dict."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.order: list = []
        self.values: dict = {}

    def touch(self, key, value=None):
        if key in self.values:
            self.order.remove(key)
            self.order.append(key)
            return self.values[key]
        self.order.append(key)
        self.values[key] = value
        if len(self.order) > self.capacity:
            del self.values[self.order.pop(0)]
        return MISS


@given(st.integers(1, 6), st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3)), max_size=80))
def test_touch_matches_a_naive_lru(capacity, touches):
    lru, naive = LRU(capacity), NaiveLRU(capacity)
    for key, value in touches:
        assert lru.touch(key, value) == naive.touch(key, value)
        assert list(lru.entries) == naive.order
        assert dict(lru.entries) == naive.values


@given(st.integers(1, 6), st.lists(st.lists(st.integers(0, 9), max_size=5), max_size=30))
def test_misses_counts_the_keys_a_naive_lru_lacked(capacity, batches):
    lru, naive = LRU(capacity), NaiveLRU(capacity)
    for keys in batches:
        assert lru.misses(keys) == sum(naive.touch(key) is MISS for key in keys)
        assert list(lru.entries) == naive.order


def test_capacity_is_in_units_and_at_least_one():
    assert LRU(10, 4).capacity == 2
    assert LRU(0).capacity == 1
    lru = LRU(2)
    assert lru.touch("a") is MISS and lru.touch("b") is MISS
    assert lru.touch("a") is None  # a hit returns the value kept (None), not MISS
    lru.touch("c")  # evicts b, the least recently used
    assert list(lru.entries) == ["a", "c"]


def test_page_cache_marks_missed_blocks_with_the_read_that_fills_them():
    cache = PageCache(capacity=3 * 100, block=100)
    first, second = Transfer(), Transfer()
    assert cache.read("f", 0, 250, 250, first) == (0, 250, ())  # three blocks, the last clipped
    hit, miss, waits = cache.read("f", 50, 100, 250, second)  # blocks 0 and 1, still in flight
    assert (hit, miss, waits) == (200, 0, [first])
    first.done = True
    assert cache.read("f", 0, 250, 250, second) == (250, 0, ())
    cache.fill("g", 0, 100)  # one block of g: the cache holds three, so f's least recent goes
    assert list(cache.entries) == [("f", 1), ("f", 2), ("g", 0)]


@given(st.integers(1, 6), st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=80))
def test_hit_is_touch_on_a_hit_and_refuses_a_miss(capacity, calls):
    """``hit`` (the hot path's touch of a key expected present) moves a held key as ``touch``
    does and changes nothing for a missing one."""
    lru, naive = LRU(capacity), NaiveLRU(capacity)
    for only_hit, key in calls:
        if only_hit:
            try:
                lru.hit(key)
            except KeyError:
                assert key not in naive.values
            else:
                naive.touch(key)
        else:
            lru.touch(key)
            naive.touch(key)
        assert list(lru.entries) == naive.order
