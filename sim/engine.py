"""The one SimPy engine: a disk shared by its requests, a page cache, a dentry cache, and the
execution of driver plans.

The disk (:class:`Disk`) overlaps ``queue_depth`` requests' access times and shares its bandwidth
among the transfers in service (processor sharing, exact, evaluated lazily: no event of its
own). A process waiting for a request yields the request itself (a :class:`Transfer` is its
own event), which the disk's one alarm triggers when its transfer ends. An operation served
from cache costs one timeout, or none when nothing else is due before it ends (:meth:`Environment.skip_ahead`).
CPU time runs on the host's ``cores`` (:class:`Cores`), shared by every container, and plans
may hold locks (:class:`Locks`): mutexes and semaphores keyed by what they stand for.
"""
from __future__ import annotations

import bisect
import heapq
from collections import OrderedDict, deque

import numpy as np
import simpy
from simpy.events import NORMAL, Event, Timeout

from .plan import CPU, DISK_READ, DISK_WRITE, LOCK, PROBE, READ, SYNC, WRITE, WRITEBACK, Plan
from .profile import Profile


class Environment(simpy.Environment):
    """SimPy's environment with one shortcut for the engine's waits.

    A process about to wait ``delay`` seconds for a timeout of its own, while no other event is
    due before (or at) the end of that wait, would be the very next thing SimPy resumes: it may
    move the clock itself and go on, skipping the event. Same times (``now + delay``, the float
    SimPy would compute), same order of everything, one event fewer. Only when the event being
    processed has that process as its one waiter: another waiter would otherwise run after it at
    the later time.

    The engine's hot paths read ``_now`` and build ``Timeout`` and ``Event`` themselves: SimPy's
    ``now`` property and ``env.timeout`` descriptor cost a Python call each, for the same objects.
    """

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self._sole_waiter = False

    def step(self) -> None:
        """SimPy's ``step`` (less its StopSimulation bookkeeping: ``run`` is never given an
        ``until``), inlined: one call fewer per event."""
        try:
            self._now, _, _, event = heapq.heappop(self._queue)
        except IndexError:
            raise simpy.core.EmptySchedule from None
        callbacks, event.callbacks = event.callbacks, None
        self._sole_waiter = len(callbacks) == 1
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    def skip_ahead(self, delay: float) -> bool:
        """Advance the clock by ``delay`` now, if that changes nothing; else False (wait)."""
        at = self._now + delay
        queue = self._queue
        if not self._sole_waiter or (queue and queue[0][0] <= at):
            return False
        self._now = at
        return True


INF = float("inf")
NO_WAITS = ()  # a read that finds no page in flight


def shared_until(vtime: float, clock: float, at: float, count: int, least_tag: float) -> float:
    """The device's virtual time at ``at``, from ``vtime`` at ``clock`` with ``count`` transfers
    in service, each getting ``1/count`` of it; never past ``least_tag``, the first of them to end
    (rounding). The one arithmetic of every walk of the sharing state (:meth:`Disk.advance` and
    the estimates that walk ahead of it), so that they all compute the same floats."""
    vtime += (at - clock) / count
    return least_tag if vtime > least_tag else vtime


class Transfer:
    """One disk request: its access time on a channel, then its bytes on the shared bandwidth.

    It is also what its waiters yield (:meth:`Disk.wait`): SimPy's ``callbacks``, ``_ok`` and
    ``_value``, which the disk's alarm sets when it ends, as it would an ``Event``'s. An event of
    its own per waited request cost an object and a call."""

    __slots__ = ("arrival", "work", "tag", "callbacks", "_ok", "_value", "done")

    def __init__(self) -> None:
        self.arrival = 0.0    # when its access time ends and its transfer joins the others [s]
        self.work = 0.0       # its transfer alone on the device: bytes / bandwidth [s]
        self.tag = INF        # its finish in the device's virtual time, once its transfer has begun
        self.callbacks: list | None = None  # its waiters' (a list once someone waits for it)
        self.done = False     # set by the process that waited for it: its pages are usable


class Disk:
    """A block device: ``queue_depth`` channels overlap requests' access times; transfers share
    the bandwidth (processor sharing).

    A request first spends its access time (``requests x latency``, plus ``fsync_latency`` for a
    flush) on the channel free first, FIFO, as blk-mq's hardware queue tags do: that finish is
    known when it is issued. Its bytes then join every transfer in service and each of the ``n``
    gets ``1/n`` of the device (reads at ``read_bandwidth``, writes at ``write_bandwidth``: a
    transfer's work is its seconds alone on the device). The sharing is exact and lazy: in
    virtual time ``V`` (``dV/dt = 1/n``) a transfer that begins at ``V0`` ends at the tag
    ``V0 + work``, whoever arrives later, so transfers end in tag order; the state is brought up
    to a time only when someone asks (:meth:`advance`). One alarm, a SimPy timeout re-armed as
    needed, wakes the waiters of the next transfer someone waits for; a transfer nobody waits
    for (background writeback) costs no event at all.
    """

    __slots__ = ("env", "profile", "channels", "clock", "vtime", "tags", "arriving", "arrivals", "waited",
                 "expecting", "waits", "alarm", "alarm_at", "ringing", "next_event", "bytes_read", "bytes_written",
                 "requests", "fsyncs", "rng", "jitter", "jitter_index")

    def __init__(self, profile: Profile, env: simpy.Environment, rng: np.random.Generator | None = None):
        self.env = env
        self.profile = profile.disk
        self.channels = [0.0] * self.profile.queue_depth  # when each channel is free (a heap)
        self.clock = 0.0    # the last arrival or departure: the sharing state below is as of then
        self.vtime = 0.0    # virtual time at ``clock``: the work each transfer in service has had
        self.tags: list[float] = []  # finish tags of the transfers in service, sorted
        self.arriving: list[tuple] = []  # (arrival, order, transfer) still in their access time, sorted
        self.arrivals = 0   # transfers submitted: the order among equal times
        self.waited: list[tuple] = []    # (tag, order, transfer) in service with waiters (a heap)
        self.expecting = 0   # transfers in ``arriving`` that someone waits for
        self.waits = 0       # transfers waited for: their order among equal times
        self.alarm = None    # the timeout that goes off next, at ``alarm_at``
        self.alarm_at = INF
        self.ringing = [self._ring]  # the alarm's callbacks
        self.next_event = INF  # when the next transfer begins or ends: before then, advance has nothing to do
        self.rng = rng
        self.jitter: list[float] = []
        self.jitter_index = 0
        self.reset_counters()

    def _latency_factor(self) -> float:
        """A gamma factor with mean 1 and the profile's coefficient of variation (not 0: the
        callers skip the call and take 1)."""
        cv = self.profile.latency_cv
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
        self.fsyncs = 0

    # -- what a request costs ----------------------------------------------------------------------
    def read(self, issue: float, nbytes: int, requests: int, transfer: Transfer | None = None) -> Transfer:
        """Issue a read of ``nbytes`` in ``requests`` requests at time ``issue``."""
        self.bytes_read += nbytes
        self.requests += requests
        profile = self.profile
        factor = self._latency_factor() if profile.latency_cv else 1.0
        return self.submit(issue, requests * profile.read_latency * factor, nbytes / profile.read_bandwidth, transfer)

    def write(self, issue: float, nbytes: int, requests: int, flush: bool = False) -> Transfer:
        """Issue a write (and with ``flush``, the cache flush of an fsync) at time ``issue``."""
        self.bytes_written += nbytes
        self.requests += requests
        profile = self.profile
        factor = self._latency_factor() if profile.latency_cv else 1.0
        access = requests * profile.write_latency * factor
        if flush:
            self.fsyncs += 1
            access += profile.fsync_latency
        return self.submit(issue, access, nbytes / profile.write_bandwidth)

    # -- the device --------------------------------------------------------------------------------
    def submit(self, issue: float, access: float, work: float, transfer: Transfer | None = None) -> Transfer:
        """Queue a request issued at ``issue``: ``access`` seconds on a channel, then ``work``
        seconds of transfer shared with the others."""
        channels = self.channels
        free = channels[0]  # the channel free first (replaced below: one heap operation, the same times)
        arrival = (issue if issue > free else free) + access
        heapq.heapreplace(channels, arrival)
        transfer = transfer or Transfer()
        transfer.arrival = arrival
        transfer.work = work
        self.arrivals += 1
        if work > 0:
            bisect.insort(self.arriving, (arrival, self.arrivals, transfer))
            if arrival < self.next_event:
                self.next_event = arrival
        else:
            transfer.tag = -INF  # nothing to transfer: it ends with its access time
        return transfer

    def advance(self, now: float) -> None:
        """Bring the sharing state up to ``now``: begin the transfers whose access time has
        ended and end those whose tag virtual time has reached, in time order. The state is
        kept as of the last of those events, never of ``now``: it then depends only on the
        requests, not on when (and how often) someone asked, and every estimate made from it
        is the same float whichever process asks, at whichever time."""
        if now < self.next_event:  # nothing begins or ends by then
            return
        tags = self.tags
        arriving = self.arriving
        clock = self.clock
        vtime = self.vtime
        # The next arrival and departure, each computed again only when the state changes.
        arrive = arriving[0][0] if arriving else INF
        depart = clock + (tags[0] - vtime) * len(tags) if tags else INF
        while True:
            if arrive < depart:  # at a tie, the departure first
                if arrive > now:
                    self.next_event = arrive
                    break
                transfer = arriving.pop(0)[2]
                if tags:
                    vtime = shared_until(vtime, clock, arrive, len(tags), tags[0])
                clock = arrive
                tag = transfer.tag = vtime + transfer.work
                bisect.insort(tags, tag)
                if transfer.callbacks is not None:  # someone waits for it
                    self.expecting -= 1
                    self.waits += 1
                    heapq.heappush(self.waited, (tag, self.waits, transfer))
                arrive = arriving[0][0] if arriving else INF
            else:
                if depart > now:
                    self.next_event = depart
                    break
                clock = depart
                vtime = tags.pop(0)
            depart = clock + (tags[0] - vtime) * len(tags) if tags else INF
        self.clock = clock
        self.vtime = vtime

    def finish_time(self, transfer: Transfer, now: float) -> float:
        """When ``transfer`` ends if nothing else begins meanwhile, a lower bound (a transfer
        that begins slows the others down); ``now`` if it has ended."""
        if transfer.tag == -INF:
            return transfer.arrival if transfer.arrival > now else now
        if now >= self.next_event:
            self.advance(now)
        if transfer.tag <= self.vtime:
            return now
        return self._end(transfer)

    def _end(self, transfer: Transfer) -> float:
        """:meth:`finish_time` of a transfer that has not ended: the departures before it (and
        its own arrival) walked from the last event with :meth:`advance`'s very arithmetic.
        From the same events it is the same float, whenever it is asked, and with no arrival
        before it ends, the float at which ``advance`` ends it: whether a process waits for its
        alarm or moves the clock there itself, it resumes at the same time."""
        tags = self.tags
        clock = self.clock
        vtime = self.vtime
        tag = transfer.tag
        count = len(tags)  # in service at each step of the walk
        if tag == INF:  # still in its access time: the others' departures up to its arrival
            arrival = transfer.arrival
            index = 0
            for first in tags:
                depart = clock + (first - vtime) * count
                if depart > arrival:
                    break
                clock = depart
                vtime = first
                index += 1
                count -= 1
            if count:
                vtime = shared_until(vtime, clock, arrival, count, tags[index])
            clock = arrival
            tag = vtime + transfer.work
            count += 1  # it shares the device from then on
            later = tags[index:] if index else tags
        else:
            later = tags
        for before in later:
            if before >= tag:
                break
            clock += (before - vtime) * count
            vtime = before
            count -= 1
        return clock + (tag - vtime) * count

    def wait(self, transfer: Transfer, earliest: float) -> Transfer | Timeout:
        """What to yield to wait for ``transfer`` (not ended), which ends no earlier than
        ``earliest`` (from :meth:`finish_time`): the transfer itself, triggered exactly when it
        ends (a timeout when it has nothing to transfer)."""
        if transfer.tag == -INF:  # nothing to transfer: it ends with its access time
            return Timeout(self.env, transfer.arrival - self.env._now)
        if transfer.callbacks is None:  # its first waiter
            transfer.callbacks = []
            if transfer.tag == INF:  # advance files it in ``waited`` when it begins
                self.expecting += 1
            else:
                self.waits += 1
                heapq.heappush(self.waited, (transfer.tag, self.waits, transfer))
            if earliest < self.alarm_at:
                self._set_alarm(earliest)
        return transfer

    def _set_alarm(self, at: float) -> None:
        """Set the alarm at ``at``: a new timeout (:meth:`_ring` schedules the one that rang again)."""
        self.alarm_at = at
        self.alarm = Timeout(self.env, at - self.env._now)
        self.alarm.callbacks = self.ringing

    def _ring(self, alarm) -> None:
        """The alarm: trigger the transfers that have ended; set the next alarm at the earliest
        a waited transfer can end."""
        env = self.env
        now = env._now
        if alarm is self.alarm:  # else a stale one, set before an earlier one replaced it
            self.alarm = None
            self.alarm_at = INF
        if now >= self.next_event:
            self.advance(now)
        waited = self.waited
        ended = None
        vtime = self.vtime
        if waited and waited[0][0] <= vtime:
            ended = [heapq.heappop(waited)[2]]
            while waited and waited[0][0] <= vtime:
                ended.append(heapq.heappop(waited)[2])
        at = self._first_end() if waited or self.expecting else INF
        if at < self.alarm_at:
            # The alarm that rang, scheduled again as SimPy would a new timeout (at ``now + (at -
            # now)``, the next event id): one object fewer. Its callbacks are only ever read.
            self.alarm_at = at
            alarm.callbacks = self.ringing
            heapq.heappush(env._queue, (now + (at - now), NORMAL, next(env._eid), alarm))
            self.alarm = alarm
        if ended is None:
            return
        # The waiters resume within this alarm, as SimPy would one step later, and in the same
        # order; a waiter may move the clock ahead only if it is the only one.
        if len(ended) > 1 or len(ended[0].callbacks) > 1:
            env._sole_waiter = False
        for transfer in ended:
            transfer._ok = True
            transfer._value = None
            callbacks, transfer.callbacks = transfer.callbacks, None
            for callback in callbacks:
                callback(transfer)

    def _first_end(self) -> float:
        """When the first transfer someone waits for ends if no request is issued meanwhile (after
        the last event, so after now at a ring: what is due has been done). :meth:`advance`'s walk
        run ahead, over the arrivals already known, without changing the state: the very floats
        ``advance`` computes when it gets there. A request issued meanwhile that begins before
        then only delays it: the alarm then ends nothing and is set again."""
        tags = self.tags
        arriving = self.arriving
        clock = self.clock
        vtime = self.vtime
        waited = self.waited
        first = waited[0][0] if waited else INF  # the least tag someone waits for
        done = 0  # tags[:done] have departed in the walk
        count = len(tags)
        index = 0  # the next arrival in ``arriving``
        arrive = arriving[0][0] if arriving else INF
        depart = clock + (tags[0] - vtime) * count if count else INF
        while True:
            if arrive < depart:  # at a tie, the departure first
                transfer = arriving[index][2]
                index += 1
                if count:
                    vtime = shared_until(vtime, clock, arrive, count, tags[done])
                clock = arrive
                tag = vtime + transfer.work
                if tags is self.tags:
                    tags = tags.copy()
                bisect.insort(tags, tag, done)
                count += 1
                if transfer.callbacks is not None and tag < first:
                    first = tag
                arrive = arriving[index][0] if index < len(arriving) else INF
            else:
                if tags[done] >= first:
                    return depart
                clock = depart
                vtime = tags[done]
                done += 1
                count -= 1
            depart = clock + (tags[done] - vtime) * count if count else INF

    def next_change(self, now: float) -> float:
        """The next time a transfer begins or ends (inf when the device is idle)."""
        self.advance(now)
        depart = self.clock + (self.tags[0] - self.vtime) * len(self.tags) if self.tags else INF
        arrive = self.arriving[0][0] if self.arriving else INF
        return min(depart, arrive)


class Cores:
    """The host's CPUs: every container's kernel and FUSE work, first come first served.

    A burst of CPU time (the work an operation does between two waits, microseconds, far below
    the scheduler's time slice) runs to completion on the first core free, in the order the
    bursts become ready. As with the disk's channels, a burst's finish is known when it starts,
    so a core is reserved, not waited for with an event. (:meth:`Engine.execute` inlines
    :meth:`run`.)
    """

    __slots__ = ("free",)

    def __init__(self, count: int):
        self.free = [0.0] * count  # when each core is next free (a heap)

    def run(self, ready: float, seconds: float) -> float:
        """Run a burst of ``seconds`` ready at ``ready``; return when it finishes."""
        free = self.free[0]
        finish = (ready if ready > free else free) + seconds
        heapq.heapreplace(self.free, finish)
        return finish


class Semaphore:
    """A FIFO semaphore of several places: when each free place was given back, and the waiters."""

    __slots__ = ("free", "waiters")

    def __init__(self, holders: int):
        self.free = [0.0] * holders  # a heap
        self.waiters: deque = deque()


HELD = True  # a mutex held, nobody waiting


class Locks:
    """The kernel's (and FUSE daemons') locks, by id, created at first use.

    A mutex's state is kept as small as its use allows: absent when free since before the clock,
    the time it was given back when that lies ahead of the clock, ``HELD``, or the deque of its
    waiters. A lock is given back at a time that may lie a CPU burst ahead of the clock (the
    holder's work is reserved on the cores, not waited for step by step); whoever takes it next
    starts no earlier. A holder hands a contended lock straight to its first waiter, in arrival
    order.
    """

    __slots__ = ("env", "table", "waits")

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.table: dict = {}
        self.waits = 0  # acquisitions that had to queue

    def acquire(self, lock_id, holders: int, ready: float):
        """When the caller, ready at ``ready``, holds the lock: a time, or an event to wait for
        (its value is that time)."""
        table = self.table
        state = table.get(lock_id)
        if holders > 1:
            if state is None:
                state = table[lock_id] = Semaphore(holders)
            if state.free and not state.waiters:
                released = heapq.heappop(state.free)
                return ready if ready > released else released
            waiters = state.waiters
        elif state is None:
            table[lock_id] = HELD
            return ready
        elif state.__class__ is float:
            table[lock_id] = HELD
            return ready if ready > state else state
        elif state is HELD:
            waiters = table[lock_id] = deque()
        else:
            waiters = state
        self.waits += 1
        event = Event(self.env)
        waiters.append(event)
        return event

    def release(self, lock_id, at: float) -> None:
        table = self.table
        state = table[lock_id]
        if state is HELD:
            if at > self.env._now:
                table[lock_id] = at
            else:
                del table[lock_id]
        elif state.__class__ is Semaphore:
            if state.waiters:
                state.waiters.popleft().succeed(at)
            else:
                heapq.heappush(state.free, at)
        else:  # the waiters of a mutex: the first takes it over
            state.popleft().succeed(at)
            if not state:
                table[lock_id] = HELD


MISS = object()  # what LRU.touch returns for a key it did not hold


class LRU:
    """A least-recently-used map with a capacity in units (bytes or entries): the dentry cache
    (names) and the page cache (file blocks) alike.

    :meth:`touch` is the one way in: a hit moves the key to the recent end and returns its value;
    a miss keeps the key (evicting the least recently used one when full) and returns ``MISS``.
    Hot loops bind it once (``touch = cache.touch``): one call per key; ``hit`` is its hit alone.
    """

    __slots__ = ("capacity", "unit", "entries", "hit")

    def __init__(self, capacity: int, unit: int = 1):
        self.capacity = max(1, capacity // unit)
        self.unit = unit
        self.entries: OrderedDict = OrderedDict()
        # The hit alone, for the commonest touch (a dentry found): the key moved to the recent
        # end, KeyError when absent (then ``touch`` it). No Python call, one hash.
        self.hit = self.entries.move_to_end

    def touch(self, key, value=None):
        """``key``'s value, now the most recently used; on a miss ``MISS``, and ``key`` kept
        with ``value``."""
        entries = self.entries
        found = entries.get(key, MISS)
        if found is MISS:
            entries[key] = value
            if len(entries) > self.capacity:
                entries.popitem(last=False)
        else:
            entries.move_to_end(key)
        return found

    def misses(self, keys) -> int:
        """Touch every key of ``keys`` (values None); how many missed. :meth:`touch`'s loop
        without a call per key: a dentry miss probes a key per layer."""
        entries = self.entries
        capacity = self.capacity
        missed = 0
        for key in keys:
            if key in entries:
                entries.move_to_end(key)
            else:
                entries[key] = None
                if len(entries) > capacity:
                    entries.popitem(last=False)
                missed += 1
        return missed

    def clear(self) -> None:
        self.entries.clear()


class PageCache(LRU):
    """File data cached in blocks of ``cache_block`` bytes (the readahead window)."""

    __slots__ = ()

    def __init__(self, capacity: int, block: int):
        super().__init__(capacity, block)

    def read(self, key, offset: int, nbytes: int, file_size: int, transfer: Transfer) -> tuple[int, int, tuple]:
        """(bytes found in the cache, bytes to read from disk, the reads in flight to wait for)
        for a read of a file's range.

        A missed block belongs to the cache at once, marked with ``transfer``, the read that
        fills it; a later reader finds it but may use it only when that read is done (a page
        under I/O is locked: PG_locked, and readers sleep in wait_on_page_locked).
        """
        block = self.unit
        first, last = offset // block, (offset + nbytes - 1) // block
        hit = miss = 0
        entries = self.entries  # LRU.touch's hit and miss, inline: one call fewer per block
        waits = NO_WAITS
        for index in range(first, last + 1):
            start = index * block
            span = min(start + block, file_size) - start
            cache_key = (key, index)
            marker = entries.get(cache_key, MISS)
            if marker is MISS:
                entries[cache_key] = transfer
                if len(entries) > self.capacity:
                    entries.popitem(last=False)
                miss += span  # a miss reads the whole block (readahead), clipped to the file
            else:
                entries.move_to_end(cache_key)
                hit += span
                if marker is not None and not marker.done and marker not in waits:
                    waits = [*waits, marker]
        return hit, miss, waits

    def fill(self, key, offset: int, nbytes: int) -> None:
        block = self.unit
        touch = self.touch
        for index in range(offset // block, (offset + nbytes - 1) // block + 1):
            touch((key, index))


class Engine:
    """Executes plans against one disk and the host's caches, inside one SimPy environment."""

    def __init__(self, profile: Profile, env: Environment | None = None, rng: np.random.Generator | None = None):
        self.env = env or Environment()
        self.profile = profile
        self.costs = profile.costs
        self.disk = Disk(profile, self.env, rng)
        self.page_cache = PageCache(profile.page_cache, profile.cache_block)
        self.spare = Transfer()  # the next read's request, handed to the page cache to mark its blocks
        self.dentries = LRU(profile.dentry_cache)
        self.cores = Cores(profile.cores)
        self.locks = Locks(self.env)
        self.operations = 0
        # What run reads for every operation, gathered once. ``cores.free``: a burst on the
        # first free core (Cores.run, inlined at the end of every operation); ``locks.table``: the
        # uncontended mutexes' fast path, inlined from Locks.
        self.parts = (self.env, self.disk, self.costs, self.page_cache, self.cores.run, self.cores.free, self.locks,
                      self.locks.table, self.dentries, self.dentries.hit, self.costs.dentry_hit)

    def drop_caches(self) -> None:
        """As ``echo 3 > /proc/sys/vm/drop_caches``: empty page and dentry caches."""
        self.page_cache.clear()
        self.dentries.clear()

    def execute(self, plan: Plan, record=None):
        """A SimPy process body that runs ``plan`` (:meth:`run` of one operation, recorded with
        ``record`` if given, with empty record columns)."""
        return self.run(((plan, "", 0, "", "", 0),), record)

    def run(self, operations, record=None):
        """A SimPy process body: run each operation of ``operations`` in turn, charging each
        phase its time; with ``record`` (``OpRecords.add``), record each as it ends.

        ``operations`` yields ``(plan, container, worker, op, path, nbytes)``, the plan and its
        record columns; it is asked for the next one when the previous has ended and been
        recorded (a workload's closed loop draws and plans it then), so a process runs its
        operations one after another in one generator, not one per operation.

        CPU time accumulates into one burst until the operation must wait (for the disk, a lock
        or its end); the burst then runs on the host's cores. ``ready`` is when the work so far
        is done: ahead of the clock by what the cores and the locks have promised. A step that
        needs the disk issues its request then and waits for it, and for any read in flight it
        found in the page cache.
        """
        env, disk, costs, page_cache, run, cores, locks, lock_table, dentries, dentry_found, dentry_hit = self.parts
        dentry_table, dentry_capacity = dentries.entries, dentries.capacity
        memcpy_bandwidth = costs.memcpy_bandwidth
        for plan, container, worker, op, path, nbytes in operations:
            phase_s = [0.0, 0.0, 0.0, 0.0, 0.0]
            pending = 0.0  # CPU time not yet run on a core
            start = ready = env._now + 0.0  # a float, even at time 0 (the locks tell a time from an event by it)
            held = None  # the lock a probe holds across its disk read
            self.operations += 1
            dentry_hits = dentry_misses = hit_bytes = miss_bytes = 0
            step = None
            for step in plan.steps:
                kind = step[0]
                if kind == PROBE:  # the commonest step: one per path component
                    try:
                        dentry_found(step[2])
                    except KeyError:  # LRU.touch's miss, inline: the name kept, the least recent one evicted
                        dentry_table[step[2]] = None
                        if len(dentry_table) > dentry_capacity:
                            dentry_table.popitem(last=False)
                    else:
                        dentry_hits += 1
                        pending += dentry_hit
                        phase_s[step[1]] += dentry_hit
                        continue
                    dentry_misses += 1
                    if len(step) > 5:  # the miss holds a directory lock while it probes
                        if pending:
                            finish = run(ready, pending)
                            phase_s[step[1]] += finish - ready - pending
                            ready, pending = finish, 0.0
                        got = locks.acquire(step[5], 1, ready)
                        if got.__class__ is not float:
                            got = yield got
                        phase_s[step[1]] += got - ready
                        ready, held = got, step[5]
                    cpu = step[4]  # the miss's CPU, as the driver reckoned it
                    pending += cpu
                    phase_s[step[1]] += cpu
                    cold = dentries.misses(step[3])  # a miss probes a key per layer
                    if not cold and held is None:
                        continue
                    if pending:
                        finish = run(ready, pending)
                        phase_s[step[1]] += finish - ready - pending
                        ready, pending = finish, 0.0
                    if not cold:
                        locks.release(held, ready)
                        held = None
                        continue
                    waits = (disk.read(ready, cold * costs.metadata_block, cold),)
                elif kind == CPU:
                    pending += step[2]
                    phase_s[step[1]] += step[2]
                    continue
                elif kind == READ:
                    transfer = self.spare
                    hit, miss, waits = page_cache.read(step[2], step[3], step[4], step[5], transfer)
                    hit_bytes += hit
                    miss_bytes += miss
                    copy = (hit + miss) / memcpy_bandwidth
                    pending += copy
                    phase_s[step[1]] += copy
                    if not miss and not waits:
                        continue
                    if pending:
                        finish = run(ready, pending)
                        phase_s[step[1]] += finish - ready - pending
                        ready, pending = finish, 0.0
                    if miss:
                        self.spare = Transfer()
                        requests = max(1, min(step[6], -(-miss // costs.copy_chunk)))
                        waits = (*waits, disk.read(ready, miss, requests, transfer))
                elif kind == WRITE:
                    page_cache.fill(step[2], step[3], step[4])
                    copy = step[4] / memcpy_bandwidth
                    pending += copy
                    phase_s[step[1]] += copy
                    continue
                elif kind >= LOCK:
                    # A mutex free since before the clock is taken, and one nobody waits for given
                    # back, without running the CPU burst so far: the holder's time is then its ready
                    # time plus that burst (exact while the cores are free). Otherwise the burst runs
                    # first, so that the lock changes hands at the exact time.
                    state = lock_table.get(step[2])
                    if kind == LOCK:
                        if state is None and step[3] == 1:
                            lock_table[step[2]] = HELD
                            continue
                    elif state is HELD:
                        if ready + pending > env._now:
                            lock_table[step[2]] = ready + pending
                        else:
                            del lock_table[step[2]]
                        continue
                    if pending:
                        finish = run(ready, pending)
                        phase_s[step[1]] += finish - ready - pending
                        ready, pending = finish, 0.0
                    if kind == LOCK:
                        got = locks.acquire(step[2], step[3], ready)
                        if got.__class__ is not float:
                            got = yield got
                        phase_s[step[1]] += got - ready
                        ready = got
                    else:
                        locks.release(step[2], ready)
                    continue
                elif kind == WRITEBACK:
                    disk.write(ready + pending, step[2], 1)  # nobody waits for it
                    continue
                elif kind == SYNC or kind == DISK_READ or kind == DISK_WRITE:
                    if pending:
                        finish = run(ready, pending)
                        phase_s[step[1]] += finish - ready - pending
                        ready, pending = finish, 0.0
                    if kind == SYNC:
                        waits = (disk.write(ready, step[2], 1 if step[2] else 0, flush=True),)
                    elif kind == DISK_READ:
                        waits = (disk.read(ready, step[2], step[3]),)
                    else:
                        waits = (disk.write(ready, step[2], step[3]),)
                else:  # CACHED: metadata just written, now in the dentry cache
                    dentries.misses(step[2])
                    continue
                issue = ready
                for transfer in waits:
                    finish = disk.finish_time(transfer, env._now)
                    while finish > env._now:
                        if env.skip_ahead(finish - env._now):  # nothing else happens meanwhile: look again
                            finish = disk.finish_time(transfer, env._now)
                        else:
                            yield disk.wait(transfer, finish)
                            break
                    transfer.done = True
                if env._now < issue:  # the pages were in flight and arrived before this step's CPU was done
                    if not env.skip_ahead(issue - env._now):
                        yield Timeout(env, issue - env._now)
                phase_s[step[1]] += env._now - issue
                ready = env._now + 0.0
                if held is not None:
                    locks.release(held, ready)
                    held = None
            if pending:
                free = cores[0]
                finish = (ready if ready > free else free) + pending
                heapq.heapreplace(cores, finish)
                phase_s[step[1]] += finish - ready - pending
                ready = finish
            if ready > env._now and not env.skip_ahead(ready - env._now):
                yield Timeout(env, ready - env._now)
            if record is not None:
                record(container, worker, op, path, nbytes, start, env._now, plan, phase_s, hit_bytes, miss_bytes,
                       dentry_hits, dentry_misses)

    def settle(self):
        """A SimPy process body: wait until the disk has served every request it holds (as
        ``sync`` does). Nothing else may issue requests meanwhile."""
        env = self.env
        while (change := self.disk.next_change(env.now)) < INF:
            yield env.timeout(change - env.now)
