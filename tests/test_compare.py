"""`cowsim compare` and `cowsim baseline save`: regressions found, noise not flagged, exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import sim
from sim import baseline as baselines
from sim.cli import main
from sim.compare import compare, compare_metric
from sim.metrics import METRICS
from sim.runner import simulate
from sim.scenario import Scenario

SSD = Path(sim.__file__).parent / "profiles" / "ssd.yaml"


def probe_sweep(**changes) -> dict:
    data = {"name": "probe_sweep", "seed": 1, "profile": "ssd",
            "image": {"kind": "probe", "layers": 2, "dir_depth": 2, "file_size": "1MiB"},
            "workload": {"kind": "copyup_probe", "files": 1, "write_size": "1B", "fsync": True},
            "sweep": {"driver.name": ["overlay2", "btrfs"], "image.file_size": ["4KiB", "16MiB"]}}
    data.update(changes)
    return data


def mix(**changes) -> dict:
    data = {"name": "mix_noise", "seed": 1, "replicates": 5, "profile": "ssd",
            "image": {"kind": "synthetic", "layers": 3, "files_per_layer": 100, "file_size": "16KiB", "dir_depth": 2},
            "containers": {"count": 2},
            "workload": {"kind": "mix", "workers": 2, "operations": 400,
                         "ops": {"read": 0.6, "write": 0.2, "append": 0.1, "stat": 0.1}},
            "sweep": {"driver.name": ["overlay2", "zfs"]}}
    data.update(changes)
    return data


def slow_disk(tmp_path: Path, factor: float = 5.0) -> str:
    """A copy of the ssd profile whose flushes and request latencies are ``factor`` times slower."""
    profile = yaml.safe_load(SSD.read_text())
    profile["name"] = "slow-ssd"
    profile["disk"]["fsync_latency"] = f"{2 * factor}ms"
    profile["disk"]["write_latency"] = f"{60 * factor}us"
    path = tmp_path / "slow-ssd.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


def invoke(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_slower_disk_is_a_regression_and_an_unchanged_run_is_not(tmp_path):
    sim.run_scenario(probe_sweep(), out=tmp_path / "base")
    saved = invoke("baseline", "save", tmp_path / "base", "probe", "--root", tmp_path / "baselines")
    assert saved.exit_code == 0, saved.output
    sim.run_scenario(probe_sweep(profile=slow_disk(tmp_path)), out=tmp_path / "slow")
    sim.run_scenario(probe_sweep(), out=tmp_path / "same")
    baseline = tmp_path / "baselines" / "probe"

    slow = invoke("compare", tmp_path / "slow", baseline, "--anyway")  # another profile: another experiment
    assert slow.exit_code == 1, slow.output
    regressions = slow.output.split("## Regressions")[1].split("## Improvements")[0]
    assert "| driver.name=overlay2 image.file_size=4KiB " in regressions
    assert "| driver.name=btrfs image.file_size=16MiB " in regressions
    assert "first_write_s" in regressions and "throughput_ops_s" in regressions
    report = json.loads((tmp_path / "slow" / "comparisons" / "vs-probe.json").read_text())
    assert report["exit_code"] == 1
    flagged = {(row["point"], row["metric"]) for row in report["rows"] if row["status"] == "regression"}
    assert ("driver.name=overlay2 image.file_size=4KiB", "first_write_s") in flagged
    assert ("driver.name=btrfs image.file_size=4KiB", "second_write_s") in flagged
    # Bytes moved are the same on a slower disk: not flagged.
    assert not any(metric.endswith("bytes") for _, metric in flagged)
    assert (tmp_path / "slow" / "comparisons" / "vs-probe.md").read_text().startswith("# Comparison of `probe_sweep`")
    # The Python API takes folders too, and gives each row its swept values
    from_api = compare(tmp_path / "slow", baseline, anyway=True)
    assert from_api.exit_code == 1
    assert from_api.regressions[0]["params"].keys() == {"driver.name", "image.file_size"}

    same = invoke("compare", tmp_path / "same", "probe", "--output-dir", tmp_path / "out")
    # a baseline name alone is looked up under benchmarks/baselines: not there from here
    assert same.exit_code == 2 and "no such run folder" in same.output
    same = invoke("compare", tmp_path / "same", baseline, "--output-dir", tmp_path / "out")
    assert same.exit_code == 0, same.output
    assert "## Regressions (0)" in same.output and "## Improvements (0)" in same.output
    assert json.loads((tmp_path / "out" / "vs-probe.json").read_text())["counts"]["regression"] == 0


def test_metric_filter_and_improvements(tmp_path):
    slow = sim.run_scenario(probe_sweep(profile=slow_disk(tmp_path)))
    fast = sim.run_scenario(probe_sweep())
    comparison = compare(fast, slow, metrics=["first_write_s", "throughput_ops_s"], anyway=True)
    assert {row["metric"] for row in comparison.rows} == {"first_write_s", "throughput_ops_s"}
    assert comparison.exit_code == 0
    assert len(comparison.with_status("improvement")) == 8  # 4 points x 2 metrics, all faster


def test_noise_between_seeds_is_not_flagged_but_a_slower_disk_is(tmp_path):
    one, two = sim.run_scenario(mix(seed=1)), sim.run_scenario(mix(seed=2))
    comparison = compare(two, one, anyway=True)
    assert comparison.exit_code == 0, comparison.markdown()
    assert not comparison.regressions and not comparison.with_status("improvement")
    # The seeds do move some means by more than the tolerance: the significance test is what
    # keeps them from being flagged.
    beyond = [row for row in comparison.rows if row["change"] is not None and abs(row["change"]) > 0.05]
    assert beyond, "expected some seed noise beyond 5% for this test to mean anything"
    assert all(row["test"] == "ci99-overlap" and row["ci_low"] is not None for row in beyond)

    slow = sim.run_scenario(mix(seed=2, profile=slow_disk(tmp_path, factor=3)))
    flagged = compare(slow, one, anyway=True)
    assert flagged.exit_code == 1
    assert {"latency_mean_s", "throughput_ops_s"} <= {row["metric"] for row in flagged.regressions}


def test_mann_whitney_decides_with_enough_replicates():
    base = np.linspace(1.0, 1.1, 8)
    row = compare_metric("latency_mean_s", base, base * 1.2, rtol=0.05)
    assert (row["test"], row["status"]) == ("mann-whitney", "regression") and row["p_value"] < 0.002
    assert row["ci_low"] < row["change"] < row["ci_high"]
    shuffled = compare_metric("latency_mean_s", base, base[::-1] * 1.001, rtol=0.0)
    assert shuffled["status"] == "unchanged" and shuffled["p_value"] > 0.002


@pytest.mark.parametrize("metric, new, status", [
    ("throughput_ops_s", 90.0, "regression"), ("throughput_ops_s", 110.0, "improvement"),
    ("copy_up_bytes", 110.0, "regression"), ("page_cache_hit_ratio", 90.0, "regression"),
    ("latency_p99_s", 104.0, "unchanged"), ("latency_p99_s", 94.0, "improvement"),
    ("ops", 200.0, "changed"), ("operations_executed", 100.0, "unchanged"),
])
def test_direction_of_each_kind_of_metric(metric, new, status):
    assert compare_metric(metric, np.array([100.0]), np.array([new]), rtol=0.05)["status"] == status


def test_from_zero_and_undefined_values():
    errors = compare_metric("errors", np.array([0.0]), np.array([3.0]), rtol=0.05)
    assert errors["status"] == "regression" and errors["change_text"] == "+inf" and errors["change"] is None
    appeared = compare_metric("copy_up_p50_s", np.array([np.nan]), np.array([0.002]), rtol=0.05)
    assert appeared["status"] == "changed"
    assert compare_metric("copy_up_p50_s", np.array([np.nan]), np.array([np.nan]), rtol=0.05)["status"] == "unchanged"


@pytest.mark.parametrize("change, message", [
    ({"name": "other"}, "different scenarios: the run is 'other', the baseline is 'probe_sweep'"),
    ({"sweep": {"driver.name": ["overlay2", "btrfs"], "image.file_size": ["4KiB"]}},
     "the baseline has points the run lacks: driver.name=overlay2 image.file_size=16MiB (and 1 more)"),
    ({"sweep": {"driver.name": ["overlay2", "btrfs", "zfs"], "image.file_size": ["4KiB", "16MiB"]}},
     "the run has points the baseline lacks: driver.name=zfs image.file_size=4KiB (and 1 more)"),
    ({"sweep": {"driver.name": ["overlay2", "btrfs"], "image.layers": [2]}},
     "the run varies driver.name, image.layers but the baseline varies driver.name, image.file_size: "
     "save a new baseline for this sweep"),
])
def test_what_cannot_be_compared_exits_2_with_one_line(tmp_path, change, message):
    sim.run_scenario(probe_sweep(), out=tmp_path / "base")
    sim.run_scenario(probe_sweep(**change), out=tmp_path / "run")
    result = invoke("compare", tmp_path / "run", tmp_path / "base")
    assert result.exit_code == 2
    assert result.output == f"cowsim: error: {message}\n"
    assert not (tmp_path / "run" / "comparisons").exists()


def test_unknown_metric_and_missing_folders_exit_2(tmp_path):
    sim.run_scenario(probe_sweep(), out=tmp_path / "base")
    result = invoke("compare", tmp_path / "base", tmp_path / "base", "--metric", "latency_p42_s")
    assert result.exit_code == 2
    assert result.output.startswith("cowsim: error: unknown metric 'latency_p42_s': use one of ops,")
    assert len(result.output.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    result = invoke("compare", tmp_path / "empty", tmp_path / "base")
    assert result.exit_code == 2
    assert result.output == f"cowsim: error: {tmp_path / 'empty'}: neither a run folder nor a baseline\n"


def test_baseline_save_is_reviewable_and_never_overwritten_silently(tmp_path):
    run = sim.run_scenario(probe_sweep(), out=tmp_path / "run")
    root = tmp_path / "baselines"
    assert invoke("baseline", "save", tmp_path / "run", "probe", "--root", root).exit_code == 0
    summary = (root / "probe" / "summary.json").read_text().splitlines()
    assert len(summary) == len(run.summary) + 2  # one row per line between the brackets
    assert json.loads((root / "probe" / "manifest.json").read_text())["scenario"] == "probe_sweep"
    again = invoke("baseline", "save", tmp_path / "run", "probe", "--root", root)
    assert again.exit_code == 2 and "already exists: pass --force" in again.output
    assert invoke("baseline", "save", tmp_path / "run", "probe", "--root", root, "--force").exit_code == 0
    assert sorted(p.name for p in root.iterdir()) == ["probe"]  # no partial or retired folders left
    bad = invoke("baseline", "save", tmp_path / "run", "../escape", "--root", root)
    assert bad.exit_code == 2 and "baseline name" in bad.output
    run.manifest["status"] = "failed"  # some points raised: their rows are missing
    with pytest.raises(baselines.BaselineError, match="the run is failed; a baseline is made from a complete run only"):
        baselines.save(run, "partial", root)
    loaded = baselines.load(root / "probe")
    assert list(loaded.summary.columns) == list(run.summary.columns)
    assert compare(run, loaded, rtol=0.0).differences == []


def test_a_column_renamed_since_a_folder_was_written_is_read_under_its_new_name(tmp_path):
    run = sim.run_scenario(probe_sweep(), out=tmp_path / "run")
    baselines.save(run, "probe", tmp_path)
    old = {"events": "operations_executed"}  # its name before issue 16
    written = tmp_path / "probe" / "summary.json"
    written.write_text(written.read_text().replace('"operations_executed":', '"events":'))
    summary = pd.read_parquet(tmp_path / "run" / "summary.parquet").rename(columns={v: k for k, v in old.items()})
    summary.to_parquet(tmp_path / "run" / "summary.parquet", index=False)
    for older in (baselines.load(tmp_path / "probe"), sim.load_run(tmp_path / "run")):
        assert "events" not in older.summary and list(older.summary["operations_executed"]) == [4] * 4
        assert compare(run, older, rtol=0.0).differences == []


def test_every_summary_column_has_a_unit_and_a_direction():
    scenario = {"image": {"kind": "synthetic", "layers": 2, "files_per_layer": 20},
                "containers": {"logging": {"bytes_per_op": 100}},  # the logs' columns too
                "workload": {"kind": "mix", "operations": 20}}
    produced = set(simulate(Scenario.model_validate(scenario)).summary)
    # a node's start-up adds its columns (sim/pull.py)
    produced |= set(simulate(Scenario.model_validate({**scenario, "node": {"images_present": False}})).summary)
    assert produced - set(METRICS) == set(), "add the new summary columns to sim/metrics.py"
    assert set(METRICS) - produced == set(), "sim/metrics.py lists columns the summary no longer has"


def test_a_scenario_without_sweep_is_matched_by_its_driver():
    single = {"name": "single", "replicates": 3, "image": {"kind": "synthetic", "layers": 2, "files_per_layer": 30},
              "workload": {"kind": "mix", "operations": 50}}
    comparison = compare(sim.run_scenario(single), sim.run_scenario(single))
    assert comparison.keys == ["driver"] and comparison.differences == []
    assert {row["point"] for row in comparison.rows} == {"driver=overlay2"}
