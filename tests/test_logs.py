"""Container logs (sim/logs.py): entry sizes as moby encodes them, rotation at the byte counts
dockerd rotates at, logs out of SIZE and in the node's real bytes, dropped by docker rm, off by
default."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.api import validate
from sim.drivers import get_driver
from sim.engine import Engine
from sim.host import Host
from sim.image import synthetic_image
from sim.logs import ContainerLogs, entry_bytes
from sim.operation import Op
from sim.profile import load_profile
from sim.runner import simulate
from sim.scenario import LoggingSpec

# 10 operations per container (5 files, a first and a second write each): with 200 bytes printed
# per operation and 100-byte lines, 20 lines; a json-file entry of a 100-byte line is 170 bytes.
PROBE = {"name": "logs", "seed": 1, "image": {"kind": "synthetic", "layers": 2, "files_per_layer": 40},
         "workload": {"kind": "copyup_probe", "files": 5}}
LINES = 20
ENTRY = 170


def run(logging: dict | None = None, containers: int = 1, **changes):
    data = {**PROBE, "containers": {"count": containers, **({"logging": logging} if logging else {})}, **changes}
    (_, point), = validate(data)
    return simulate(point)


def logs_rows(result):
    return [row for row in result.space_rows if row["kind"] == "logs"]


def total(result):
    return next(row for row in result.space_rows if row["kind"] == "total")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.mark.parametrize("line_bytes", [1, 2, 100, 127, 129, 4096, 16384])
def test_entry_sizes_are_what_moby_writes(line_bytes):
    text = "x" * (line_bytes - 1)
    # json-file: jsonlog.JSONLogs{Log: line + "\n", Stream: "stdout", Created: UTC, RFC3339Nano} + "\n"
    entry = json.dumps({"log": text + "\n", "stream": "stdout", "time": "2026-11-30T14:04:35.123456789Z"},
                       separators=(",", ":")) + "\n"
    assert entry_bytes("json-file", line_bytes) == len(entry.encode())
    # local: 4-byte length, LogEntry{source=1, time_nano=2, line=3}, 4-byte length (proto3 leaves an empty line out)
    time_nano = 1_795_000_000_123_456_789
    proto = b"\x0a\x06stdout" + b"\x10" + _varint(time_nano)
    if text:
        proto += b"\x1a" + _varint(len(text)) + text.encode()
    assert entry_bytes("local", line_bytes) == 4 + len(proto) + 4


def test_logging_is_off_by_default_and_leaves_no_trace():
    result = run()
    assert not logs_rows(result)
    assert not any(column.startswith("log_") for column in result.summary)


def test_size_is_unchanged_and_real_bytes_grow_by_the_log_bytes():
    quiet = run(containers=2)
    loud = run({"bytes_per_op": 200}, containers=2)
    size = [(r["container"], r["size_bytes"]) for r in quiet.space_rows if r["kind"] == "container"]
    assert size == [(r["container"], r["size_bytes"]) for r in loud.space_rows if r["kind"] == "container"]
    assert total(loud)["size_bytes"] == total(quiet)["size_bytes"]
    assert total(loud)["virtual_bytes"] == total(quiet)["virtual_bytes"]  # Docker's total leaves logs out
    assert [r["real_bytes"] for r in logs_rows(loud)] == [LINES * ENTRY] * 2  # json-file: never rotated
    assert total(loud)["real_bytes"] - total(quiet)["real_bytes"] == 2 * LINES * ENTRY
    assert loud.summary["log_lines"] == 2 * LINES and loud.summary["log_rotations"] == 0
    # the logs went through the page cache to the same disk
    assert loud.summary["disk_write_bytes"] - quiet.summary["disk_write_bytes"] >= 2 * LINES * ENTRY


# Hand-computed: 5,500 bytes printed per operation in 1,000-byte lines are 55 lines (entries of
# 1,070 bytes). A file is rotated before an entry when it holds max-size or more, so with max-size
# 10,000 it holds ceil(10,000 / 1,070) = 10 entries (10,700 bytes): the 11th, 21st, 31st, 41st and
# 51st entries rotate and 5 are left in the current file. With max-size 10,700 the same; with
# 10,701, 11 entries (11,770 bytes): the 12th, 23rd, 34th and 45th rotate and 11 are left.
BIG = 1070


@pytest.mark.parametrize("max_size, max_file, compress, rotations, held", [
    (10_000, 1, False, 5, 5 * BIG),                        # max-file 1: the file is emptied
    (10_000, 2, False, 5, 10 * BIG + 5 * BIG),             # .1 and the current file
    (10_000, 3, False, 5, 2 * 10 * BIG + 5 * BIG),         # .1, .2 and the current file
    (10_000, 7, False, 5, 5 * 10 * BIG + 5 * BIG),         # every rotated file kept
    (10_700, 7, False, 5, 5 * 10 * BIG + 5 * BIG),         # exactly 10 entries: at max-size, rotated
    (10_701, 7, False, 4, 4 * 11 * BIG + 11 * BIG),
    (10_000, 3, True, 5, 2 * round(10 * BIG * 0.11) + 5 * BIG),  # rotated files gzipped
])
def test_rotation_happens_at_the_hand_computed_byte_counts(max_size, max_file, compress, rotations, held):
    result = run({"bytes_per_op": 5500, "line_bytes": 1000, "max_size": max_size, "max_file": max_file,
                  "compress": compress})
    assert result.summary["log_rotations"] == rotations
    assert [r["real_bytes"] for r in logs_rows(result)] == [held]
    assert result.summary["log_written_bytes"] == 55 * BIG


@settings(max_examples=25, deadline=None)
@given(per_op=st.integers(1, 20_000), line_bytes=st.integers(1, 4000), max_size=st.integers(4096, 50_000),
       max_file=st.integers(1, 6), driver=st.sampled_from(["json-file", "local"]))
def test_logs_never_hold_more_than_max_file_files_of_max_size(per_op, line_bytes, max_size, max_file, driver):
    result = run({"driver": driver, "bytes_per_op": per_op, "line_bytes": line_bytes, "max_size": max_size,
                  "max_file": max_file, "compress": False})
    entry = entry_bytes(driver, line_bytes)
    lines = 10 * per_op // line_bytes
    held = logs_rows(result)[0]["real_bytes"]
    # a file ends at the first whole entry at or past max-size
    assert held <= max_file * math.ceil(max_size / entry) * entry
    assert held <= lines * entry  # never more than was written
    assert result.summary["log_lines"] == lines


def test_local_driver_defaults_rotate_at_20_mib_and_compress():
    logging = {"driver": "local", "bytes_per_op": 8 * 2**20, "line_bytes": 16384}
    result = run(logging)
    entry = entry_bytes("local", 16384)
    lines = 10 * 8 * 2**20 // 16384
    per_file = math.ceil(20 * 2**20 / entry)
    full, left = divmod(lines, per_file)
    assert result.summary["log_rotations"] == full - (left == 0)
    kept = min(full, 4)  # max-file 5: four rotated files and the current one
    assert logs_rows(result)[0]["real_bytes"] == kept * round(per_file * entry * 0.11) + left * entry


def test_a_rate_prints_over_the_workload():
    data = {**PROBE, "containers": {"count": 2, "logging": {"rate": "1MB/s", "line_bytes": 1000}},
            "workload": {"kind": "mix", "operations": 2000, "workers": 1}}
    (_, point), = validate(data)
    result = simulate(point)
    per_container = result.summary["log_lines"] / 2
    assert per_container == pytest.approx(1e6 * result.summary["makespan_s"] / 1000, abs=1)


def test_docker_rm_drops_the_logs_and_their_bytes():
    profile = load_profile("ssd")
    engine = Engine(profile)
    host = Host(get_driver("overlay2")({}, profile), engine)
    host.logs = ContainerLogs(LoggingSpec(bytes_per_op=200), host)
    image = synthetic_image(np.random.default_rng(0), layers=2, files_per_layer=40, dir_depth=2, fanout=3)
    seen = {}

    def life():
        yield from host.prepare_image(image)
        for cid in (0, 1):
            yield from host.create_container(cid, image)
        host.env.process(host.logs.run())
        for _ in range(10):
            yield from host.run_op(0, 0, Op("write", image.files[0], 0, 1))
        yield from host.logs.stop()
        seen["before"] = host.space()
        yield from host.remove_container(0)
        seen["after"] = host.space()

    host.env.process(life())
    host.env.run()
    logs = {row["container"]: row["real_bytes"] for row in seen["before"] if row["kind"] == "logs"}
    assert logs == {"0": LINES * ENTRY, "1": 0}  # container 1 printed nothing: an empty file
    assert [row["container"] for row in seen["after"] if row["kind"] == "logs"] == ["1"]
    real = [row["real_bytes"] for part in ("before", "after") for row in seen[part] if row["kind"] == "total"]
    size_of_0 = next(r["real_bytes"] for r in seen["before"] if r["kind"] == "container" and r["container"] == "0")
    assert real[0] - real[1] == LINES * ENTRY + size_of_0  # its writable layer and its logs went
    assert host.logs.summary()["log_lines"] == LINES  # what was written is still counted


def test_run_scenario_reports_logs_rows():
    result = sim.run_scenario({**PROBE, "containers": {"logging": {"bytes_per_op": 200}}, "keep_ops": False})
    assert result.space.query("kind == 'logs'")["real_bytes"].tolist() == [LINES * ENTRY]


def test_logging_shares_the_cpus_and_the_disk_with_the_workload():
    data = {**PROBE, "containers": {"count": 4}, "workload": {"kind": "mix", "operations": 4000, "workers": 2}}
    quiet = simulate(validate(data)[0][1])
    data["containers"]["logging"] = {"rate": "20MB/s", "line_bytes": 200}
    loud = simulate(validate(data)[0][1])
    assert loud.summary["ops"] == quiet.summary["ops"]
    assert loud.summary["makespan_s"] > 1.5 * quiet.summary["makespan_s"]


def test_system_df_counts_the_logs_until_docker_rm():
    data = {"name": "df", "seed": 2,
            "images": [{"name": "base", "layers": 2, "files_per_layer": 30},
                       {"name": "app", "base": "base", "layers": 1, "files_per_layer": 20}],
            "containers": {"groups": [{"image": "base", "count": 1}, {"image": "app", "count": 2}],
                           "remove_at_end": True, "logging": {"bytes_per_op": 200}},
            "workload": {"kind": "copyup_probe", "files": 5}}
    (_, point), = validate(data)
    result = simulate(point)
    df = {(row["when"], row["kind"]): row for row in result.df_rows}
    assert df["workload end", "logs"]["size_bytes"] == df["workload end", "logs"]["real_bytes"] == 3 * LINES * ENTRY
    assert df["end", "logs"]["size_bytes"] == 0  # docker rm took them
    assert df["workload end", "containers"]["size_bytes"] == total(result)["size_bytes"]  # SIZE leaves logs out
    space_real = total(result)["real_bytes"]
    assert df["workload end", "total"]["real_bytes"] == space_real


def test_only_per_operation_logging_touches_the_operations():
    profile = load_profile("ssd")
    host = Host(get_driver("overlay2")({}, profile), Engine(profile))
    assert host.completed is None  # logging off: nothing runs when an operation ends
    ContainerLogs(LoggingSpec(rate=1000), host)
    assert host.completed is None  # a rate needs no count of operations
    ContainerLogs(LoggingSpec(bytes_per_op=10), host)
    assert host.completed is not None
