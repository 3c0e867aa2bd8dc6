"""Container logs: what containers print to stdout, kept by dockerd's log driver on the host's
own filesystem, beside the storage driver and never through it.

Docker's default driver, json-file, appends one JSON object per line to
``/var/lib/docker/containers/<id>/<id>-json.log``; ``local`` appends protobuf entries to
``.../<id>/local-logs/container.log``. Both write through dockerd's ``loggerutils.LogFile``: a file
at or past ``max-size`` is rotated before the next entry (renamed ``.1``, the older ones shifted,
the oldest beyond ``max-file`` deleted; with ``max-file`` 1 the file is deleted and opened anew),
and with ``compress`` the rotated file is gzipped. The writes are the host filesystem's buffered
writes: dockerd's CPU on the host's cores, the page cache, and writeback sharing the disk with
everything else. Logs are no part of ``docker ps -s`` SIZE; they are part of the node's disk.

Sources: moby ``daemon/logger/jsonfilelog/jsonfilelog.go`` (marshalMessage: the line's newline
added back, the entry ended by a newline), ``jsonfilelog/jsonlog/jsonlogbytes.go`` (the entry's
fields), ``daemon/logger/loggerutils/logfile.go`` (WriteLogEntry, rotate, compressFile),
``daemon/logger/local/local.go`` and ``config.go`` (framing and defaults),
``daemon/logger/internal/logdriver/entry.proto``, ``daemon/logger/copier.go`` (lines of up to
16 KiB, UTC timestamps). docs/model.md, "Container logs", says what is left out.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from simpy.events import Timeout

from .drivers.base import PAGE, round_up
from .plan import DATA, SETUP, Plan
from .scenario import LoggingSpec

if TYPE_CHECKING:
    from .host import Host

# json-file: {"log":"<text>\n","stream":"stdout","time":"2026-11-30T14:04:35.123456789Z"} and a
# newline. Around a line's text it adds 8 + 2 (its newline, written \n) + 28 + 30 (RFC3339Nano
# in UTC, nanoseconds: trailing zeros are trimmed, so one time in ten is a byte shorter) + 2 + 1
# bytes: 71, that is 70 over the line as printed (its newline included). Text needing JSON
# escapes (quotes, backslashes, <, >, &, control characters) would add more.
JSON_FILE_OVERHEAD = 70
# local: a 4-byte big-endian length before and after each protobuf LogEntry, whose fields are
# source "stdout" (1 tag + 1 length + 6), time_nano (1 tag + a 9-byte varint until 2112) and
# the line without its newline (1 tag + a varint length + the text; absent when empty).
LOCAL_FRAMING = 8
LOCAL_FIXED_FIELDS = 18


def varint_bytes(value: int) -> int:
    """Bytes of a protobuf varint."""
    return max(1, math.ceil(value.bit_length() / 7))


def entry_bytes(driver: str, line_bytes: int) -> int:
    """Bytes one stdout line of ``line_bytes`` (its newline included) takes in the log file."""
    if driver == "json-file":
        return line_bytes + JSON_FILE_OVERHEAD
    text = line_bytes - 1
    line_field = 1 + varint_bytes(text) + text if text else 0
    return LOCAL_FRAMING + LOCAL_FIXED_FIELDS + line_field


class LogFile:
    """One container's log: the file being written and the rotated files kept (``.1`` first)."""

    __slots__ = ("cid", "since", "current", "kept", "generation", "lines", "written", "rotations", "stdout_bytes")

    def __init__(self, cid: int, since: float | None) -> None:
        self.cid = cid
        self.since = since        # when the container began printing (its rate counts from then)
        self.current = 0          # bytes of the file being written
        self.kept: list[int] = []  # bytes on disk of the rotated files, newest (.1) first
        self.generation = 0       # which file is the current one: its page-cache key
        self.lines = 0            # entries written
        self.written = 0          # bytes of entries written, rotated away or not
        self.rotations = 0
        self.stdout_bytes = 0     # bytes printed by its operations (bytes_per_op)

    @property
    def held(self) -> int:
        """Bytes its files hold on the host filesystem."""
        return self.current + sum(self.kept)

    def key(self, compressed: bool = False) -> tuple:
        """The page-cache key of the current file's data (or of its gzipped copy, once rotated)."""
        return ("log", self.cid, self.generation, compressed)


class ContainerLogs:
    """The log files of a host's containers and the simulated dockerd that writes them.

    Every ``interval`` of simulated time (and once when the workload ends) the lines each
    container has printed since are written to its file as one batch: a plan per container, run
    on the engine like any other (not recorded as an operation). A line is written once whole:
    the bytes of a line not yet ended wait for the next batch.
    """

    def __init__(self, spec: LoggingSpec, host: Host) -> None:
        self.spec = spec
        self.engine = host.engine
        self.costs = host.engine.costs
        self.max_size, self.max_file, self.compress = spec.options()
        self.entry = entry_bytes(spec.driver, spec.line_bytes)
        costs, line = self.costs, spec.line_bytes
        # CPU per line: the container's write(2) into its stdout pipe, dockerd's read of it (at
        # most 2 KiB at a time: copier.go readSize) and its write(2) of the entry; the line is
        # copied into the pipe, by containerd-shim out of it and into dockerd's FIFO, and out of
        # that (the entry's copy into the page cache is the plan's write step). Encoding and the
        # shim's syscalls are left out.
        self.line_cpu = (2 + line / 2048) * costs.syscall + 4 * line / costs.memcpy_bandwidth
        self.files: dict[int, LogFile] = {}
        self.running = False
        self.removed = LogFile(-1, None)  # the counts of removed containers' logs
        if spec.bytes_per_op:
            self._count_operations(host)

    def _count_operations(self, host: Host) -> None:
        """Make each operation a container completes print ``bytes_per_op``: the host's
        completion hook, on this host only (nothing is added when logging is off)."""
        per_op = self.spec.bytes_per_op
        files = self.files

        def counted(cid: int) -> None:
            files[cid].stdout_bytes += per_op

        host.completed = counted

    # -- life ----------------------------------------------------------------------------------
    def created(self, cid: int, plan: Plan) -> None:
        """A container's log file is created with it (empty)."""
        self.files[cid] = LogFile(cid, self.engine.env.now if self.running else None)
        plan.cpu(SETUP, self.costs.metadata_update)

    def removed_with(self, cid: int, plan: Plan) -> None:
        """``docker rm``: its log files go with the container."""
        log = self.files.pop(cid)
        plan.cpu(SETUP, (1 + len(log.kept)) * self.costs.metadata_update)
        gone = self.removed
        gone.lines += log.lines
        gone.written += log.written
        gone.rotations += log.rotations

    def run(self):
        """A SimPy process body: the containers print from now on; their new lines are written
        every ``interval`` until :meth:`stop`."""
        env = self.engine.env
        now = env.now
        for log in self.files.values():
            if log.since is None:
                log.since = now
        self.running = True
        while True:
            yield Timeout(env, self.spec.interval)
            if not self.running or not env._queue:
                # nothing else due: the workload can never end (a stalled run, which the
                # runner reports); writing on would keep the clock going for ever
                return
            yield from self.write_all(env.now)

    def stop(self):
        """A SimPy process body: the workload has ended; write what was printed until now."""
        self.running = False
        yield from self.write_all(self.engine.env.now)

    # -- writing -------------------------------------------------------------------------------
    def write_all(self, now: float):
        """Write every container's new lines, each container's batch its own process (dockerd
        logs each container from goroutines of its own, on any CPU), and wait for them."""
        env, execute = self.engine.env, self.engine.execute
        batches = [env.process(execute(plan)) for log in self.files.values()
                   if (plan := self.batch(log, now)) is not None]
        if batches:
            yield env.all_of(batches)

    def lines_due(self, log: LogFile, now: float) -> int:
        """Whole lines ``log``'s container has printed by ``now``."""
        printed = log.stdout_bytes + (self.spec.rate * (now - log.since) if log.since is not None else 0.0)
        return math.floor(printed / self.spec.line_bytes + 1e-9)  # 1e-9: a product of floats a hair short

    def batch(self, log: LogFile, now: float) -> Plan | None:
        """The plan that writes ``log``'s new lines (and rotates its files); None if none."""
        lines = self.lines_due(log, now) - log.lines
        if lines <= 0:
            return None
        plan = Plan()
        plan.cpu(DATA, lines * self.line_cpu)
        self.append(log, lines, plan)
        return plan

    def append(self, log: LogFile, lines: int, plan: Plan) -> None:
        """Write ``lines`` entries to ``log``, rotating as ``LogFile.WriteLogEntry`` does: a
        file at or past max-size is rotated before the next entry is written, so a file ends
        at the first whole entry at or past max-size."""
        entry, max_size = self.entry, self.max_size
        log.lines += lines
        log.written += lines * entry
        while lines:
            if max_size is not None and log.current >= max_size:
                self.rotate(log, plan)
            fits = lines if max_size is None else min(lines, -(-(max_size - log.current) // entry))
            start = log.current
            log.current += fits * entry
            plan.write(DATA, log.key(), start, fits * entry)
            # writeback: every page the batch touched, the last partial one again next time
            plan.writeback(DATA, round_up(log.current, PAGE) - start // PAGE * PAGE)
            lines -= fits

    def rotate(self, log: LogFile, plan: Plan) -> None:
        """``LogFile.rotate``: shift the kept files, the current one becomes ``.1`` (gzipped
        with compress); with max-file 1 it is deleted. Then a new, empty current file."""
        costs = self.costs
        log.rotations += 1
        renames = 1  # opening the new current file
        if self.max_file < 2:
            renames += 1  # unlink of the current file
        else:
            if len(log.kept) == self.max_file - 1:
                log.kept.pop()  # the oldest, unlinked
                renames += 1
            renames += len(log.kept) + 1  # .i -> .i+1 for each kept one, then the current -> .1
            size = log.current
            if self.compress:
                # compressFile: read .1, gzip it on a core, write .1.gz, unlink .1
                packed = round(size * self.spec.compressed_fraction)
                plan.read(DATA, log.key(), 0, size, size)
                plan.cpu(DATA, size / costs.gzip_compress_bandwidth)
                plan.write(DATA, log.key(compressed=True), 0, packed)
                plan.writeback(DATA, round_up(packed, PAGE))
                renames += 1
                size = packed
            log.kept.insert(0, size)
        plan.cpu(DATA, renames * costs.metadata_update)
        log.generation += 1
        log.current = 0

    # -- accounting ----------------------------------------------------------------------------
    def space_rows(self) -> list[dict]:
        """One row per container's logs, in the shape of ``Host.space`` (SIZE leaves them out)."""
        return [{"kind": "logs", "container": str(cid), "image": "", "size_bytes": log.held,
                 "virtual_bytes": log.held, "real_bytes": log.held}
                for cid, log in sorted(self.files.items())]

    def summary(self) -> dict:
        logs = [*self.files.values(), self.removed]
        return {"log_lines": sum(log.lines for log in logs),
                "log_written_bytes": sum(log.written for log in logs),
                "log_rotations": sum(log.rotations for log in logs)}
