"""Real programs' file I/O, read from ``strace -f -tt -T`` output, as operations to replay.

Every syscall line ends up in exactly one of three counts, by syscall name:

- ``replayed``: it becomes one :class:`TraceOp` (a :class:`sim.operation.Op` once its path is
  resolved in the container): opens, reads, writes, stats, truncates, unlinks, renames,
  mkdir/rmdir, symlinks, metadata changes, fsync, execve (the program's lookup);
- ``bookkeeping``: it only changes what later calls mean (``close``, ``dup``, ``lseek``,
  ``fcntl``, ``chdir``, ``clone``/``fork``, ``execve``'s close-on-exec);
- ``unusable``: nothing the storage driver would see (``brk``, ``futex``, sockets, ...), or
  file I/O this model has no operation for (``getdents64``, directory ``fsync``, ``link``;
  ``mmap`` of a file, whose pages come by page faults strace does not show), or I/O on
  descriptors that are not files (pipes, sockets, unknown). Reported, never dropped.

Descriptors are followed per process: ``-f`` children inherit (or, with ``CLONE_FILES``, share)
their parent's table, ``<unfinished ...>``/``resumed`` halves are joined, ``O_CLOEXEC``
descriptors close on ``execve``. Paths stay as the program named them (absolute, ``..`` kept):
the replay resolves them against the image, following its symbolic links.

Opens map onto the drivers' operations as overlayfs sees them: an open for writing is where
the copy-up happens (``write`` of 0 bytes); ``O_TRUNC`` is ``open_trunc`` (copy-up without
data); ``O_CREAT`` creates; a read-only open is the lookup (``stat``). fsync/fdatasync of a file
open for writing is a 0-byte synchronous write (the flush and journal commit; the data went
out with the writes). chmod/chown/utimes/xattrs are ``chmod``: a metadata change, which copies
the file up (or only its metadata, with metacopy).
"""
from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .operation import Op
from .errors import CowsimError
from .files import ReadError, check_regular
from .scenario import path_problem
from .units import MAX_FILE_SIZE


class TraceError(CowsimError):
    """A trace file that cannot be read at all."""


# What one trace may hold: it is read whole into memory (an operation costs about 300 bytes).
MAX_TRACE_CHARS = 2**30   # characters of (decompressed) text
MAX_LINE_CHARS = 2**20    # one line: strace prints strings cut at -s (32 by default) characters
MAX_TRACE_OPS = 4_000_000


@dataclass(slots=True)
class TraceOp:
    """One file operation of the trace. ``op``'s paths are absolute as the program named them
    (the replay resolves them in the image); its kind is an Op kind, or ``open_create`` (create,
    or open when the file exists)."""

    line: int
    start_s: float  # recorded start, seconds since the trace's first call
    end_s: float    # recorded end (start + the -T duration)
    label: str      # what the records call it: open, read, write, fsync, execve, ...
    op: Op
    writable: bool = False  # open_create: whether the open was for writing
    follow: bool = True     # resolve a symbolic link in the last component
    failed: bool = False    # it failed when recorded (replayed as the lookup that found out)


@dataclass
class ParsedTrace:
    path: str
    ops: list[TraceOp] = field(default_factory=list)
    lines: int = 0
    syscalls: int = 0
    events: int = 0  # "+++ exited", "--- SIGCHLD" lines: not syscalls
    joined: int = 0  # syscalls written on two lines (<unfinished ...> and resumed)
    unparsed: int = 0  # lines that are none of the above (blank ones too)
    replayed: Counter = field(default_factory=Counter)
    bookkeeping: Counter = field(default_factory=Counter)
    unusable: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)  # why lines were unusable
    recorded_s: float = 0.0  # from the first call's start to the last call's end

    @property
    def recorded_failures(self) -> int:
        """Replayed operations that failed when recorded (a replay that agrees fails them too)."""
        return sum(op.failed for op in self.ops)

    def summary(self) -> dict:
        return {"path": self.path, "lines": self.lines, "syscalls": self.syscalls, "events": self.events,
                "joined": self.joined, "unparsed": self.unparsed,
                "replayed": sum(self.replayed.values()), "bookkeeping": sum(self.bookkeeping.values()),
                "unusable": sum(self.unusable.values()), "recorded_s": self.recorded_s,
                "ops": len(self.ops), "recorded_failures": self.recorded_failures,
                "op_labels": dict(Counter(op.label for op in self.ops).most_common()),
                "replayed_by_syscall": dict(self.replayed.most_common()),
                "bookkeeping_by_syscall": dict(self.bookkeeping.most_common()),
                "unusable_by_syscall": dict(self.unusable.most_common()),
                "unusable_reasons": dict(self.reasons.most_common()),
                "read_bytes": sum(t.op.nbytes for t in self.ops if t.op.kind == "read"),
                "write_bytes": sum(t.op.nbytes for t in self.ops if t.op.kind in ("write", "append"))}


# -- lines ------------------------------------------------------------------------------------------
_LINE = re.compile(r"^(?:\[pid\s+(\d+)\]\s*|(\d+)\s+)?(\d+:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)\s+(.*)$")
_START = re.compile(r"^([a-z_][a-z0-9_]*)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_][a-z0-9_]*) resumed>\s?(.*)$")
_RETURN = re.compile(r"^\s*=\s*(.*?)(?:\s+<(\d+\.\d+)>)?$")
_UNFINISHED = " <unfinished ...>"


def _seconds(stamp: str) -> float | None:
    """Seconds of a -tt time of day or a -ttt epoch time; None for neither (``99:99:99``)."""
    if ":" not in stamp:
        value = float(stamp)  # -ttt: seconds since the epoch
        return value if value < 1e12 else None
    hours, minutes, seconds = stamp.split(":")
    if int(hours) > 23 or int(minutes) > 59 or float(seconds) >= 61:  # 60: a leap second
        return None
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def split_args(text: str) -> tuple[list[str], str] | None:
    """Top-level arguments of ``a, "b,c", {x=1, y=[2, 3]}) = 0 <...>`` and what follows the
    closing parenthesis; None when it never closes."""
    args, depth, start, i, quote = [], 0, 0, 0, False
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == '"':
                quote = False
        elif char == '"':
            quote = True
        elif char in "([{":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == ")":
            if depth == 0:
                last = text[start:i].strip()
                if last or args:
                    args.append(last)
                return args, text[i + 1:]
            depth -= 1
        elif char == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    return None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "\\": "\\", '"': '"'}


def unquote(text: str) -> str | None:
    """A C string as strace prints it; None when the argument is not a string (NULL, a number)."""
    if not text.startswith('"'):
        return None
    end = text.rfind('"')
    body, out, i = text[1:end], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt == "x":
            out.append(int(body[i + 2:i + 4], 16))
            i += 4
        elif nxt.isdigit():
            digits = re.match(r"[0-7]{1,3}", body[i + 1:]).group(0)
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        else:
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
    return out.decode("utf-8", "surrogateescape")


def _int(text: str) -> int | None:
    match = re.match(r"^(-?)(0x[0-9a-fA-F]+|0[0-7]+|\d+)", text.strip())
    if match is None:
        return None
    digits = match.group(2)
    base = 16 if digits.startswith("0x") else 8 if len(digits) > 1 and digits[0] == "0" else 10  # umask: 022
    return int(match.group(1) + digits, base)


# -- descriptors ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Description:
    """An open file description (shared by dup'ed and inherited descriptors)."""

    path: str | None  # None: not a file (pipe, socket, ...)
    offset: int = 0
    writable: bool = False
    append: bool = False
    sync: bool = False
    directory: bool = False


@dataclass(slots=True)
class Slot:
    description: Description
    cloexec: bool = False


class Process:
    def __init__(self, fds: dict[int, Slot], cwd: list[str]):
        self.fds = fds   # shared between threads (CLONE_FILES)
        self.cwd = cwd   # one-element list, shared with CLONE_FS


PSEUDO_ROOTS = ("/proc", "/sys", "/dev")  # mounted in every container, beside the storage driver
PSEUDO = tuple(root + "/" for root in PSEUDO_ROOTS)
_FORKS = ("clone", "clone3", "fork", "vfork")
_NEW_NON_FILE_FD = ("socket", "accept", "accept4", "eventfd", "eventfd2", "epoll_create", "epoll_create1",
                    "signalfd", "signalfd4", "timerfd_create", "inotify_init", "inotify_init1", "memfd_create",
                    "userfaultfd", "pidfd_open", "fanotify_init", "perf_event_open", "bpf", "io_uring_setup")
_STATS = {"stat": 0, "lstat": 0, "stat64": 0, "lstat64": 0, "access": 0, "readlink": 0, "statfs": 0,
          "newfstatat": 1, "fstatat64": 1, "statx": 1, "faccessat": 1, "faccessat2": 1, "readlinkat": 1,
          "getxattr": 0, "lgetxattr": 0, "listxattr": 0, "llistxattr": 0}
_NO_FOLLOW = {"lstat", "lstat64", "readlink", "readlinkat", "lgetxattr", "llistxattr"}
_META_PATH = {"chmod": 0, "chown": 0, "lchown": 0, "utime": 0, "utimes": 0, "setxattr": 0, "lsetxattr": 0,
              "removexattr": 0, "lremovexattr": 0, "fchmodat": 1, "fchownat": 1, "futimesat": 1, "utimensat": 1}
_META_FD = ("fchmod", "fchown", "fsetxattr", "fremovexattr")
_READS = ("read", "readv", "pread64", "preadv", "preadv2")
_WRITES = ("write", "writev", "pwrite64", "pwritev", "pwritev2")


class TraceParser:
    def __init__(self, path: str, cwd: str = "/"):
        self.trace = ParsedTrace(path)
        self.processes: dict[int, Process] = {}
        self.pending_forks: dict[int, str] = {}  # parent pid -> flags of a fork not yet returned
        self.unfinished: dict[int, tuple[int, float, str, str]] = {}  # pid -> (line, start, name, args so far)
        self.cwd = cwd
        self.first: float | None = None
        self.previous = 0.0
        self.last_end = 0.0
        self.day = 0.0

    # -- bookkeeping ---------------------------------------------------------------------------
    def process(self, pid: int) -> Process:
        proc = self.processes.get(pid)
        if proc is None:
            if self.pending_forks:  # a child that runs before its parent's clone returns
                parent = next(reversed(self.pending_forks))
                proc = self._child(self.processes.get(parent), self.pending_forks.pop(parent))
            else:
                proc = Process({}, [self.cwd])
            self.processes[pid] = proc
        return proc

    def _child(self, parent: Process | None, flags: str) -> Process:
        if parent is None:
            return Process({}, [self.cwd])
        fds = parent.fds if "CLONE_FILES" in flags or "CLONE_THREAD" in flags else {
            fd: Slot(slot.description, slot.cloexec) for fd, slot in parent.fds.items()}
        cwd = parent.cwd if "CLONE_FS" in flags else [parent.cwd[0]]
        return Process(fds, cwd)

    def resolve(self, proc: Process, dirfd: str | None, name: str) -> str | None:
        """The absolute path a call names (lexically joined; symlinks are the replay's job)."""
        if name.startswith("/"):
            return name
        if dirfd is None or dirfd.startswith("AT_FDCWD"):
            base = proc.cwd[0]
        else:
            fd = _int(dirfd)
            slot = proc.fds.get(fd) if fd is not None else None
            if slot is None or slot.description.path is None:
                return None
            base = slot.description.path
        return f"{base.rstrip('/')}/{name}" if name else base

    # -- lines ---------------------------------------------------------------------------------
    def feed(self, number: int, line: str) -> None:
        self.trace.lines += 1
        match = _LINE.match(line.rstrip("\n"))
        if match is None:
            self.trace.unparsed += 1
            return
        pid = int(match.group(1) or match.group(2) or 0)
        stamp = _seconds(match.group(3))
        if stamp is None:
            raise TraceError(f"{self.trace.path}:{number}: {match.group(3)!r} is not a time of day (-tt) or "
                             f"since the epoch (-ttt)")
        if self.first is None:
            self.first = stamp
        if ":" in match.group(3) and stamp < self.previous - 43200:
            self.day += 86400.0  # the trace ran past midnight
        self.previous = stamp
        start = stamp + self.day - self.first
        rest = match.group(4)
        if rest.startswith(("+++", "---")):
            self.trace.events += 1
            return
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            begun = self.unfinished.pop(pid, None)
            name = resumed.group(1)
            if begun is None or begun[2] != name:
                self._unusable(name, "resumed without its start")
                self.trace.syscalls += 1
                return
            number, start, name, head = begun
            rest = f"{name}({head}{resumed.group(2)}"
            self.trace.joined += 1
        elif rest.endswith(_UNFINISHED):
            start_match = _START.match(rest[: -len(_UNFINISHED)])
            if start_match is None:
                self.trace.unparsed += 1
                return
            name = start_match.group(1)
            self.process(pid)
            self.unfinished[pid] = (number, start, name, start_match.group(2))
            if name in _FORKS:
                self.pending_forks[pid] = start_match.group(2)
            return
        call = _START.match(rest)
        if call is None:
            self.trace.unparsed += 1
            return
        self.trace.syscalls += 1
        name = call.group(1)
        split = split_args(call.group(2))
        returned = _RETURN.match(split[1]) if split is not None else None
        if split is None or returned is None:
            self._unusable(name, "cut short")
            return
        duration = float(returned.group(2)) if returned.group(2) else 0.0
        if duration > 86400 * 365:
            raise TraceError(f"{self.trace.path}:{number}: a call that took {duration:g} s")
        self.last_end = max(self.last_end, start + duration)
        result_text = returned.group(1)
        result = _int(result_text)
        failed = result is None or (result < 0 and result_text.startswith("-1") and " E" in result_text)
        context = (number, start, start + duration, failed)
        self.call(pid, name, split[0], result, failed, context)

    def _unusable(self, name: str, reason: str) -> None:
        self.trace.unusable[name] += 1
        self.trace.reasons[reason] += 1

    def _op(self, context, name: str, label: str, kind: str, path: str, **fields) -> None:
        number, start, end, failed = context
        if path.startswith(PSEUDO) or path.rstrip("/") in PSEUDO_ROOTS:
            return self._unusable(name, "a pseudo filesystem (/proc, /sys, /dev): not the storage driver's")
        if failed:
            # It failed where it was recorded: replay the path walk that found out, not the change.
            kind, fields = "stat", {"follow": fields.get("follow", True), "failed": True}
        if path_problem(path) or path_problem(fields.get("target") or ""):
            return self._unusable(name, "a path longer than PATH_MAX or a name longer than NAME_MAX")
        offset, nbytes = fields.pop("offset", 0), fields.pop("nbytes", 0)
        if not 0 <= offset + nbytes <= MAX_FILE_SIZE:
            raise TraceError(f"{self.trace.path}:{number}: {label} of {nbytes:,} bytes at offset {offset:,}: "
                             f"beyond {MAX_FILE_SIZE:,} bytes (1 TiB), the largest file simulated")
        if len(self.trace.ops) >= MAX_TRACE_OPS:
            raise TraceError(f"{self.trace.path}:{number}: more than {MAX_TRACE_OPS:,} file operations to replay; "
                             f"cut the trace")
        op = Op(kind, path, offset, nbytes, fields.pop("target", ""), fields.pop("sync", False))
        self.trace.ops.append(TraceOp(number, start, end, label, op, **fields))
        self.trace.replayed[name] += 1

    def _file(self, proc: Process, fd_text: str) -> Description | None:
        fd = _int(fd_text) if fd_text else None
        slot = proc.fds.get(fd) if fd is not None else None
        if slot is None or slot.description.path is None:
            return None
        return slot.description

    # -- one syscall ---------------------------------------------------------------------------
    def call(self, pid: int, name: str, args: list[str], result: int | None, failed: bool, context) -> None:
        """One finished syscall, handed to the handler of its name (see :data:`_SYSCALLS`)."""
        if name in _FORKS:  # the fork finished: a child that shows up now is not this call's
            self.pending_forks.pop(pid, None)
        handler = _SYSCALLS.get(name, TraceParser._not_file_io)
        return handler(self, self.process(pid), name, args, result, failed, context)

    # Every handler takes (process, syscall name, arguments, result, failed, context), adds an
    # operation, keeps its bookkeeping (descriptors, offsets, working directory, forks) or says
    # why the call cannot be replayed.
    def _not_file_io(self, proc: Process, name: str, args, result, failed, context) -> None:
        if name in _NEW_NON_FILE_FD and result is not None and not failed:
            proc.fds.pop(result, None)
        return self._unusable(name, "not file I/O")

    def _no_model(self, proc: Process, name: str, args, result, failed, context) -> None:
        return self._unusable(name, "no operation of the storage model")

    def _hard_link(self, proc: Process, name: str, args, result, failed, context) -> None:
        return self._unusable(name, "hard links have no operation in the storage model")

    def _stat(self, proc: Process, name: str, args, result, failed, context) -> None:
        index = _STATS[name]
        text = unquote(_arg(args, index))
        if index == 1 and text == "" and "AT_EMPTY_PATH" in ",".join(args):
            return self._unusable(name, "fstat of an open file: no lookup")
        path = self.resolve(proc, _arg(args, 0) if index else None, text) if text is not None else None
        if path is None:
            return self._unusable(name, "path relative to an unknown descriptor")
        follow = name not in _NO_FOLLOW and "AT_SYMLINK_NOFOLLOW" not in ",".join(args)
        return self._op(context, name, "stat", "stat", path, follow=follow)

    def _mmap(self, proc: Process, name: str, args, result, failed, context) -> None:
        if self._file(proc, _arg(args, 4)) is not None:
            return self._unusable(name, "a mapped file: its pages come by page faults strace does not show")
        return self._not_file_io(proc, name, args, result, failed, context)

    def _seek(self, proc: Process, name: str, args, result, failed, context) -> None:
        description = self._file(proc, _arg(args, 0))
        if description is None or failed or result is None:
            return self._unusable(name, "descriptor not a file")
        description.offset = result
        self.trace.bookkeeping[name] += 1
        return None

    def _fsync(self, proc: Process, name: str, args, result, failed, context) -> None:
        description = self._file(proc, _arg(args, 0))
        if description is None or not description.writable:
            return self._unusable(name, "fsync of a directory or a read-only descriptor")
        return self._op(context, name, "fsync", "write", description.path, offset=description.offset,
                        sync=True, follow=False)

    def _truncate(self, proc: Process, name: str, args, result, failed, context) -> None:
        path, length = unquote(_arg(args, 0)), _int(_arg(args, 1))
        if path is None or length is None:
            return self._unusable(name, "cut short")
        return self._op(context, name, "truncate", "truncate", self.resolve(proc, None, path), nbytes=length)

    def _ftruncate(self, proc: Process, name: str, args, result, failed, context) -> None:
        description = self._file(proc, _arg(args, 0))
        if description is None:
            return self._unusable(name, "descriptor not a file")
        return self._op(context, name, "truncate", "truncate", description.path, nbytes=_int(_arg(args, 1)) or 0,
                        follow=False)

    def _unlink_or_dir(self, proc: Process, name: str, args, result, failed, context) -> None:
        at = name.endswith("at")
        text = unquote(_arg(args, 1 if at else 0))
        path = self.resolve(proc, _arg(args, 0) if at else None, text) if text is not None else None
        if path is None:
            return self._unusable(name, "path relative to an unknown descriptor")
        kind = {"unlink": "unlink", "rmdir": "rmdir", "mkdir": "mkdir", "mkdirat": "mkdir"}.get(name)
        if name == "unlinkat":
            kind = "rmdir" if "AT_REMOVEDIR" in _arg(args, 2) else "unlink"
        return self._op(context, name, kind, kind, path, follow=False)

    def _rename(self, proc: Process, name: str, args, result, failed, context) -> None:
        at = name != "rename"
        old, new = unquote(_arg(args, 1 if at else 0)), unquote(_arg(args, 3 if at else 1))
        source = self.resolve(proc, _arg(args, 0) if at else None, old) if old is not None else None
        target = self.resolve(proc, _arg(args, 2) if at else None, new) if new is not None else None
        if source is None or target is None:
            return self._unusable(name, "path relative to an unknown descriptor")
        if "RENAME_EXCHANGE" in _arg(args, 4):
            return self._unusable(name, "RENAME_EXCHANGE has no operation in the storage model")
        if not failed:  # open descriptors follow the file (or directory) to its new name
            for description in {id(slot.description): slot.description for proc_ in self.processes.values()
                                for slot in proc_.fds.values()}.values():
                if description.path == source or (description.path or "").startswith(source.rstrip("/") + "/"):
                    description.path = target + description.path[len(source):]
        return self._op(context, name, "rename", "rename", source, target=target, follow=False)

    def _symlink(self, proc: Process, name: str, args, result, failed, context) -> None:
        at = name == "symlinkat"
        target = unquote(_arg(args, 0))
        text = unquote(_arg(args, 2 if at else 1))
        path = self.resolve(proc, _arg(args, 1) if at else None, text) if text is not None else None
        if path is None or target is None:
            return self._unusable(name, "path relative to an unknown descriptor")
        return self._op(context, name, "symlink", "create", path, nbytes=len(target.encode()), target=target,
                        follow=False)

    def _meta_path(self, proc: Process, name: str, args, result, failed, context) -> None:
        index = _META_PATH[name]
        text = unquote(_arg(args, index))
        if text is None and name == "utimensat":  # utimensat(fd, NULL, ...): futimens
            description = self._file(proc, _arg(args, 0))
            path = description.path if description is not None else None
        else:
            path = self.resolve(proc, _arg(args, 0) if index else None, text) if text is not None else None
        if path is None:
            return self._unusable(name, "path relative to an unknown descriptor")
        follow = name not in ("lchown", "lsetxattr", "lremovexattr") and "AT_SYMLINK_NOFOLLOW" not in ",".join(args)
        return self._op(context, name, "chmod", "chmod", path, follow=follow)

    def _meta_fd(self, proc: Process, name: str, args, result, failed, context) -> None:
        description = self._file(proc, _arg(args, 0))
        if description is None:
            return self._unusable(name, "descriptor not a file")
        return self._op(context, name, "chmod", "chmod", description.path, follow=False)

    def _close(self, proc: Process, name: str, args, result, failed, context) -> None:
        proc.fds.pop(_int(_arg(args, 0)), None)
        self.trace.bookkeeping[name] += 1
        return None

    def _dup(self, proc: Process, name: str, args, result, failed, context) -> None:
        slot = proc.fds.get(_int(_arg(args, 0)))
        if not failed and result is not None:
            if slot is None:
                proc.fds.pop(result, None)
            else:
                cloexec = "O_CLOEXEC" in _arg(args, 2) or "F_DUPFD_CLOEXEC" in _arg(args, 1)
                proc.fds[result] = Slot(slot.description, cloexec)
        self.trace.bookkeeping[name] += 1
        return None

    def _fcntl(self, proc: Process, name: str, args, result, failed, context) -> None:
        if "F_DUPFD" in _arg(args, 1):
            return self._dup(proc, name, args, result, failed, context)
        slot = proc.fds.get(_int(_arg(args, 0)))
        if slot is not None and "F_SETFD" in _arg(args, 1):
            slot.cloexec = "FD_CLOEXEC" in _arg(args, 2)
        if slot is not None and "F_SETFL" in _arg(args, 1):
            slot.description.append = "O_APPEND" in _arg(args, 2)
        self.trace.bookkeeping[name] += 1
        return None

    def _chdir(self, proc: Process, name: str, args, result, failed, context) -> None:
        if not failed:
            if name == "chdir":
                text = unquote(_arg(args, 0))
                if text is not None:
                    proc.cwd[0] = self.resolve(proc, None, text)
            else:
                description = self._file(proc, _arg(args, 0))
                if description is not None:
                    proc.cwd[0] = description.path
        self.trace.bookkeeping[name] += 1
        return None

    def _fork(self, proc: Process, name: str, args, result, failed, context) -> None:
        if not failed and result is not None and result > 0 and result not in self.processes:
            self.processes[result] = self._child(proc, ",".join(args))
        self.trace.bookkeeping[name] += 1
        return None

    def _execve(self, proc: Process, name: str, args, result, failed, context) -> None:
        text = unquote(_arg(args, 0))
        if failed:
            if text is None:
                return self._unusable(name, "cut short")
            return self._op(context, name, "execve", "stat", self.resolve(proc, None, text))
        for fd in [fd for fd, slot in proc.fds.items() if slot.cloexec]:
            del proc.fds[fd]
        path = self.resolve(proc, None, text) if text is not None else None
        if path is None:
            self.trace.bookkeeping[name] += 1
            return None
        # The lookup of the program (its pages come by page faults, which strace does not show).
        return self._op(context, name, "execve", "stat", path)

    def _pipe(self, proc: Process, name: str, args, result, failed, context) -> None:
        for fd in re.findall(r"\d+", args[-1] if name == "socketpair" and args else _arg(args, 0)):
            proc.fds.pop(int(fd), None)
        return self._unusable(name, "not file I/O")

    def _open(self, proc: Process, name: str, args: list[str], result, failed, context) -> None:
        at = name in ("openat", "openat2")
        text = unquote(args[1] if at else args[0]) if len(args) > (1 if at else 0) else None
        if text is None:
            self._unusable(name, "cut short")
            return
        path = self.resolve(proc, args[0] if at else None, text)
        if path is None:
            self._unusable(name, "path relative to an unknown descriptor")
            return
        flags = "O_CREAT|O_WRONLY|O_TRUNC" if name == "creat" else ",".join(args[2 if at else 1:])
        writable = "O_WRONLY" in flags or "O_RDWR" in flags
        if failed or result is None:
            # The kernel walked the path and refused: a (negative) lookup.
            self._op(context, name, "open", "stat", path, follow="O_NOFOLLOW" not in flags)
            return
        if "O_TMPFILE" in flags:
            proc.fds[result] = Slot(Description(None), "O_CLOEXEC" in flags)
            self._unusable(name, "O_TMPFILE has no operation in the storage model")
            return
        description = Description(path, 0, writable, "O_APPEND" in flags, "O_SYNC" in flags or "O_DSYNC" in flags,
                                  "O_DIRECTORY" in flags)
        proc.fds[result] = Slot(description, "O_CLOEXEC" in flags)
        follow = "O_NOFOLLOW" not in flags
        if "O_CREAT" in flags and ("O_EXCL" in flags or "O_TRUNC" in flags):
            self._op(context, name, "open", "create", path, follow=follow)
        elif "O_CREAT" in flags:
            self._op(context, name, "open", "open_create", path, writable=writable, follow=follow)
        elif "O_TRUNC" in flags and writable:
            self._op(context, name, "open", "open_trunc", path, follow=follow)
        elif writable:
            self._op(context, name, "open", "write", path, follow=follow)  # copy-up at open
        else:
            self._op(context, name, "open", "stat", path, follow=follow)

    def _io(self, proc: Process, name: str, args: list[str], result, failed, context) -> None:
        description = self._file(proc, args[0] if args else "")
        if description is None:
            self._unusable(name, "descriptor not a file (pipe, socket, terminal or unknown)")
            return
        if failed or result is None or description.directory:
            self._unusable(name, "failed")
            return
        positional = name.startswith("p")
        offset = (_int(args[3]) or 0) if positional and len(args) > 3 else description.offset
        if not positional:
            description.offset += result
        if name in _READS:
            self._op(context, name, "read", "read", description.path, offset=offset, nbytes=result, follow=False)
        elif description.append and not positional:
            self._op(context, name, "write", "append", description.path, nbytes=result, sync=description.sync,
                     follow=False)
        else:
            self._op(context, name, "write", "write", description.path, offset=offset, nbytes=result,
                     sync=description.sync, follow=False)

    def finish(self) -> ParsedTrace:
        for _number, _start, name, _head in self.unfinished.values():
            self.trace.syscalls += 1
            self._unusable(name, "never finished (the process ended or the trace was cut)")
        self.trace.recorded_s = self.last_end
        return self.trace


class Resolver:
    """Absolute paths to the image's relative ones, following symbolic links as the kernel
    does (``/lib`` -> ``usr/lib`` in a merged-/usr Debian); the links are the image's, as the
    replay creates, moves and removes them."""

    MAX_LINKS = 40  # the kernel's limit before ELOOP

    def __init__(self, symlinks: dict[str, str]):
        self.image_links = symlinks
        self.changed: dict[str, str | None] = {}  # path -> target, or None: no longer a link

    def link(self, path: str) -> str | None:
        if path in self.changed:
            return self.changed[path]
        return self.image_links.get(path)

    def resolve(self, path: str, follow: bool = True) -> str:
        pending = [p for p in path.split("/") if p][::-1]
        parts: list[str] = []
        hops = 0
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":
                if parts:
                    parts.pop()
                continue
            candidate = "/".join(parts + [name])
            target = self.link(candidate) if (pending or follow) and hops < self.MAX_LINKS else None
            if target is None:
                parts.append(name)
                continue
            hops += 1
            if target.startswith("/"):
                parts = []
            pending.extend([p for p in target.split("/") if p][::-1])
        return "/".join(parts)

    def created(self, path: str, target: str | None) -> None:
        self.changed[path] = target

    def moved(self, source: str, target: str) -> None:
        self.changed[target] = self.link(source)
        self.changed[source] = None



def _arg(args: list[str], index: int) -> str:
    """The ``index``-th argument of a call, or "" where strace printed fewer."""
    return args[index] if index < len(args) else ""


# Syscall name -> handler. A name not here is not file I/O (sockets, signals, memory, time).
_SYSCALLS = {
    **dict.fromkeys(("open", "openat", "openat2", "creat"), TraceParser._open),
    **dict.fromkeys(_STATS, TraceParser._stat),
    **dict.fromkeys(("fstat", "fstat64", "fstatfs", "flock", "fadvise64", "fallocate", "sync_file_range",
                     "readahead", "getdents", "getdents64", "fgetxattr", "flistxattr"), TraceParser._no_model),
    **dict.fromkeys(_READS + _WRITES, TraceParser._io),
    **dict.fromkeys(("mmap", "mmap2"), TraceParser._mmap),
    **dict.fromkeys(("lseek", "llseek", "_llseek"), TraceParser._seek),
    **dict.fromkeys(("fsync", "fdatasync"), TraceParser._fsync),
    **dict.fromkeys(("truncate", "truncate64"), TraceParser._truncate),
    **dict.fromkeys(("ftruncate", "ftruncate64"), TraceParser._ftruncate),
    **dict.fromkeys(("unlink", "unlinkat", "rmdir", "mkdir", "mkdirat"), TraceParser._unlink_or_dir),
    **dict.fromkeys(("rename", "renameat", "renameat2"), TraceParser._rename),
    **dict.fromkeys(("symlink", "symlinkat"), TraceParser._symlink),
    **dict.fromkeys(_META_PATH, TraceParser._meta_path),
    **dict.fromkeys(_META_FD, TraceParser._meta_fd),
    "close": TraceParser._close,
    **dict.fromkeys(("dup", "dup2", "dup3"), TraceParser._dup),
    "fcntl": TraceParser._fcntl,
    **dict.fromkeys(("chdir", "fchdir"), TraceParser._chdir),
    **dict.fromkeys(_FORKS, TraceParser._fork),
    **dict.fromkeys(("execve", "execveat"), TraceParser._execve),
    **dict.fromkeys(("pipe", "pipe2", "socketpair"), TraceParser._pipe),
    **dict.fromkeys(("link", "linkat"), TraceParser._hard_link),
}


def parse_trace(path: str | Path, cwd: str = "/") -> ParsedTrace:
    """Parse ``strace -f -tt -T`` output (plain or ``.gz``); paths relative to the first
    process's working directory ``cwd``."""
    path = Path(path)
    try:
        check_regular(path, what="trace file")
    except ReadError as error:
        raise TraceError(str(error)) from None
    return _parse_cached(str(path), path.stat().st_mtime_ns, cwd)


@lru_cache(maxsize=8)
def _parse_cached(name: str, _mtime: int, cwd: str) -> ParsedTrace:
    path = Path(name)
    parser = TraceParser(name, cwd)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as handle:
            number, read = 0, 0
            while line := handle.readline(MAX_LINE_CHARS + 1):
                number += 1
                read += len(line)
                if len(line) > MAX_LINE_CHARS:
                    raise TraceError(f"{name}:{number}: a line longer than {MAX_LINE_CHARS:,} characters")
                if read > MAX_TRACE_CHARS:
                    raise TraceError(f"{name}:{number}: more than {MAX_TRACE_CHARS:,} characters of trace; cut it")
                parser.feed(number, line)
    except FileNotFoundError:
        raise TraceError(f"{name}: no such trace file") from None
    except (OSError, EOFError) as error:
        raise TraceError(f"{name}: cannot read the trace: {' '.join(str(error).split())}") from None
    trace = parser.finish()
    if trace.syscalls == 0:
        raise TraceError(f"{name}: no syscall lines (expected the output of strace -f -tt -T)")
    return trace


__all__ = ["ParsedTrace", "Resolver", "TraceOp", "TraceError", "parse_trace", "split_args", "unquote"]
