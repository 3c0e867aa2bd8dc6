"""Trace replay: strace -f -tt -T parsing (descriptors, forks, unfinished calls), every syscall
line accounted for, symlink resolution, and the replay's copy-ups under every driver."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim import api
from sim.cli import main
from sim.drivers import REGISTRY
from sim.records import SETUP_OPS
from sim.trace import Resolver, TraceError, parse_trace, split_args, unquote

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / "scenarios" / "data" / "debian-bookworm.csv.gz"
DPKG = ROOT / "scenarios" / "data" / "dpkg-install-hello.strace.gz"
PYTHON = ROOT / "scenarios" / "data" / "python3-startup.strace.gz"
SHIPPED = pytest.mark.parametrize("shipped", [DPKG, PYTHON], ids=["dpkg", "python3"])

TRACE = r'''100 10:00:00.000000 execve("/usr/bin/prog", ["prog"], 0x7ffd0 /* 3 vars */) = 0 <0.000100>
100 10:00:00.001000 openat(AT_FDCWD, "/etc/config", O_RDONLY|O_CLOEXEC) = 3 <0.000010>
100 10:00:00.002000 read(3, "abc, (x)"..., 4096) = 4096 <0.000010>
100 10:00:00.003000 read(3, "", 4096) = 100 <0.000010>
100 10:00:00.004000 lseek(3, 10, SEEK_SET) = 10 <0.000005>
100 10:00:00.005000 read(3, "x", 5) = 5 <0.000010>
100 10:00:00.006000 pread64(3, "y", 7, 2000) = 7 <0.000010>
100 10:00:00.007000 openat(AT_FDCWD, "/var/log/app.log", O_WRONLY|O_CREAT|O_APPEND, 0644) = 4 <0.000010>
100 10:00:00.008000 write(4, "hello\n", 6) = 6 <0.000010>
100 10:00:00.009000 fsync(4) = 0 <0.001000>
100 10:00:00.011000 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>
101 10:00:00.012000 write(4, "child\n", 6) = 6 <0.000010>
100 10:00:00.012500 <... clone resumed>, child_tidptr=0x7f) = 101 <0.000300>
101 10:00:00.013000 execve("/bin/helper", ["helper"], 0x7ffd0 /* 3 vars */) = 0 <0.000100>
101 10:00:00.014000 read(3, "z", 10) = 10 <0.000010>
101 10:00:00.015000 write(4, "x", 1) = 1 <0.000010>
101 10:00:00.016000 +++ exited with 0 +++
100 10:00:00.017000 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=101} ---
100 10:00:00.018000 chdir("/srv/data") = 0 <0.000010>
100 10:00:00.019000 openat(AT_FDCWD, "db/new.tmp", O_RDWR|O_CREAT|O_EXCL, 0600) = 5 <0.000020>
100 10:00:00.020000 pwrite64(5, "\x00\x01", 8192, 0) = 8192 <0.000020>
100 10:00:00.021000 fdatasync(5) = 0 <0.002000>
100 10:00:00.024000 dup2(5, 7) = 7 <0.000005>
100 10:00:00.025000 close(5) = 0 <0.000005>
100 10:00:00.026000 ftruncate(7, 4096) = 0 <0.000010>
100 10:00:00.027000 rename("db/new.tmp", "db/main") = 0 <0.000020>
100 10:00:00.028000 openat(AT_FDCWD, "/srv/data/db", O_RDONLY|O_DIRECTORY) = 8 <0.000010>
100 10:00:00.029000 fsync(8) = 0 <0.000500>
100 10:00:00.030000 openat(8, "main", O_WRONLY|O_TRUNC) = 9 <0.000010>
100 10:00:00.031000 unlink("/etc/old") = -1 ENOENT (No such file or directory) <0.000010>
100 10:00:00.032000 mkdirat(AT_FDCWD, "cache", 0755) = 0 <0.000010>
100 10:00:00.033000 unlinkat(AT_FDCWD, "cache", AT_REMOVEDIR) = 0 <0.000010>
100 10:00:00.034000 newfstatat(AT_FDCWD, "/etc/config", {st_mode=S_IFREG|0644, st_size=5000, ...}, 0) = 0 <0.000010>
100 10:00:00.035000 newfstatat(9, "", {st_mode=S_IFREG|0644, st_size=0, ...}, AT_EMPTY_PATH) = 0 <0.000005>
100 10:00:00.036000 read(0, "input", 5) = 5 <0.000010>
100 10:00:00.037000 openat(AT_FDCWD, "/etc/config", O_RDWR) = 10 <0.000010>
100 10:00:00.038000 write(10, "patched", 7) = 7 <0.000010>
100 10:00:00.039000 fsync(7) = 0 <0.000400>
100 10:00:00.040000 fchmod(10, 0600) = 0 <0.000010>
100 10:00:00.041000 openat(AT_FDCWD, "/etc/weird\"name\n", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000010>
100 10:00:00.042000 brk(NULL) = 0x55d0 <0.000001>
100 10:00:00.043000 exit_group(0) = ?
100 10:00:00.044000 +++ exited with 0 +++
'''

EXPECTED = [  # (label, kind, path, offset, nbytes, sync, failed)
    ("execve", "stat", "/usr/bin/prog", 0, 0, False, False),
    ("open", "stat", "/etc/config", 0, 0, False, False),
    ("read", "read", "/etc/config", 0, 4096, False, False),
    ("read", "read", "/etc/config", 4096, 100, False, False),
    ("read", "read", "/etc/config", 10, 5, False, False),        # after lseek
    ("read", "read", "/etc/config", 2000, 7, False, False),      # pread64 at its own offset
    ("open", "open_create", "/var/log/app.log", 0, 0, False, False),
    ("write", "append", "/var/log/app.log", 0, 6, False, False),  # O_APPEND
    ("fsync", "write", "/var/log/app.log", 6, 0, True, False),
    ("write", "append", "/var/log/app.log", 0, 6, False, False),  # the child, on the inherited fd 4
    ("execve", "stat", "/bin/helper", 0, 0, False, False),
    ("write", "append", "/var/log/app.log", 0, 1, False, False),  # fd 3 closed on exec, fd 4 not
    ("open", "create", "/srv/data/db/new.tmp", 0, 0, False, False),  # relative to the new cwd
    ("write", "write", "/srv/data/db/new.tmp", 0, 8192, False, False),
    ("fsync", "write", "/srv/data/db/new.tmp", 0, 0, True, False),
    ("truncate", "truncate", "/srv/data/db/new.tmp", 0, 4096, False, False),  # through the dup
    ("rename", "rename", "/srv/data/db/new.tmp", 0, 0, False, False),
    ("open", "stat", "/srv/data/db", 0, 0, False, False),
    ("open", "open_trunc", "/srv/data/db/main", 0, 0, False, False),  # relative to a dirfd
    ("unlink", "stat", "/etc/old", 0, 0, False, True),  # failed when recorded: only the lookup
    ("mkdir", "mkdir", "/srv/data/cache", 0, 0, False, False),
    ("rmdir", "rmdir", "/srv/data/cache", 0, 0, False, False),
    ("stat", "stat", "/etc/config", 0, 0, False, False),
    ("open", "write", "/etc/config", 0, 0, False, False),  # open for writing: the copy-up
    ("write", "write", "/etc/config", 0, 7, False, False),
    ("fsync", "write", "/srv/data/db/main", 0, 0, True, False),  # fd 7 followed the rename
    ("chmod", "chmod", "/etc/config", 0, 0, False, False),
    ("open", "stat", '/etc/weird"name\n', 0, 0, False, True),
]


@pytest.fixture
def small_trace(tmp_path):
    path = tmp_path / "prog.strace"
    path.write_text(TRACE)
    return path


def test_parser_follows_descriptors_processes_and_offsets(small_trace):
    trace = parse_trace(small_trace)
    got = [(t.label, t.op.kind, t.op.path, t.op.offset, t.op.nbytes, t.op.sync, t.failed) for t in trace.ops]
    assert got == EXPECTED
    assert trace.ops[16].op.target == "/srv/data/db/main"
    assert dict(trace.unusable) == {"read": 2, "fsync": 1, "newfstatat": 1, "brk": 1, "exit_group": 1}
    assert dict(trace.bookkeeping) == {"lseek": 1, "clone": 1, "dup2": 1, "close": 1, "chdir": 1}
    assert (trace.events, trace.joined, trace.unparsed) == (3, 1, 0)
    # Recorded timing: each operation keeps its start and its -T duration.
    assert trace.ops[9].start_s == pytest.approx(0.012) and trace.ops[8].end_s == pytest.approx(0.010)
    assert trace.recorded_s == pytest.approx(0.043)  # the last call, exit_group, starts at 43 ms


def every_line_accounted(trace) -> None:
    assert trace.syscalls == (sum(trace.replayed.values()) + sum(trace.bookkeeping.values())
                              + sum(trace.unusable.values()))
    assert trace.lines == trace.syscalls + trace.joined + trace.events + trace.unparsed
    assert len(trace.ops) == sum(trace.replayed.values())


def test_every_line_of_the_small_trace_is_accounted_for(small_trace):
    every_line_accounted(parse_trace(small_trace))


@SHIPPED
def test_shipped_trace_every_file_operation_accounted_for(shipped):
    trace = parse_trace(shipped)
    assert shipped.stat().st_size < 512 * 1024
    every_line_accounted(trace)
    assert trace.unparsed == 0 and trace.syscalls > 1000


def test_dpkg_file_syscalls_are_replayed():
    trace = parse_trace(DPKG)
    for name in ("openat", "read", "write", "rename", "fsync", "ftruncate", "unlink", "mkdir", "fchmod"):
        assert trace.replayed[name] > 0, name


def test_split_args_and_unquote():
    args, rest = split_args('3, "a,b\\")", {x=1, y=[2, 3]}, NULL) = 0 <0.1>')
    assert args == ['3', '"a,b\\")"', '{x=1, y=[2, 3]}', 'NULL'] and rest == " = 0 <0.1>"
    assert unquote('"a\\x41\\101\\n\\""') == 'aAA\n"'
    assert unquote("NULL") is None
    assert split_args('3, "unterminated') is None


def test_resolver_follows_links_like_the_kernel():
    resolver = Resolver({"lib": "usr/lib", "usr/lib/python3": "python3.11", "etc/alt": "/usr/bin/mawk",
                         "loop": "loop"})
    assert resolver.resolve("/lib/x86_64/libc.so.6") == "usr/lib/x86_64/libc.so.6"
    assert resolver.resolve("/lib/python3/os.py") == "usr/lib/python3.11/os.py"
    assert resolver.resolve("/etc/alt") == "usr/bin/mawk"
    assert resolver.resolve("/etc/alt", follow=False) == "etc/alt"
    assert resolver.resolve("/usr/./bin/../lib/") == "usr/lib"
    assert resolver.resolve("/loop") == "loop"  # gives up after 40 links, as ELOOP would
    resolver.moved("lib", "lib2")
    assert resolver.resolve("/lib/x") == "lib/x" and resolver.resolve("/lib2/x") == "usr/lib/x"


def test_unreadable_traces_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.strace"
    empty.write_text("hello\n")
    with pytest.raises(TraceError, match="no syscall lines"):
        parse_trace(empty)
    runner = CliRunner()
    for path in (empty, tmp_path / "missing.strace"):
        result = runner.invoke(main, ["trace", "inspect", str(path)])
        assert result.exit_code == 2 and result.output.startswith("cowsim: error: ") and result.output.count("\n") == 1


def test_trace_inspect_cli(small_trace):
    result = CliRunner().invoke(main, ["trace", "inspect", str(small_trace), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["replayed"] == len(EXPECTED) and report["recorded_failures"] == 2
    assert report["unusable_by_syscall"]["read"] == 2
    text = CliRunner().invoke(main, ["trace", "inspect", str(small_trace)])
    assert text.exit_code == 0 and "unusable because" in text.output


def small_image(tmp_path) -> Path:
    listing = tmp_path / "small.csv"
    listing.write_text("layer,path,kind,size,mode,target\n"
                       "0,etc/config,file,5000,0644,\n0,usr/bin/prog,file,100,0755,\n"
                       "0,usr/bin/helper,file,300,0755,\n0,bin,symlink,7,0777,usr/bin\n")
    return listing


def replay(tmp_path, trace, driver="overlay2", **workload):
    scenario = {"name": "replay", "driver": {"name": driver}, "image": {"from": str(small_image(tmp_path))},
                "workload": {"kind": "trace", "path": str(trace), **workload}}
    return api.run_scenario(scenario)


def test_replay_copies_up_what_the_program_writes(tmp_path, small_trace):
    result = replay(tmp_path, small_trace)
    summary, ops = result.summary.iloc[0], result.ops
    # Directories the image lacks are made first; every other failure is one the recording had.
    assert sorted(ops[ops["op"] == "mkdir_parent"]["path"]) == ["srv", "srv/data", "srv/data/db", "var", "var/log"]
    assert summary["ops"] == len(EXPECTED) + 5
    assert summary["errors"] == summary["trace_recorded_failures"] == 2
    # /etc/config, opened for writing, is the one file copied up, whole.
    assert summary["copy_ups"] == 1 and summary["copy_up_bytes"] == 5000
    copied = ops[ops["copy_ups"] > 0]
    assert list(copied["op"]) == ["open"] and list(copied["path"]) == ["etc/config"]
    # /bin/helper is found through the image's /bin -> usr/bin link.
    assert ops[(ops["op"] == "execve") & (ops["path"] == "usr/bin/helper")]["error"].tolist() == [""]
    assert summary["trace_syscalls"] == parse_trace(small_trace).syscalls


def test_replay_keeps_the_recorded_think_time(tmp_path, small_trace):
    kept = replay(tmp_path, small_trace).ops
    squeezed = replay(tmp_path, small_trace, think_scale=0).ops
    span = lambda ops: (ops["start_s"] + ops["latency_s"]).max() - ops[ops["op"] == "execve"]["start_s"].min()  # noqa: E731
    assert span(kept) - span(squeezed) > 0.035  # the recorded pauses add up to about 40 ms
    scenario = {"image": {"from": str(small_image(tmp_path))}, "containers": {"count": 2},
                "workload": {"kind": "trace", "path": str(small_trace), "start_interval": "1s"}}
    ops = api.run_scenario(scenario).ops
    first = ops[ops["op"] == "execve"].groupby("container")["start_s"].min()
    assert first["1"] - first["0"] == pytest.approx(1.0)


@SHIPPED
@pytest.mark.parametrize("driver", list(REGISTRY))
def test_shipped_trace_replays_on_debian_under_every_driver(driver, shipped):
    scenario = {"name": "replay", "driver": {"name": driver}, "image": {"from": str(DEBIAN)},
                "workload": {"kind": "trace", "path": str(shipped)}}
    summary = api.run_scenario(scenario).summary.iloc[0]
    trace = parse_trace(shipped)
    assert summary["ops"] >= len(trace.ops)
    assert summary["trace_replayed"] + summary["trace_unusable"] <= summary["trace_syscalls"]
    if driver == "vfs" or shipped == PYTHON:  # a full copy up front; a start-up only reads
        assert summary["copy_ups"] == 0
    else:  # dpkg appends to its log and takes its lock files: copy-ups of image files
        assert summary["copy_ups"] > 0 and summary["copy_up_bytes"] > 0


@SHIPPED
def test_shipped_trace_fails_only_where_the_recording_failed(shipped):
    """The traces were recorded in the shipped image: a replayed operation fails only where the
    program's own call failed (a failed mkdir/rmdir replays its lookup, which may find the entry)."""
    trace = parse_trace(shipped)
    result = api.run_scenario({"image": {"from": str(DEBIAN)}, "workload": {"kind": "trace", "path": str(shipped)}})
    ops = result.ops[~result.ops["op"].isin(SETUP_OPS)].reset_index(drop=True)
    assert (ops["op"] == "mkdir_parent").sum() == 0  # every directory dpkg wrote into is in the image
    assert len(ops) == len(trace.ops)
    failed_here = ops["error"] != ""
    assert failed_here.sum() > 0
    assert all(trace.ops[i].failed for i in ops.index[failed_here])


def _stderr_style(text: str) -> str:
    """strace without -o: the first process unprefixed, the others as [pid N]."""
    return re.sub(r"^(\d+) ", lambda m: "" if m.group(1) == "100" else f"[pid {int(m.group(1)):5d}] ", text, flags=re.M)


def _epoch_times(text: str) -> str:
    """-ttt: seconds since the epoch instead of the time of day."""
    return re.sub(r" 10:00:00\.(\d{6}) ", lambda m: f" 1700000000.{m.group(1)} ", text)


def _decoded_fds(text: str) -> str:
    """-y: descriptors followed by the path they stand for."""
    text = re.sub(r"\((\d+), ", r"(\1</some/file>, ", text)
    return re.sub(r"= (\d+) <", r"= \1</some/file> <", text)


@pytest.mark.parametrize("variant", [_stderr_style, _epoch_times, _decoded_fds], ids=lambda f: f.__name__[1:])
def test_strace_output_variants_parse_alike(tmp_path, variant):
    path = tmp_path / "variant.strace"
    path.write_text(variant(TRACE))
    trace = parse_trace(path)
    assert [(t.label, t.op.kind, t.op.path, t.op.offset, t.op.nbytes, t.op.sync, t.failed)
            for t in trace.ops] == EXPECTED
    every_line_accounted(trace)


def test_stray_lines_are_counted(tmp_path):
    path = tmp_path / "stray.strace"
    path.write_text(TRACE + "\nstrace: Process 100 detached\n100 10:00:01.000000 read(3, \"cut\n")
    trace = parse_trace(path)
    every_line_accounted(trace)
    assert trace.unparsed == 2 and trace.unusable["read"] == 3  # the cut-short read too
    assert len(trace.ops) == len(EXPECTED)


def test_midnight_and_gzip(tmp_path):
    import gzip
    text = TRACE.replace("10:00:00.0", "23:59:59.9").replace("23:59:59.94", "00:00:00.04")
    path = tmp_path / "late.strace.gz"
    path.write_bytes(gzip.compress(text.encode()))
    trace = parse_trace(path)
    assert trace.ops[-1].start_s == pytest.approx(0.141)  # 23:59:59.900 -> 00:00:00.041
    assert all(b.start_s >= a.start_s for a, b in zip(trace.ops, trace.ops[1:]))
