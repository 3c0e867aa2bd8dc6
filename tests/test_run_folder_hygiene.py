"""What a user meets around a run: --set mistakes blamed on the --set, no leftover lock file,
read_ops as documented."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import sim
from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override, blamed", [
    ("image.from=missing.tar", "--set image.from=missing.tar: image: "),           # a field below the error's
    ("image.layers=abc", "--set image.layers=abc: image.layers: "),
    ("zzz", "--set zzz: use --set KEY=VALUE"),                                     # said once, not "--set: --set"
])
def test_a_set_mistake_is_blamed_on_the_set_option(override, blamed):
    scenario = "debian_trace.yaml" if override.startswith("image.from") else "copyup_file_size.yaml"
    result = CliRunner().invoke(main, ["validate", str(ROOT / "scenarios" / scenario), "--set", override])
    assert result.exit_code == 2
    assert result.output.startswith(f"cowsim: error: {blamed}"), result.output
    assert ".yaml:" not in result.output


def test_a_finished_run_folder_has_no_lock_file(tmp_path):
    run = sim.run_scenario({"name": "tiny", "image": {"kind": "probe"}, "workload": {"kind": "copyup_probe"}},
                           tmp_path / "run")
    assert not (run.path / ".lock").exists()
    assert not [p for p in run.path.rglob("*") if p.is_file() and p.stat().st_size == 0]


def test_read_ops_is_what_its_docstring_says(tmp_path):
    run = sim.run_scenario({"name": "tiny", "image": {"kind": "probe"}, "workload": {"kind": "copyup_probe"}},
                           tmp_path / "run")
    every = list(sim.load_run(run.path).read_ops(["op"])["op"])
    assert every[0] == "prepare_image" and every[-2:] == ["first_write", "second_write"]  # setup included
    ops = sim.load_run(run.path).read_ops(["op", "latency_s", "no_such_column"], step=2)
    assert list(ops.columns) == ["op", "latency_s"]  # a column the run lacks is left out
    assert list(ops["op"]) == every[::2]  # the first row, then every second
    loaded = sim.load_run(run.path)
    assert len(loaded.ops) == len(every)  # once ops is used, read_ops slices it in memory, the same way
    assert list(loaded.read_ops(["op"], step=2)["op"]) == every[::2]
    assert list(loaded.read_ops(["op"], step=2).index) == list(range(len(every[::2])))
