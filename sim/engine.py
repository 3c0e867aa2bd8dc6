"""The one SimPy engine: a disk with a request queue, a page cache, a dentry cache, and the
execution of driver plans.

The disk is a FIFO queue served by ``queue_depth`` channels. A request's service time is
``requests x latency + bytes / bandwidth``; it starts when a channel is free. Because service
times are known when a request is issued, the engine reserves a channel and waits with a single
timeout instead of a SimPy Resource per I/O. An operation served from cache costs one timeout,
or none when nothing else is due before it ends (:meth:`Environment.skip_ahead`).
CPU is not a contended resource in this model: each container's CPU time only delays itself.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np
import simpy

from .plan import CACHED, CPU, DISK_READ, DISK_WRITE, PROBE, READ, SYNC, WRITE, WRITEBACK, Plan
from .profile import Profile


class Environment(simpy.Environment):
    """SimPy's environment with one shortcut for the engine's waits.

    A process about to wait ``delay`` seconds for a timeout of its own, while no other event is
    due before (or at) the end of that wait, would be the very next thing SimPy resumes: it may
    move the clock itself and go on, skipping the event. Same times (``now + delay``, the float
    SimPy would compute), same order of everything, one event fewer. Only when the event being
    processed has that process as its one waiter: another waiter would otherwise run after it at
    the later time.
    """

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self._sole_waiter = False

    def step(self) -> None:
        queue = self._queue
        self._sole_waiter = bool(queue) and len(queue[0][3].callbacks or ()) == 1
        super().step()

    def skip_ahead(self, delay: float) -> bool:
        """Advance the clock by ``delay`` now, if that changes nothing; else False (wait)."""
        at = self._now + delay
        queue = self._queue
        if not self._sole_waiter or (queue and queue[0][0] <= at):
            return False
        self._now = at
        return True


class Disk:
    __slots__ = ("profile", "channels", "bytes_read", "bytes_written", "requests", "busy_s", "fsyncs",
                 "rng", "jitter", "jitter_index")

    def __init__(self, profile: Profile, rng: np.random.Generator | None = None):
        self.profile = profile.disk
        self.channels = [0.0] * self.profile.queue_depth
        self.rng = rng
        self.jitter: list[float] = []
        self.jitter_index = 0
        self.reset_counters()

    def _latency_factor(self) -> float:
        """A gamma factor with mean 1 and the profile's coefficient of variation (1 when 0)."""
        cv = self.profile.latency_cv
        if cv == 0:
            return 1.0
        if self.jitter_index == len(self.jitter):
            shape = 1.0 / cv**2
            rng = self.rng if self.rng is not None else np.random.default_rng(0)
            self.jitter = rng.gamma(shape, 1.0 / shape, 4096).tolist()  # drawn in batches: cheaper
            self.jitter_index = 0
        self.jitter_index += 1
        return self.jitter[self.jitter_index - 1]

    def reset_counters(self) -> None:
        self.bytes_read = 0
        self.bytes_written = 0
        self.requests = 0
        self.busy_s = 0.0
        self.fsyncs = 0

    def reserve(self, issue: float, service: float) -> float:
        """Queue a request issued at ``issue`` needing ``service`` seconds; return its finish time."""
        free = heapq.heappop(self.channels)
        finish = (issue if issue > free else free) + service
        heapq.heappush(self.channels, finish)
        self.busy_s += service
        return finish

    def read_service(self, nbytes: int, requests: int) -> float:
        self.bytes_read += nbytes
        self.requests += requests
        return requests * self.profile.read_latency * self._latency_factor() + nbytes / self.profile.read_bandwidth

    def write_service(self, nbytes: int, requests: int, flush: bool = False) -> float:
        self.bytes_written += nbytes
        self.requests += requests
        service = requests * self.profile.write_latency * self._latency_factor() + nbytes / self.profile.write_bandwidth
        if flush:
            self.fsyncs += 1
            service += self.profile.fsync_latency
        return service


class LRU:
    """A least-recently-used set of keys with a capacity in units (bytes or entries)."""

    __slots__ = ("capacity", "unit", "entries")

    def __init__(self, capacity: int, unit: int = 1):
        self.capacity = max(1, capacity // unit)
        self.unit = unit
        self.entries: OrderedDict = OrderedDict()

    def touch(self, key) -> bool:
        """True on a hit; on a miss the key is inserted (evicting the oldest when full)."""
        entries = self.entries
        if key in entries:
            entries.move_to_end(key)
            return True
        entries[key] = None
        if len(entries) > self.capacity:
            entries.popitem(last=False)
        return False

    def insert(self, key) -> None:
        entries = self.entries
        if key in entries:
            entries.move_to_end(key)
            return
        entries[key] = None
        if len(entries) > self.capacity:
            entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


class PageCache(LRU):
    """File data cached in blocks of ``cache_block`` bytes (the readahead window)."""

    __slots__ = ()

    def __init__(self, capacity: int, block: int):
        super().__init__(capacity, block)

    def read(self, key, offset: int, nbytes: int, file_size: int) -> tuple[int, int]:
        """(bytes served from cache, bytes to read from disk) for a read of a file's range."""
        block = self.unit
        first, last = offset // block, (offset + nbytes - 1) // block
        hit = miss = 0
        entries = self.entries
        for index in range(first, last + 1):
            start = index * block
            span = min(start + block, file_size) - start
            block_key = (key, index)
            if block_key in entries:  # LRU.touch, inlined: files span many blocks
                entries.move_to_end(block_key)
                hit += span
            else:
                entries[block_key] = None
                if len(entries) > self.capacity:
                    entries.popitem(last=False)
                miss += span  # a miss reads the whole block (readahead), clipped to the file
        return hit, miss

    def fill(self, key, offset: int, nbytes: int) -> None:
        block = self.unit
        entries = self.entries
        for index in range(offset // block, (offset + nbytes - 1) // block + 1):
            block_key = (key, index)
            if block_key in entries:  # LRU.insert, inlined
                entries.move_to_end(block_key)
                continue
            entries[block_key] = None
            if len(entries) > self.capacity:
                entries.popitem(last=False)


class OpResult:
    """What executing one plan measured; the engine fills it, the workload records it."""

    __slots__ = ("phase_s", "hit_bytes", "miss_bytes", "dentry_hits", "dentry_misses")

    def __init__(self) -> None:
        self.phase_s = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.hit_bytes = 0
        self.miss_bytes = 0
        self.dentry_hits = 0
        self.dentry_misses = 0


class Engine:
    """Executes plans against one disk and the host's caches, inside one SimPy environment."""

    def __init__(self, profile: Profile, env: Environment | None = None, rng: np.random.Generator | None = None):
        self.env = env or Environment()
        self.profile = profile
        self.costs = profile.costs
        self.disk = Disk(profile, rng)
        self.page_cache = PageCache(profile.page_cache, profile.cache_block)
        self.dentries = LRU(profile.dentry_cache)
        self.operations = 0

    def drop_caches(self) -> None:
        """As ``echo 3 > /proc/sys/vm/drop_caches``: empty page and dentry caches."""
        self.page_cache.clear()
        self.dentries.clear()

    def execute(self, plan: Plan, result: OpResult):
        """A SimPy process body: run ``plan``'s steps, charging each phase its time."""
        env = self.env
        disk = self.disk
        costs = self.costs
        phase_s = result.phase_s
        pending = 0.0  # CPU time not yet waited for
        self.operations += 1
        dentries = self.dentries
        touch = dentries.touch
        cached = dentries.entries  # a dentry hit, the common case, is inlined from LRU.touch
        dentry_hit = costs.dentry_hit
        dentry_hits = 0  # counted here, stored once: most steps are dentry hits
        for step in plan.steps:
            kind = step[0]
            if kind == PROBE:  # the commonest step: one per path component
                if step[2] in cached:
                    cached.move_to_end(step[2])
                    dentry_hits += 1
                    pending += dentry_hit
                    phase_s[step[1]] += dentry_hit
                    continue
                touch(step[2])
                result.dentry_misses += 1
                probes = step[3]
                cpu = step[4]  # the miss's CPU, as the driver reckoned it
                pending += cpu
                phase_s[step[1]] += cpu
                cold = 0
                for key in probes:
                    if not touch(key):
                        cold += 1
                if not cold:
                    continue
                service = disk.read_service(cold * costs.metadata_block, cold)
            elif kind == CPU:
                pending += step[2]
                phase_s[step[1]] += step[2]
                continue
            elif kind == READ:
                hit, miss = self.page_cache.read(step[2], step[3], step[4], step[5])
                result.hit_bytes += hit
                result.miss_bytes += miss
                copy = (hit + miss) / costs.memcpy_bandwidth
                pending += copy
                phase_s[step[1]] += copy
                if not miss:
                    continue
                requests = max(1, min(step[6], -(-miss // costs.copy_chunk)))
                service = disk.read_service(miss, requests)
            elif kind == WRITE:
                self.page_cache.fill(step[2], step[3], step[4])
                copy = step[4] / costs.memcpy_bandwidth
                pending += copy
                phase_s[step[1]] += copy
                continue
            elif kind == SYNC:
                service = disk.write_service(step[2], 1 if step[2] else 0, flush=True)
            elif kind == WRITEBACK:
                disk.reserve(env.now + pending, disk.write_service(step[2], 1))
                continue
            elif kind == DISK_READ:
                service = disk.read_service(step[2], step[3])
            elif kind == DISK_WRITE:
                service = disk.write_service(step[2], step[3])
            elif kind == CACHED:
                for key in step[2]:
                    dentries.insert(key)
                continue
            issue = env.now + pending
            finish = disk.reserve(issue, service)
            phase_s[step[1]] += finish - issue
            if not env.skip_ahead(finish - env.now):
                yield env.timeout(finish - env.now)
            pending = 0.0
        result.dentry_hits = dentry_hits
        if pending > 0 and not env.skip_ahead(pending):
            yield env.timeout(pending)
