"""The I/O plan a driver returns for one logical operation, and the steps it is made of.

Drivers build plans; only the engine executes them. A step is a plain tuple whose first two
items are its kind and the phase its time is charged to (the latency split in the records).
"""
from __future__ import annotations

# Phases: where a step's time is charged in the per-operation record.
LOOKUP, COPY_UP, DATA, FSYNC, SETUP = range(5)
PHASES = ("lookup", "copy_up", "data", "fsync", "setup")

# Step kinds.
CPU = 0         # (CPU, phase, seconds)
PROBE = 1       # (PROBE, phase, dentry_key, probe_keys, miss_cpu[, lock_id]): a path component lookup;
                # on a dentry miss it reads the probe keys not cached and costs miss_cpu seconds of CPU
READ = 2        # (READ, phase, cache_key, offset, nbytes, file_size, requests): through the page cache
WRITE = 3       # (WRITE, phase, cache_key, offset, nbytes): buffered write into the page cache
SYNC = 4        # (SYNC, phase, nbytes): write dirty bytes to disk and flush (fsync)
WRITEBACK = 5   # (WRITEBACK, phase, nbytes): background writeback, not waited for
DISK_READ = 6   # (DISK_READ, phase, nbytes, requests): below the page cache (block-level copy)
DISK_WRITE = 7  # (DISK_WRITE, phase, nbytes, requests): synchronous write below the page cache
CACHED = 8      # (CACHED, phase, keys): metadata just written, now in the dentry cache; costs nothing
LOCK = 9        # (LOCK, phase, lock_id, holders): wait for one of the lock's ``holders`` places, FIFO
UNLOCK = 10     # (UNLOCK, phase, lock_id): give the place back (to the first waiter, if any)


class Plan:
    """Steps of one operation, plus what the driver knows about it."""

    __slots__ = ("steps", "copy_up_bytes", "copy_ups", "error")

    def __init__(self) -> None:
        self.steps: list[tuple] = []
        self.copy_up_bytes = 0
        self.copy_ups = 0
        self.error = ""

    def cpu(self, phase: int, seconds: float) -> Plan:
        if seconds > 0:
            self.steps.append((CPU, phase, seconds))
        return self

    def probe(self, phase: int, dentry_key, probe_keys: tuple, miss_cpu: float, lock_id=None) -> Plan:
        self.steps.append(probe_step(phase, dentry_key, probe_keys, miss_cpu, lock_id))
        return self

    def read(self, phase: int, cache_key, offset: int, nbytes: int, file_size: int, requests: int = 1) -> Plan:
        if nbytes > 0:
            self.steps.append((READ, phase, cache_key, offset, nbytes, file_size, requests))
        return self

    def write(self, phase: int, cache_key, offset: int, nbytes: int) -> Plan:
        if nbytes > 0:
            self.steps.append((WRITE, phase, cache_key, offset, nbytes))
        return self

    def sync(self, phase: int, nbytes: int) -> Plan:
        self.steps.append((SYNC, phase, nbytes))
        return self

    def writeback(self, phase: int, nbytes: int) -> Plan:
        if nbytes > 0:
            self.steps.append((WRITEBACK, phase, nbytes))
        return self

    def disk_read(self, phase: int, nbytes: int, requests: int = 1) -> Plan:
        if nbytes > 0:
            self.steps.append((DISK_READ, phase, nbytes, requests))
        return self

    def disk_write(self, phase: int, nbytes: int, requests: int = 1) -> Plan:
        if nbytes > 0:
            self.steps.append((DISK_WRITE, phase, nbytes, requests))
        return self

    def cached(self, phase: int, keys: tuple) -> Plan:
        if keys:
            self.steps.append((CACHED, phase, keys))
        return self

    def lock(self, phase: int, lock_id, holders: int = 1) -> Plan:
        """Hold ``lock_id`` (a mutex, or a semaphore of ``holders`` places) until :meth:`unlock`.
        Locks of one plan are taken in one order (see docs/model.md, "CPUs and locks")."""
        self.steps.append((LOCK, phase, lock_id, holders))
        return self

    def unlock(self, phase: int, lock_id) -> Plan:
        self.steps.append((UNLOCK, phase, lock_id))
        return self

    def unlock_held(self) -> Plan:
        """Give back every lock taken and not yet given back (an operation refused half-way)."""
        held = []
        for step in self.steps:
            if step[0] == LOCK:
                held.append(step[2])
            elif step[0] == UNLOCK:
                held.remove(step[2])
        for lock_id in reversed(held):
            self.unlock(self.steps[-1][1], lock_id)
        return self

    def extend(self, other: Plan) -> Plan:
        self.steps.extend(other.steps)
        self.copy_up_bytes += other.copy_up_bytes
        self.copy_ups += other.copy_ups
        self.error = self.error or other.error
        return self


def probe_step(phase: int, dentry_key, probe_keys: tuple, miss_cpu: float, lock_id=None) -> tuple:
    """A path component lookup, as a step a driver may build once and append to many plans.
    With ``lock_id``, a dentry miss holds that mutex while it probes (a directory's i_rwsem
    taken exclusively for the lookup); a hit never takes it."""
    if lock_id is None:
        return (PROBE, phase, dentry_key, probe_keys, miss_cpu)
    return (PROBE, phase, dentry_key, probe_keys, miss_cpu, lock_id)
