"""The issue-7 targets benchmark's code runs (tiny sizes; the figures are benchmarks, not tests)."""
from benchmarks import targets


def tiny(name: str, operations: int = 300) -> dict:
    return targets.scenario(name, **{"workload.operations": operations, "containers.count": 4,
                                     "image.files_per_layer": 30})


def test_throughput_child_reports_both_rates():
    row = targets.child("throughput", tiny("throughput"), bare_events=2000)
    assert row["operations"] == 300
    assert row["ops_per_s"] > 0 and row["bare_per_s"] > 0 and row["peak_rss_bytes"] > 0


def test_simulate_child_streams_records():
    row = targets.child("simulate", tiny("scale"), stream_ops=True)
    assert row["operations"] == 300 and row["ops_parquet_bytes"] > 0


def test_scale_figure(tmp_path):
    rows = [{"factor": f, "cpu_s": 1.0 * f, "peak_rss_bytes": 2**27 * f} for f in (1, 2)]
    figures = {"base": targets.SCALE_BASE, "curves": {"operations": rows, "containers": rows, "files": rows}}
    targets.plot_scale(figures, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").stat().st_size > 0


def test_run_child_writes_a_run_folder():
    row = targets.child("run", tiny("throughput"))
    assert row["operations"] == 300 and row["records"] > 300 and row["ops_parquet_bytes"] > 0
    assert row["peak_rss_bytes"] > 0


def test_api_child_runs_without_a_folder_and_leaves_no_temporary():
    row = targets.child("api", tiny("throughput"))
    assert row["operations"] == 300 and row["records"] > 300 and row["temporaries_left"] == []


def test_against_measures_both_trees_and_says_whether_the_target_is_met(capsys):
    figures = targets.against(targets.ROOT, quick=True, repeat=1, operations=300)
    out = capsys.readouterr().out
    before, after = figures["best"]["before"]["mix"], figures["best"]["after"]["mix"]
    assert before["operations"] == after["operations"] == 300
    assert figures["mix_speedup_cpu"] == after["ops_per_cpu_s"] / before["ops_per_cpu_s"]
    assert figures["target_met"] == (figures["mix_speedup_cpu"] >= targets.TARGET_SPEEDUP)
    assert f"target >= x2: {'PASS' if figures['target_met'] else 'FAIL'}" in out
