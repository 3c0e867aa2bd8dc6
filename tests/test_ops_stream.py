"""Operations streamed to disk through a sweep: every run's records go to a file of their own in
the run folder, ops.parquet is put together a row group at a time, and reading a run back does
not read its operations until they are used. The tables are the same as when all is in memory."""
from __future__ import annotations

import gc
import json
import multiprocessing
import tempfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sim
from sim import api, records, report, results, sweep
from sim.runner import simulate

MIX = {"name": "streamed", "seed": 11, "replicates": 2,
       "image": {"kind": "synthetic", "layers": 3, "files_per_layer": 40, "dir_depth": 2},
       "containers": {"count": 2},
       "workload": {"kind": "mix", "operations": 150, "workers": 2},
       "sweep": {"driver.name": ["overlay2", "btrfs"], "workload.request_size": ["4KiB", "64KiB"]}}


@pytest.fixture
def small_batches(monkeypatch):
    """Every run streams its records (none is small enough to travel in its part), in batches of
    40 rows, and ops.parquet gets row groups of at least 100 rows: many batches and groups. The
    parent reads every part back from the run folder at the end (it keeps none in memory)."""
    monkeypatch.setattr(sweep, "INLINE_ROWS", 0)
    monkeypatch.setattr(api, "PARTS_HELD_BYTES", 0)
    monkeypatch.setattr(records, "BATCH_ROWS", 40)
    monkeypatch.setattr(results, "GROUP_ROWS", 100)


def expected_ops() -> pd.DataFrame:
    """What ops.parquet held before streaming: each run simulated in memory, tagged, put together
    in (point, replicate) order, through pandas."""
    tables = []
    for index, (_, scenario) in enumerate(api.validate(MIX)):
        for replicate in range(scenario.replicates):
            tag = {"point": index, "replicate": replicate, "driver": scenario.driver.name}
            tables.append(sweep.tagged(simulate(scenario, replicate).ops_table, tag))
    return pa.concat_tables(tables).to_pandas()


def test_run_one_streams_its_records_to_the_file_and_packs_none(tmp_path, small_batches):
    spec = api._specs(api.validate_source(api.read_source(MIX)))[3]
    part = sweep.run_one({**spec, "ops_path": str(tmp_path / "run.ops.parquet")})
    meta = sweep.part_meta(part)
    assert meta["ops_file"] == "run.ops.parquet" and meta["ops_rows"] > 150
    assert pa.ipc.open_stream(part).read_all().num_rows == 0
    streamed = pq.ParquetFile(tmp_path / "run.ops.parquet")
    assert streamed.metadata.num_rows == meta["ops_rows"] and streamed.metadata.num_row_groups > 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.ops.parquet"]  # no temporary left


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_streamed_sweep_writes_the_same_ops_parquet(tmp_path, small_batches, jobs):
    if jobs > 1 and multiprocessing.get_start_method() != "fork":
        pytest.skip("needs forked workers, which inherit the small batches")
    sim.run_scenario(MIX, tmp_path / "run", jobs=jobs)
    written = tmp_path / "run" / "ops.parquet"
    expected = expected_ops()
    pd.testing.assert_frame_equal(pd.read_parquet(written), expected, check_exact=True)
    # the same file as pandas writes: column types (large strings) and pandas metadata
    expected.to_parquet(tmp_path / "pandas.parquet", index=False)
    assert pq.read_schema(written).equals(pq.read_schema(tmp_path / "pandas.parquet"), check_metadata=True)
    assert pq.ParquetFile(written).metadata.num_row_groups > 1  # it was written a group at a time
    assert not (tmp_path / "run" / "points").exists()
    # and the same as a run that keeps everything in memory
    pd.testing.assert_frame_equal(sim.run_scenario(MIX).ops, expected, check_exact=True)


@pytest.fixture
def temporary(tmp_path, monkeypatch):
    """The folder where the API's temporary folders go (tempfile.gettempdir()), empty."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_api_without_a_folder_keeps_long_runs_in_a_temporary_folder_it_removes(temporary, small_batches, jobs):
    if jobs > 1 and multiprocessing.get_start_method() != "fork":
        pytest.skip("needs forked workers, which inherit the small batches")
    run = sim.run_scenario(MIX, jobs=jobs)
    scratch, = temporary.iterdir()
    assert scratch.name.startswith("cowsim-ops-") and [p.name for p in scratch.iterdir()] == ["ops.parquet"]
    assert run._ops_source == scratch / "ops.parquet" and run.path is None  # not read yet
    expected = expected_ops()
    assert run.operations == len(expected) and f"{len(expected)} operations" in repr(run)
    pd.testing.assert_frame_equal(run.read_ops(["op", "point"], step=5),
                                  expected[["op", "point"]].iloc[::5].reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(run.ops, expected, check_exact=True)
    del run
    gc.collect()
    assert list(temporary.iterdir()) == []  # removed with its result


def test_the_api_keeps_short_runs_in_memory_and_makes_no_temporary_folder(temporary):
    run = sim.run_scenario(MIX)  # 8 runs of about 160 records each: fewer than INLINE_ROWS in all
    assert list(temporary.iterdir()) == [] and isinstance(run._ops_source, pa.Table)
    pd.testing.assert_frame_equal(run.ops, expected_ops(), check_exact=True)


def test_a_failed_api_run_leaves_no_temporary_folder(temporary, small_batches, monkeypatch):
    def full_disk(path, tables):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(results, "write_ops", full_disk)
    with pytest.raises(OSError, match="No space left"):
        sim.run_scenario(MIX)
    assert list(temporary.iterdir()) == []


def test_resume_reruns_the_runs_whose_ops_file_is_missing_or_partial(tmp_path, small_batches, monkeypatch):
    import sim.runner
    real = sim.runner.simulate

    def interrupted(scenario, replicate=0, ops_path=None, progress=None):
        if scenario.driver.name == "btrfs" and scenario.workload.request_size == 65536:
            raise KeyboardInterrupt  # Ctrl-C during the last point
        return real(scenario, replicate, ops_path, progress)
    monkeypatch.setattr(sim.runner, "simulate", interrupted)
    run = tmp_path / "run"
    with pytest.raises(api.RunInterrupted):
        sim.run_scenario(MIX, run)
    monkeypatch.setattr(sim.runner, "simulate", real)
    points = run / "points"
    assert len(list(points.glob("*.arrow"))) == 6 and len(list(points.glob("*.ops.parquet"))) == 6
    (points / "000000-0001.ops.parquet").unlink()
    whole = (points / "000001-0000.ops.parquet").read_bytes()
    (points / "000001-0000.ops.parquet").write_bytes(whole[:len(whole) // 2])  # cut short
    resumed = api.resume_run(run)
    assert resumed.manifest["sessions"][-1]["runs_to_do"] == 2 + 2
    pd.testing.assert_frame_equal(pd.read_parquet(run / "ops.parquet"), expected_ops(), check_exact=True)


def test_load_run_reads_ops_parquet_only_when_used(tmp_path, monkeypatch):
    sim.run_scenario(MIX, tmp_path / "run")
    ops_file = str(tmp_path / "run" / "ops.parquet")
    read = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda path, *a, **k: read.append(str(path)) or real(path, *a, **k))
    run = sim.load_run(tmp_path / "run")
    count = pq.read_metadata(ops_file).num_rows
    assert f"{count} operations" in repr(run) and run.operations == count
    assert ops_file not in read
    assert len(run.ops) == count and read.count(ops_file) == 1
    assert len(run.ops) == count and read.count(ops_file) == 1  # read once


def test_read_ops_gives_columns_and_every_nth_row_without_loading(tmp_path, small_batches):
    sim.run_scenario(MIX, tmp_path / "run")
    run = sim.load_run(tmp_path / "run")
    every_seventh = run.read_ops(["op", "latency_s", "point", "no such column"], step=7)
    assert run._ops_source == tmp_path / "run" / "ops.parquet"  # still not loaded
    expected = expected_ops()[["op", "latency_s", "point"]].iloc[::7].reset_index(drop=True)
    pd.testing.assert_frame_equal(every_seventh, expected, check_exact=True)
    pd.testing.assert_frame_equal(sim.run_scenario(MIX).read_ops(["op", "latency_s", "point"], step=7), expected)


def test_a_report_of_a_huge_run_reads_some_columns_of_every_nth_operation(tmp_path, monkeypatch):
    sim.run_scenario(MIX, tmp_path / "run")
    run = sim.load_run(tmp_path / "run")
    monkeypatch.setattr(report, "MAX_VIEW_OPS", -(-run.operations // 4))
    view = report.view(run)
    assert view.ops_step == 4 and set(view.ops.columns) <= {*report.VIEW_COLUMNS, "workload.request_size"}
    assert "path" not in view.ops.columns
    captions = [f.caption for f in report.figures(view) if f.name.startswith("latency_cdf")]
    assert captions and all(f"one operation in 4 of the run's {run.operations:,}" in c for c in captions)


def test_dask_workers_send_their_operations_in_their_parts(tmp_path, small_batches, monkeypatch):
    from distributed import LocalCluster
    stored = []
    real = results.write_part
    monkeypatch.setattr(results, "write_part", lambda d, p, r, blob: stored.append(blob) or real(d, p, r, blob))
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        sim.run_scenario(MIX, tmp_path / "run", executor="dask", scheduler=cluster.scheduler_address)
    metas = [sweep.part_meta(blob) for blob in stored]
    assert len(metas) == 8 and not any(m["ops_file"] for m in metas)
    assert all(pa.ipc.open_stream(b).read_all().num_rows == m["ops_rows"] > 0 for b, m in zip(stored, metas))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "ops.parquet"), expected_ops(), check_exact=True)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"


def test_long_runs_in_this_process_count_their_records_a_batch_at_a_time(small_batches):
    """The bar in operations under the bar of runs: each long run asks for a callback once, and
    the batches it reports add up to its records (below the expected bound)."""
    specs = api._specs(api.validate_source(api.read_source(MIX)))[:2]
    counted: dict[tuple, list[int]] = {}

    def progress_for(spec, scenario):
        batches = counted.setdefault((spec["point"], spec["replicate"]), [])
        assert sum(batches) == 0  # asked once per run
        return batches.append

    parts = dict(sweep.execute(specs, jobs=1, progress_for=progress_for))
    assert set(counted) == set(parts)
    for key, batches in counted.items():
        rows = pa.ipc.open_stream(parts[key]).read_all().num_rows
        assert len(batches) > 1 and all(n <= 40 for n in batches) and sum(batches) == rows


def test_short_runs_ask_for_no_bar():
    spec = api._specs(api.validate_source(api.read_source(MIX)))[0]
    asked = []
    sweep.run_one(spec, lambda spec, scenario: asked.append(spec))
    assert asked == []


def test_expected_records_bounds_a_mix_and_a_probe_and_not_a_duration():
    scenario = next(iter(api.validate(MIX)))[1]
    assert sweep.expected_records(scenario) == 150 + 2 * 2 + 2  # and prepare_image, settle
    assert sweep.expected_records(scenario.model_copy(update={"settle": False})) == 150 + 2 * 2 + 1
    timed = scenario.model_copy(update={"workload": scenario.workload.model_copy(update={"operations": None})})
    assert sweep.expected_records(timed) is None
