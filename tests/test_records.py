"""Per-operation records: streamed to parquet or kept in memory, in any batch size, the tables and
the summary are the same; the summary never needs the rows."""
import pandas as pd
import pytest

from sim import records
from sim.runner import simulate
from sim.scenario import Scenario

MIX = {"name": "records", "seed": 5, "containers": {"count": 3},
       "image": {"layers": 3, "files_per_layer": 60, "dir_depth": 2},
       "workload": {"ops": {"read": .5, "write": .2, "append": .1, "create": .1, "delete": .05, "stat": .05},
                    "workers": 2, "operations": 400}}
PROBE = {"name": "records-probe", "image": {"kind": "probe", "file_size": "3MiB", "layers": 4, "dir_depth": 3},
         "workload": {"kind": "copyup_probe"}, "containers": {"count": 2, "remove_at_end": True}}


@pytest.mark.parametrize("spec", [MIX, PROBE], ids=["mix", "probe"])
def test_streamed_records_equal_kept_records(spec, tmp_path, monkeypatch):
    scenario = Scenario.model_validate(spec)
    kept = simulate(scenario)
    monkeypatch.setattr(records, "BATCH_ROWS", 7)  # many small batches, the last one partial
    streamed = simulate(scenario, ops_path=tmp_path / "ops.parquet")
    assert len(streamed.ops_table) == 0 and streamed.ops_path.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(streamed.ops_path), kept.ops, check_exact=True)
    assert_same_summary(streamed.summary, kept.summary)


def assert_same_summary(actual: dict, expected: dict) -> None:
    """Equal exactly, not approximately; NaN (no such operation) equals NaN."""
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name] == value or (value != value and actual[name] != actual[name]), name


def test_summary_from_totals_matches_the_table():
    """The totals-based summary agrees with the same figures computed by pandas from the rows."""
    result = simulate(Scenario.model_validate(MIX))
    ops = result.ops
    work = ops[~ops["op"].isin(records.SETUP_OPS)]
    copied = work[work["copy_ups"] > 0]
    summary = result.summary
    assert summary["ops"] == len(work) > 0
    assert summary["errors"] == (work["error"] != "").sum()
    assert summary["copy_up_bytes"] == work["copy_up_bytes"].sum()
    assert summary["latency_mean_s"] == work["latency_s"].mean()
    assert summary["latency_p99_s"] == work["latency_s"].quantile(0.99)
    assert summary["copy_up_p50_s"] == copied["copy_up_s"].quantile(0.5)
    assert summary["setup_s"] == ops[ops["op"].isin(records.SETUP_OPS)]["latency_s"].sum()


def test_records_without_rows_keep_totals(tmp_path):
    scenario = Scenario.model_validate({**MIX, "keep_ops": False})
    result = simulate(scenario, ops_path=tmp_path / "ops.parquet")
    assert len(result.ops) == 0 and result.ops_path is None and not (tmp_path / "ops.parquet").exists()
    assert_same_summary(result.summary, simulate(Scenario.model_validate(MIX)).summary)


def test_a_workload_declares_what_its_summary_measures(monkeypatch):
    """Records know no workload: a workload's measures (here a probe's, renamed) become summary
    columns through the registry, and every run has every registered column."""
    from sim import workloads
    from sim.scenario import CopyupProbe

    class Renamed(workloads.ProbeWorkload):
        measures = {"first_touch_s": ("first_write", "latency_s")}
    monkeypatch.setitem(workloads.WORKLOADS, CopyupProbe, Renamed)
    summary = simulate(Scenario.model_validate(PROBE)).summary
    assert summary["first_touch_s"] > 0 and "first_write_s" not in summary  # no workload measures it now
    mix = simulate(Scenario.model_validate(MIX)).summary
    assert mix["first_touch_s"] != mix["first_touch_s"] and "trace_syscalls" not in mix
