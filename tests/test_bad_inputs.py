"""Hostile input, table by table: every bad scenario, trace, image and command line is refused
before any work, in one line `cowsim: error: ...` with exit code 2, within seconds; the worst
ones also with the address space limited to 1 GiB, so that none can hang or eat the machine."""
from __future__ import annotations

import gzip
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim.cli import main

from .refusals import one_line
from .waits import HANG_SECONDS

ROOT = Path(__file__).resolve().parents[1]
PROBE = "name: s\nimage: {kind: probe, layers: 2}\nworkload: {kind: copyup_probe}\n"
MIX = "name: s\nimage: {kind: synthetic, layers: 2, files_per_layer: 10}\nworkload: {kind: mix, operations: 10}\n"
# Refused within this much CPU time of the process (the interpreter already started): a bound on
# runaway work, which bad input causes where a limit is checked too late (only walking the 10^8
# points of a sweep, each a dict made and dropped, takes 12 s). CPU time, not wall time: the suite
# must pass on a machine busy with other work too. On an idle machine the slowest refusal takes
# 0.5 s, the first of a process (it pays the imports); other work stretches even CPU time (caches,
# memory bandwidth, reclaim), so the bound is 20 times that: 3 s failed once under a load average
# of 17 on 2 cores.
SECONDS = 10.0


def values(count: int, start: int = 0) -> str:
    return "[" + ", ".join(str(i) for i in range(start, start + count)) + "]"


def volumes(*entries: str) -> str:
    return "containers:\n  volumes:\n" + "".join(f"    - {entry}\n" for entry in entries)


# (id, scenario text, what the one line says)
BAD_SCENARIOS = [
    # sizes and numbers out of range
    ("size 1e400MiB", PROBE + "sweep: {image.file_size: [1e400MiB]}\n", "'1e400MiB' is not a finite size"),
    ("size 100TiB", PROBE.replace("layers: 2", "layers: 2, file_size: 100TiB"), "less than or equal to 1099511627776"),
    ("size 10^29 bytes", PROBE.replace("layers: 2", "layers: 2, file_size: " + "1" + "0" * 29),
     "less than or equal to"),
    ("request 2TiB", MIX.replace("operations: 10", "operations: 10, request_size: 2TiB"), "less than or equal to"),
    ("seed beyond int64", PROBE + f"seed: {2**70}\n", "seed: should be less than or equal to 9223372036854775807"),
    ("operations 10^13", MIX.replace("operations: 10", "operations: 10000000000000"), "less than or equal to"),
    ("think time 1e400s", MIX.replace("operations: 10", "operations: 10, think_time: 1e400s"), "not a finite duration"),
    ("infinite mix weight", MIX.replace("operations: 10", "operations: 10, ops: {read: .inf}"), "finite"),
    ("negative size_table weight", MIX.replace("files_per_layer: 10", "files_per_layer: 10, "
                                               "size_distribution: empirical, size_table: [[4096, 1], [8192, -1]]"),
     "a weight is a positive"),
    ("zero size_table weight", MIX.replace("files_per_layer: 10", "files_per_layer: 10, size_distribution: empirical, "
                                           "size_table: [[4096, 0]]"), "a weight is a positive"),
    ("empty size_table", MIX.replace("files_per_layer: 10", "files_per_layer: 10, size_distribution: empirical"),
     "the empirical distribution needs rows"),
    # what scales work or memory
    ("layers x files_per_layer", MIX.replace("files_per_layer: 10", "files_per_layer: 3000000"),
     "layers x files_per_layer = 6,000,000 files, more than 4,000,000"),
    ("probe layers x dir_entries", PROBE.replace("layers: 2", "layers: 100, dir_entries: 100000"),
     "layers x dir_entries = 10,000,000 files, more than 4,000,000"),
    ("containers x workers",
     MIX.replace("operations: 10", "operations: 10, workers: 1000") + "containers: {count: 1000}\n",
     "containers.count x workload.workers = 1,000,000 simulated processes, more than 100,000"),
    ("sweep 10^4 x 10^4 points",
     PROBE + f"sweep:\n  image.file_size: {values(10000)}\n  image.dir_depth: {values(10000)}\n",
     "the sweep has 10000 x 10000 = 100,000,000 points, more than 100,000"),
    ("8000 points x 10000 replicates", PROBE + f"replicates: 10000\nsweep:\n  image.file_size: {values(8000)}\n",
     "8,000 points x replicates = 80,000,000 runs, more than 1,000,000"),
    ("unknown swept field, big sweep",
     PROBE + f"sweep:\n  image.file_size: {values(300)}\n  image.nosuch: {values(300)}\n",
     "sweep.image.nosuch: unknown field 'nosuch'"),
    # YAML
    ("100,000 nested [", "name: s\nimage: " + "[" * 100_000 + "\n", "nested more than 64 levels deep"),
    ("duplicate key", PROBE + "name: t\n", "duplicate key 'name'"),
    ("5 MiB of keys", "name: s\n" + "".join(f"k{i}: {i}\n" for i in range(400_000)), "more than the 4,194,304"),
    # combinations that would silently do something else
    ("volume_fraction without volumes", MIX.replace("operations: 10", "operations: 10, volume_fraction: 0.5"),
     "volume_fraction > 0 needs containers.volumes"),
    ("empty image, read-only mix", MIX.replace("files_per_layer: 10", "files_per_layer: 0")
     .replace("operations: 10", "operations: 10, ops: {read: 1}"), "the image holds no files and the mix creates none"),
    ("copy-up probe of 5 files in a probe image", PROBE.replace("kind: copyup_probe", "kind: copyup_probe, files: 5"),
     "5 files asked, the image holds at most 1"),
    ("relative mount", MIX + volumes("{name: v, mount: data}"), "a mount point is an absolute path"),
    ("mount leaving the root", MIX + volumes("{name: v, mount: /a/../..}"), "leaves the container's root"),
    ("mount at / after ..", MIX + volumes("{name: v, mount: /a/..}"), "a volume cannot be mounted at /"),
    ("empty volume name", MIX + volumes("{name: '', mount: /data}"), "a volume name is 1 to 255 characters"),
    ("one volume, two kinds", MIX + volumes("{name: v, mount: /a}", "{name: v, mount: /b, kind: bind}"),
     "volume 'v' is mounted as both named and bind"),
    ("two volumes at one mount", MIX + volumes("{name: v, mount: /a}", "{name: w, mount: /a/.}"),
     "two volumes are mounted at /a"),
    ("mount name over NAME_MAX", MIX + volumes("{name: v, mount: /" + "x" * 300 + "}"), "longer than NAME_MAX"),
    # files that are not regular
    ("trace /dev/zero", MIX.replace("kind: mix, operations: 10", "kind: trace, path: /dev/zero"),
     "not a regular file but a character device"),
    ("image /dev/zero", "name: s\nimage: {from: /dev/zero}\nworkload: {kind: copyup_probe}\n",
     "not a regular file but a character device"),
]


def invoke(args: list[str], cwd: Path | None = None):
    started = time.process_time()
    if cwd is not None:
        old = os.getcwd()
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        if cwd is not None:
            os.chdir(old)
    return result, time.process_time() - started


def refused(result, elapsed: float, *needles: str, seconds: float = SECONDS) -> str:
    """The one line of a refusal, checked: exit 2, no traceback, quick, saying ``needles``."""
    line = one_line(result, *needles)
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return line


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD_SCENARIOS], ids=[case[0] for case in BAD_SCENARIOS])
def test_bad_scenarios_are_refused_in_one_line(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    refused(*invoke(["validate", "bad.yaml"], tmp_path), "bad.yaml", message)


def test_a_scenario_that_is_not_a_regular_file(tmp_path):
    line = refused(*invoke(["validate", "/dev/zero"]), "/dev/zero: cannot read the scenario file")
    assert "character device" in line
    os.mkfifo(tmp_path / "fifo.yaml")  # a FIFO nobody writes into: reading it would block forever
    refused(*invoke(["validate", tmp_path / "fifo.yaml"]), "not a regular file but a FIFO")


TRACE_HEAD = '100 10:00:00.000000 openat(AT_FDCWD, "/etc/config", O_RDONLY) = 3 <0.000010>\n'
BAD_TRACES = [
    ("time 99:99:99", TRACE_HEAD + '100 99:99:99.000000 read(3, "x", 1) = 1 <0.000010>\n',
     "trace.strace:2: '99:99:99.000000' is not a time of day"),
    ("read of 10^23 bytes", TRACE_HEAD + f'100 10:00:00.100000 read(3, "x"..., {10**23}) = {10**23} <0.000010>\n',
     "trace.strace:2: read of 100,000,000,000,000,000,000,000 bytes at offset 0: beyond 1,099,511,627,776 bytes"),
    ("pread at offset 2^62", TRACE_HEAD + f'100 10:00:00.100000 pread64(3, "x", 1, {2**62}) = 1 <0.000010>\n',
     "trace.strace:2: read of 1 bytes at offset"),
    ("a call of 10^9 s", TRACE_HEAD + '100 10:00:00.100000 close(3) = 0 <1000000000.000000>\n',
     "a call that took 1e+09 s"),
    ("a 2 MiB line", TRACE_HEAD + "100 10:00:00.100000 write(1, \"" + "x" * (2 << 20) + "\", 1) = 1\n",
     "trace.strace:2: a line longer than 1,048,576 characters"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD_TRACES], ids=[case[0] for case in BAD_TRACES])
def test_bad_traces_are_refused_in_one_line(tmp_path, text, message):
    (tmp_path / "trace.strace").write_text(text)
    refused(*invoke(["trace", "inspect", tmp_path / "trace.strace"]), message)


def test_special_and_endless_traces_are_refused(tmp_path):
    refused(*invoke(["trace", "inspect", "/dev/zero"]), "/dev/zero: cannot read the trace file: not a regular file")
    # 64 MiB of zeros, compressed to 64 KiB, without a newline: refused at the line cap, not read on
    with gzip.open(tmp_path / "zeros.strace.gz", "wb") as handle:
        for _ in range(64):
            handle.write(bytes(1 << 20))
    refused(*invoke(["trace", "inspect", tmp_path / "zeros.strace.gz"]), "zeros.strace.gz:1: a line longer than")


def test_a_path_of_500000_components_is_not_replayed_and_costs_no_time(tmp_path):
    name = "/a" * 500_000
    (tmp_path / "trace.strace").write_text(
        TRACE_HEAD + f'100 10:00:00.100000 openat(AT_FDCWD, "{name}", O_RDONLY) = 4 <0.000010>\n')
    result, elapsed = invoke(["trace", "inspect", tmp_path / "trace.strace", "--json"])
    assert result.exit_code == 0 and elapsed < SECONDS, (result.output[-300:], elapsed)
    summary = json.loads(result.output)
    assert summary["ops"] == 1
    assert "a path longer than PATH_MAX or a name longer than NAME_MAX" in summary["unusable_reasons"]


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def member(name: str, data: bytes = b"", size: int | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    return info, (data if size is None else None)


def docker_save(path: Path, manifest: bytes, layers: dict[str, bytes]) -> Path:
    path.write_bytes(tar_bytes([member("manifest.json", manifest), *(member(n, d) for n, d in layers.items())]))
    return path


def oci_with_layers(root: Path, layers) -> Path:
    import hashlib
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    document = json.dumps({"schemaVersion": 2, "layers": layers}).encode()
    digest = hashlib.sha256(document).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(document)
    (root / "index.json").write_text(json.dumps({"manifests": [{"digest": f"sha256:{digest}", "size": len(document)}]}))
    return root


def bad_images(tmp_path: Path) -> list[tuple[str, Path, str]]:
    layer = tar_bytes([member("etc/config", b"x")])
    huge = tar_bytes([member("big", size=10**30)])
    return [
        ("/dev/zero", Path("/dev/zero"), "/dev/zero: cannot read the image file: not a regular file"),
        ("manifest.json nested 100,000 deep", docker_save(tmp_path / "deep.tar", b"[" * 100_000, {}),
         "manifest.json is nested too deeply"),
        ("OCI layers not a list", oci_with_layers(tmp_path / "oci", {"digest": "x"}),
         "the image manifest's layers is not a list of descriptors"),
        ("PAX size 10^30", docker_save(tmp_path / "pax.tar", b'[{"Layers": ["l/layer.tar"]}]', {"l/layer.tar": huge}),
         "big: a size of 1,000,000,000,000,000,000,000,000,000,000 bytes, more than 1,099,511,627,776"),
        ("listing size 10^30", _listing(tmp_path / "l.csv", f"0,big,file,{10**30},0644,\n"), "a size of"),
        ("member name over PATH_MAX", docker_save(tmp_path / "long.tar", b'[{"Layers": ["l/layer.tar"]}]',
                                                   {"l/layer.tar": tar_bytes([member("d/" * 2100 + "f")])}),
         "longer than PATH_MAX"),
        ("listing of 100,000 layers",
         _listing(tmp_path / "layers.csv", "".join(f"{i},f{i},file,1,0644,\n" for i in range(100_000))),
         "layer 1000: more than 1,000 layers"),
        ("docker save with a good layer but broken JSON", docker_save(tmp_path / "json.tar", b"{", {"l": layer}),
         "manifest.json is not valid JSON"),
    ]


def _listing(path: Path, rows: str) -> Path:
    path.write_text("layer,path,kind,size,mode,target\n" + rows)
    return path


def test_bad_images_are_refused_in_one_line(tmp_path):
    for label, path, message in bad_images(tmp_path):
        result, elapsed = invoke(["image", "inspect", path])
        try:
            refused(result, elapsed, message)
        except AssertionError as error:
            raise AssertionError(f"{label}: {error}") from None


def test_names_that_are_not_printable_are_shown_escaped(tmp_path):
    names = ["bad-\udcff-name", "new\nline", "esc\x1b[31mred"]
    layer = tar_bytes([member(name, b"x" * (i + 1) * 1000) for i, name in enumerate(names)])
    path = docker_save(tmp_path / "names.tar", b'[{"Layers": ["l/layer.tar"]}]', {"l/layer.tar": layer})
    result, _ = invoke(["image", "inspect", path])
    assert result.exit_code == 0, result.output
    assert "bad-\\xff-name" in result.output and "new\\nline" in result.output and "esc\\x1b[31mred" in result.output
    assert "\x1b" not in result.output


def test_compare_refuses_different_experiments_unless_asked(tmp_path):
    import sim
    scenario = {"name": "probe", "seed": 1, "image": {"kind": "probe"}, "workload": {"kind": "copyup_probe"},
                "sweep": {"driver.name": ["overlay2", "btrfs"]}}
    sim.run_scenario(scenario, out=tmp_path / "ssd")
    sim.run_scenario({**scenario, "profile": "hdd", "seed": 2}, out=tmp_path / "hdd")
    refused(*invoke(["compare", tmp_path / "hdd", tmp_path / "ssd"]), "are different experiments",
            "seed: 1 -> 2", "profile: 'ssd' -> 'hdd'", "--anyway", seconds=20)  # reads both runs, imports scipy
    assert not (tmp_path / "hdd" / "comparisons").exists()
    anyway, _ = invoke(["compare", tmp_path / "hdd", tmp_path / "ssd", "--anyway"])
    assert anyway.exit_code == 1 and "note: different experiments, compared anyway: " in anyway.output


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "s.yaml").write_text(PROBE)
    refused(*invoke(["run", tmp_path / "s.yaml", "-o", "/dev/null/run", "--no-report"]),
            "/dev/null/run: cannot create the run folder")


# -- the worst of them with 1 GiB of address space --------------------------------------------------
BOUNDED = r"""
import json, os, resource, sys, time
limit = 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from click.testing import CliRunner
from sim.cli import main
outcome = []
for args in json.loads(sys.argv[1]):
    started = time.process_time()
    result = CliRunner().invoke(main, args)
    outcome.append([result.exit_code, result.output, repr(result.exception), time.process_time() - started])
print(json.dumps(outcome))
"""


def test_the_worst_inputs_under_an_address_space_limit(tmp_path):
    cases = {"sweep 10^4 x 10^4":
             PROBE + f"sweep:\n  image.file_size: {values(10000)}\n  image.dir_depth: {values(10000)}\n",
             "8000 x 10000 runs": PROBE + f"replicates: 10000\nsweep:\n  image.file_size: {values(8000)}\n",
             "nesting": "name: s\nimage: " + "[" * 100_000 + "\n",
             "image 10^29 bytes": PROBE.replace("layers: 2", "layers: 2, file_size: " + "1" + "0" * 29)}
    commands = []
    for text in cases.values():
        path = tmp_path / f"{len(commands)}.yaml"
        path.write_text(text)
        commands.append(["validate", str(path)])
    commands += [["validate", "/dev/zero"], ["trace", "inspect", "/dev/zero"], ["image", "inspect", "/dev/zero"],
                 ["probe", "--driver", "overlay2", "--file-size", "100TiB"]]
    done = subprocess.run([sys.executable, "-c", BOUNDED, json.dumps(commands)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=HANG_SECONDS, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    for args, (code, output, exception, elapsed) in zip(commands, json.loads(done.stdout)):
        assert code == 2 and output.startswith("cowsim: error: ") and output.count("\n") == 1, (args, output, exception)
        assert "MemoryError" not in output and elapsed < SECONDS, (args, elapsed)


def test_limits_are_said_in_the_schema():
    from sim.scenario import schema_text
    text = schema_text()
    assert "image[kind=probe].file_size: int = 1048576 [bytes] (>= 0, <= 1099511627776)" in text
    assert "containers.count: int = 1 [count] (>= 1, <= 100000)" in text


def test_a_sweep_is_counted_before_it_is_expanded(monkeypatch):
    """No point is made (and so nothing is copied) for a sweep over the limit."""
    from sim import scenario
    made = []
    real = scenario._with_value
    monkeypatch.setattr(scenario, "_with_value", lambda *a: made.append(1) or real(*a))
    with pytest.raises(scenario.SweepError, match="more than 100,000"):
        scenario.expand_points({"sweep": {"image.file_size": list(range(1000)), "image.dir_depth": list(range(1000))}})
    assert made == []


# -- properties: whatever the text, a value or one UnitError / one YAML error, never a crash ------
from hypothesis import example, given, settings, strategies as st  # noqa: E402

from sim import files, units  # noqa: E402

NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.from_regex(r"\A[-+]?\d{0,400}(\.\d{0,5})?(e[-+]?\d{1,4})?\s?(B|KiB|MiB|TiB|k|ms|s|h|us|MB/s|GiB/s|x)?\Z"),
                    st.text(max_size=30))


@settings(max_examples=300)
@given(NUMBERS)
@example(10**400)
@example("1" + "0" * 400)
@example("1e400MiB")
def test_units_give_a_finite_value_or_a_unit_error(value):
    for parse in (units.parse_size, units.parse_duration, units.parse_rate):
        try:
            parsed = parse(value)
        except units.UnitError:
            continue
        assert isinstance(parsed, int) or math.isfinite(parsed), (parse, value, parsed)  # sizes: exact ints


@settings(max_examples=200)
@given(st.text(alphabet="[]{}:,- ab\n'\"&*!", max_size=300), st.integers(min_value=0, max_value=200))
def test_yaml_gives_data_or_a_yaml_error(text, depth):
    import yaml
    try:
        files.load_yaml("[" * depth + text)
    except yaml.YAMLError as error:
        problem, line = files.yaml_problem(error)
        assert problem and (line is None or line >= 1)


def test_a_mount_is_normalised_once_and_runs():
    """The validated scenario is validated again by the worker that runs it: the normal form must pass."""
    import sim
    result = sim.run_scenario({"name": "vol", "image": {"kind": "synthetic", "layers": 2, "files_per_layer": 10},
                               "containers": {"volumes": [{"name": "v", "mount": "/srv/./data/../data/"}]},
                               "workload": {"kind": "mix", "operations": 20, "volume_fraction": 0.5}})
    assert (result.summary["status"] == "ok").all(), result.summary["failure"].tolist()
    assert result.resolved["containers"]["volumes"][0]["mount"] == "/srv/data"
    assert result.ops["path"].str.startswith("srv/data/").any()
