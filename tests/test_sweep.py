"""Sweeps: expansion, overrides, seeds, executors, failures, and results that survive interruption."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import sim
from sim import api
from sim.cli import main
from sim.records import SETUP_OPS
from sim.scenario import apply_overrides, expand_points

from .waits import HANG_SECONDS

ROOT = Path(__file__).resolve().parents[1]

# A sweep with randomness in it: a synthetic image and a mix, two drivers, two sizes, two replicates.
MIX = {"name": "mixsweep", "seed": 7, "replicates": 2,
       "image": {"kind": "synthetic", "layers": 3, "files_per_layer": 40, "dir_depth": 2},
       "containers": {"count": 2},
       "workload": {"kind": "mix", "operations": 120, "workers": 2},
       "sweep": {"driver.name": ["overlay2", "btrfs"], "workload.request_size": ["4KiB", "64KiB"]}}

PROBE_SWEEP = ("name: probesweep\nseed: 3\nimage: {kind: probe, layers: 2}\nworkload: {kind: copyup_probe}\n"
               "sweep:\n  driver.name: [overlay2, fuse-overlayfs, btrfs, vfs]\n"
               "  image.file_size: [4KiB, 1MiB, 64MiB, 256MiB]\n  image.dir_depth: [1, 8]\n")


def test_axes_are_a_cartesian_product_and_zip_groups_move_together():
    data = {"sweep": {"driver.name": ["overlay2", "btrfs"],
                      "zip": [{"image.layers": [1, 8, 64], "image.dir_depth": [0, 4, 16]}],
                      "image.file_size": ["4KiB", "1MiB"]}}
    points = expand_points(data)
    assert len(points) == 2 * 3 * 2
    combos = [tuple(p.values[key] for key in ("driver.name", "image.layers", "image.dir_depth", "image.file_size"))
              for p in points]
    assert combos[:3] == [("overlay2", 1, 0, "4KiB"), ("overlay2", 1, 0, "1MiB"), ("overlay2", 8, 4, "4KiB")]
    assert {(layers, depth) for _, layers, depth, _ in combos} == {(1, 0), (8, 4), (64, 16)}
    assert points[5].data["image"] == {"layers": 64, "dir_depth": 16, "file_size": "1MiB"}
    assert "sweep" not in points[0].data
    assert [p.index for p in points] == list(range(12))


def test_overrides_set_fields_replace_axes_and_fix_swept_fields():
    data = {"image": {"layers": 2}, "sweep": {"driver.name": ["overlay2", "btrfs"], "image.dir_depth": [1, 2]}}
    changed, origins = apply_overrides(data, ["image.layers=8", "sweep.image.dir_depth=[4, 8, 16]", "driver.name=vfs"])
    assert changed["image"]["layers"] == 8 and changed["driver"]["name"] == "vfs"
    assert changed["sweep"] == {"image.dir_depth": [4, 8, 16]}
    assert data["image"]["layers"] == 2  # the input is not changed
    assert origins[("image", "layers")] == "--set image.layers=8"
    assert len(expand_points(changed)) == 3


def test_summary_has_one_row_per_point_and_replicate_with_swept_columns_in_units():
    result = sim.run_scenario(MIX)
    assert len(result.summary) == 2 * 2 * 2
    assert list(result.summary[["point", "replicate"]].itertuples(index=False, name=None)) == \
        [(p, r) for p in range(4) for r in range(2)]
    assert list(result.summary["workload.request_size"].unique()) == ["4KiB", "64KiB"]  # as written
    assert list(result.summary["driver.name"]) == list(result.summary["driver"])
    assert (result.summary["status"] == "ok").all() and result.failed == 0
    assert set(result.ops["point"]) == set(range(4))


def test_seeds_give_common_random_numbers_across_points_and_differ_between_seeds():
    result = sim.run_scenario(MIX)
    work = result.ops[~result.ops["op"].isin(SETUP_OPS)]
    # each worker's stream of operations, in its own order (workers interleave differently per driver)
    work = work.sort_values(["container", "worker"], kind="stable")
    sequences = {key: tuple(group["op"] + ":" + group["path"]) for key, group in work.groupby(["point", "replicate"])}
    # every driver of a replicate runs the same operations on the same files ...
    assert sequences[0, 0] == sequences[2, 0] and sequences[0, 1] == sequences[2, 1]
    # ... and replicates differ from one another,
    assert sequences[0, 0] != sequences[0, 1]
    # as do seeds.
    other = sim.run_scenario({**MIX, "seed": 8})
    other_work = other.ops[~other.ops["op"].isin(SETUP_OPS)]
    assert tuple(other_work[other_work["point"] == 0]["path"]) != tuple(work[work["point"] == 0]["path"])
    assert result.manifest["seeds"][1] == {"seed": 7, "replicate": 1,
                                           "spawn_keys": {"image": [1, 0], "workload": [1, 1], "disk": [1, 2]}}


def test_same_tables_whatever_the_executor(tmp_path):
    from distributed import LocalCluster
    serial = sim.run_scenario(MIX, jobs=1)
    processes = sim.run_scenario(MIX, jobs=2)
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        dask = sim.run_scenario(MIX, executor="dask", scheduler=cluster.scheduler_address)
        # enough runs that dask gets them in batches
        many = ["sweep.image.file_size=[4KiB, 64KiB, 1MiB]", "sweep.image.dir_depth=[0, 1, 2, 4, 8, 16, 32, 64]"]
        (tmp_path / "s.yaml").write_text(PROBE_SWEEP)
        dask_many = sim.run_scenario(tmp_path / "s.yaml", overrides=many, executor="dask",
                                     scheduler=cluster.scheduler_address)
    serial_many = sim.run_scenario(tmp_path / "s.yaml", overrides=many)
    assert len(serial_many.summary) == 96
    for one, other in ((serial, processes), (serial, dask), (serial_many, dask_many)):
        pd.testing.assert_frame_equal(one.summary, other.summary)
        pd.testing.assert_frame_equal(one.ops, other.ops)
        pd.testing.assert_frame_equal(one.space, other.space)


def test_the_copyup_sweep_file_reduced_from_the_command_line(tmp_path):
    result = CliRunner().invoke(main, [
        "run", str(ROOT / "scenarios/copyup_sweep.yaml"), "-o", str(tmp_path / "run"), "-j", "2", "--no-report",
        "--set", "sweep.image.file_size=[4KiB, 16MiB]", "--set", "sweep.image.layers=[1, 125]",
        "--set", "sweep.image.dir_depth=[0, 8]", "--set", "replicates=2"])
    assert result.exit_code == 0, result.output
    summary = pd.read_parquet(tmp_path / "run/summary.parquet")
    assert len(summary) == 8 * 2 * 2 * 2 * 2
    point_keys = ["driver.name", "image.file_size", "image.layers", "image.dir_depth", "replicate"]
    assert summary.groupby(point_keys).size().eq(1).all()
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs"] == 128 and manifest["points"] == 64
    assert len(manifest["overrides"]) == 4 and len(manifest["scenario_sha256"]) == 64
    assert manifest["resolved"]["sweep"]["image.layers"] == [1, 125] and manifest["resolved"]["replicates"] == 2
    for key in ("cowsim", "python", "host", "libraries", "seeds", "wall_time_s", "operations_executed", "run_status"):
        assert key in manifest, key
    assert not (tmp_path / "run/points").exists()
    # the first write copies the whole file up under overlay2, not under btrfs
    first = summary[(summary["image.file_size"] == "16MiB") & (summary["replicate"] == 0)]
    assert (first[first["driver"] == "overlay2"]["copy_up_bytes"] == 16 * 2**20).all()
    assert (first[first["driver"] == "btrfs"]["copy_up_bytes"] < 2**20).all()


def test_validate_prints_the_number_of_points(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(ROOT / "scenarios/copyup_sweep.yaml")])
    assert result.exit_code == 0
    assert "3136 points, 9408 runs" in result.output
    (tmp_path / "s.yaml").write_text(PROBE_SWEEP)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "s.yaml"), "--set", "sweep.image.dir_depth=[1]"])
    assert "16 points, 16 runs" in result.output
    assert not list(Path(tmp_path).glob("results*"))


def test_schema_documents_every_field_and_emits_json_schema():
    text = CliRunner().invoke(main, ["schema"]).output
    for line in ("image[kind=probe].file_size: int = 1048576 [bytes] (>= 0, <= 1099511627776)",
                 "replicates: int = 1 [count] (>= 1, <= 10000)", "driver.options.metacopy  (driver overlay2)", "zip"):
        assert line in text, line
    schema = json.loads(CliRunner().invoke(main, ["schema", "--json-schema"]).output)
    assert schema["additionalProperties"] is False and "sweep" in schema["properties"]
    size = schema["$defs"]["ProbeImage"]["properties"]["file_size"]
    assert {"type": "integer", "minimum": 0, "maximum": 2**40} in size["anyOf"]
    assert any(s["type"] == "string" for s in size["anyOf"])
    assert schema["$defs"]["ProbeImage"]["properties"]["layers"]["unit"] == "count"


def test_every_shipped_scenario_fits_the_json_schema():
    """What editors check against: every shipped scenario (kinds left out, `from:`, images:) fits,
    and a misspelt field of a listed image does not."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(CliRunner().invoke(main, ["schema", "--json-schema"]).output)
    root = Path(__file__).resolve().parents[1] / "scenarios"
    for path in sorted(root.glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"images": [{"name": "a", "layer": 2}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"images": [{"name": "a", "from": "x.tar", "path": "y.tar", "kind": "probe"}]}, schema)


def fail_on_btrfs(monkeypatch):
    import sim.runner
    real = sim.runner.simulate

    def simulate(scenario, replicate=0, ops_path=None, progress=None):
        if scenario.driver.name == "btrfs":
            raise RuntimeError("injected failure")
        return real(scenario, replicate, ops_path, progress)
    monkeypatch.setattr(sim.runner, "simulate", simulate)


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    fail_on_btrfs(monkeypatch)
    (tmp_path / "s.yaml").write_text(PROBE_SWEEP)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "run"), "-j", "1"])
    assert result.exit_code == 1
    assert "8 of 32 runs failed" in result.stderr
    summary = pd.read_parquet(tmp_path / "run/summary.parquet")
    failed = summary[summary["status"] == "failed"]
    assert set(failed["driver"]) == {"btrfs"} and len(failed) == 8 and len(summary) == 32
    assert (failed["failure"] == "RuntimeError: injected failure").all()
    assert summary[summary["status"] == "ok"]["ops"].notna().all()
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["runs_failed"] == 8 and manifest["runs_ok"] == 24
    assert manifest["failures"][0]["failure"] == "RuntimeError: injected failure"
    assert sim.load_run(tmp_path / "run").failed == 8
    # once the cause is gone, --resume runs only the failed runs again
    monkeypatch.undo()
    resumed = sim.api.resume_run(tmp_path / "run")
    assert resumed.failed == 0 and resumed.manifest["sessions"][-1]["runs_to_do"] == 8
    pd.testing.assert_frame_equal(resumed.summary, sim.run_scenario(tmp_path / "s.yaml").summary)


def test_a_killed_worker_keeps_finished_runs_and_resume_completes(tmp_path, monkeypatch):
    import sim.runner
    real = sim.runner.simulate
    (tmp_path / "s.yaml").write_text(PROBE_SWEEP)

    def simulate(scenario, replicate=0, ops_path=None, progress=None):
        if scenario.driver.name == "vfs" and scenario.image.file_size == 2**28:
            os._exit(9)  # the worker process dies (as if killed)
        return real(scenario, replicate, ops_path, progress)
    import multiprocessing
    if multiprocessing.get_start_method() != "fork":
        pytest.skip("needs forked workers, which inherit the patched simulate")
    monkeypatch.setattr(sim.runner, "simulate", simulate)
    with pytest.raises(api.RunInterrupted) as interrupted:
        sim.run_scenario(tmp_path / "s.yaml", tmp_path / "run", jobs=2)
    assert interrupted.value.exit_code == 1 and "--resume" in str(interrupted.value)
    kept = list((tmp_path / "run/points").glob("*.arrow"))
    assert 0 < len(kept) < 32
    assert json.loads((tmp_path / "run/manifest.json").read_text())["status"] == "interrupted"
    with pytest.raises(sim.errors.CowsimError, match="resume"):
        sim.load_run(tmp_path / "run")
    monkeypatch.undo()
    resumed = api.resume_run(tmp_path / "run", jobs=2)
    assert resumed.manifest["sessions"][-1]["runs_to_do"] == 32 - len(kept)
    pd.testing.assert_frame_equal(resumed.summary, sim.run_scenario(tmp_path / "s.yaml").summary)


# Run in the child: the first five runs (overlay2, 64 MiB) simulate; every other run waits for
# the test's signal (SIGINT, or its worker dies with the parent: PR_SET_PDEATHSIG), and each part
# the parent stores is announced on a pipe. So exactly five runs are kept, however fast the machine.
HELD_SWEEP = """
import os, signal, sys
import sim.results, sim.runner
from sim.cli import main
announce = int(sys.argv[1])
store, simulate = sim.results.write_part, sim.runner.simulate

def write_part(*args):
    store(*args)
    os.write(announce, b"p")

def held(scenario, *args, **kwargs):
    if (scenario.driver.name, scenario.image.file_size) != ("overlay2", 64 * 2**20):
        signal.pause()
    return simulate(scenario, *args, **kwargs)

sim.results.write_part, sim.runner.simulate = write_part, held
main(sys.argv[2:], prog_name="cowsim")
"""


def _read_announcements(fd: int, count: int) -> None:
    import select
    got = b""
    while len(got) < count:
        ready, _, _ = select.select([fd], [], [], HANG_SECONDS)
        assert ready, f"only {len(got)} of {count} runs stored within {HANG_SECONDS} s: hung"
        chunk = os.read(fd, count - len(got))
        assert chunk, "the sweep ended before it was interrupted"
        got += chunk


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_sweep_killed_halfway_and_resumed_gives_the_uninterrupted_table(tmp_path, how):
    import multiprocessing
    if multiprocessing.get_start_method() != "fork":
        pytest.skip("needs forked workers, which inherit the held simulate")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(PROBE_SWEEP.replace("[4KiB, 1MiB, 64MiB, 256MiB]", "[64MiB, 256MiB]")
                        .replace("[1, 8]", "[1, 2, 4, 8, 16]"))
    run = tmp_path / "run"
    # killed with its worker processes running; interrupted (Ctrl-C) in-process; terminated with
    # its workers running (as Ctrl-C: the runs kept, the workers stopped)
    jobs = "1" if how == signal.SIGINT else "2"
    read_end, write_end = os.pipe()
    command = [sys.executable, "-c", HELD_SWEEP, str(write_end), "run", str(scenario), "-o", str(run), "-j", jobs,
               "--no-report"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               pass_fds=(write_end,))
    os.close(write_end)
    try:
        _read_announcements(read_end, 5)
        process.send_signal(how)
        _, stderr = process.communicate(timeout=HANG_SECONDS)
        # every process that held the pipe (the workers too) is gone: it reads as closed at once
        import select
        closed = select.select([read_end], [], [], HANG_SECONDS)[0] and os.read(read_end, 1) == b""
        assert closed, "a worker outlived the sweep"
    finally:
        os.close(read_end)
    assert process.returncode != 0
    if how != signal.SIGKILL:
        assert process.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr, stderr
        assert "5 of 40 runs are kept" in stderr, stderr
    kept = len(list((run / "points").glob("*.arrow")))
    assert kept == 5, kept
    assert not (run / "summary.parquet").exists()
    resume = subprocess.run([sys.executable, "-m", "sim", "run", "--resume", str(run), "-j", "2", "--no-report"],
                            cwd=ROOT, capture_output=True, text=True, timeout=HANG_SECONDS)
    assert resume.returncode == 0, resume.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["sessions"][-1]["runs_before"] == kept
    assert [s["runs_to_do"] for s in manifest["sessions"]] == [40, 40 - kept]
    whole = sim.run_scenario(scenario)
    pd.testing.assert_frame_equal(sim.load_run(run).summary, whole.summary)
    pd.testing.assert_frame_equal(sim.load_run(run).ops, whole.ops)
    # a complete run is left alone
    again = CliRunner().invoke(main, ["run", "--resume", str(run), "--no-report"])
    assert again.exit_code == 0 and json.loads((run / "manifest.json").read_text()) == manifest


def test_progress_bar_on_a_terminal_and_quiet_otherwise(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    (tmp_path / "s.yaml").write_text(PROBE_SWEEP)
    sim.run_scenario(tmp_path / "s.yaml", progress=True)
    assert "probesweep: 100%" in terminal.getvalue() and "32/32" in terminal.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    sim.run_scenario(tmp_path / "s.yaml", progress=False)
    assert quiet.getvalue() == ""
    monkeypatch.undo()
    result = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "r"), "-j", "1",
                                       "--no-report"])
    assert result.exit_code == 0 and result.stderr == ""  # not a terminal: no bar


def test_an_executor_that_cannot_start_leaves_no_folder(tmp_path):
    (tmp_path / "s.yaml").write_text(PROBE_SWEEP)
    with pytest.raises(sim.errors.CowsimError, match="unknown executor 'nonsense'"):
        sim.run_scenario(tmp_path / "s.yaml", tmp_path / "run", executor="nonsense")
    assert not (tmp_path / "run").exists()
