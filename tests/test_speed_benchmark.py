"""The speed benchmark's code runs (tiny sizes; the figures themselves are benchmarks, not tests)."""
from __future__ import annotations

import json

import yaml

from benchmarks import speed

TINY = {"name": "tiny_mix", "seed": 1, "image": {"kind": "synthetic", "layers": 2, "files_per_layer": 30},
        "workload": {"kind": "mix", "operations": 60}, "sweep": {"driver.name": ["overlay2", "btrfs"]}}


def test_measure_counts_operations_points_and_disk_events():
    row = speed.measure(TINY, repeat=1)
    assert (row["scenario"], row["points"], row["runs"]) == ("tiny_mix", 2, 2)
    assert row["operations"] >= 120 and row["disk_events"] > 0
    assert row["ops_per_s"] == row["operations"] / row["cpu_s"]
    assert row["slowdown_vs_bare"] == row["cpu_s"] / row["bare_cpu_s"] > 0


def test_command_writes_json_and_compares_two_files(tmp_path, capsys):
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY))
    for name in ("old", "new"):
        assert speed.main([str(scenario), "--repeat", "1", "--json", str(tmp_path / f"{name}.json")]) == 0
    figures = json.loads((tmp_path / "new.json").read_text())
    assert [row["scenario"] for row in figures["scenarios"]] == ["tiny_mix", "all"]
    assert "x slower than bare" in capsys.readouterr().out
    assert speed.main(["--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "tiny_mix" and len(lines) == 3
