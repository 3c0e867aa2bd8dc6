"""The speed benchmark's code runs (tiny sizes; the figures themselves are benchmarks, not tests)."""
from __future__ import annotations

import json

import pytest
import yaml

from benchmarks import breakdown, floor, speed

TINY = {"name": "tiny_mix", "seed": 1, "image": {"kind": "synthetic", "layers": 2, "files_per_layer": 30},
        "workload": {"kind": "mix", "operations": 60}, "sweep": {"driver.name": ["overlay2", "btrfs"]}}


def test_measure_compares_per_operation_with_one_bare_cycle_per_operation():
    row = speed.measure(TINY, repeat=1)
    assert (row["scenario"], row["points"], row["runs"]) == ("tiny_mix", 2, 2)
    # every measured operation, plus each run's setup (image preparation, container creation and removal)
    assert row["measured_ops"] == 120 and row["operations"] > row["measured_ops"] and row["disk_requests"] > 0
    assert row["ops_per_s"] == row["operations"] / row["cpu_s"]
    assert row["us_per_operation"] == pytest.approx(1e6 * row["cpu_s"] / row["operations"])
    assert row["bare_us_per_cycle"] == pytest.approx(1e6 * row["bare_cpu_s"] / row["operations"])
    assert row["cycles_per_operation"] == pytest.approx(row["cpu_s"] / row["bare_cpu_s"])
    assert row["cycles_per_operation"] > 0


def test_bare_loop_runs_one_cycle_per_operation_executed(monkeypatch):
    asked = []
    monkeypatch.setattr(speed, "bare_simpy", lambda cycles: asked.append(cycles) or 1.0)
    row = speed.measure(TINY, repeat=1)
    assert asked == [row["operations"]] and row["bare_cpu_s"] == 1.0


def test_command_writes_json_and_compares_two_files(tmp_path, capsys):
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY))
    for name in ("old", "new"):
        assert speed.main([str(scenario), "--repeat", "1", "--json", str(tmp_path / f"{name}.json")]) == 0
    figures = json.loads((tmp_path / "new.json").read_text())
    assert [row["scenario"] for row in figures["scenarios"]] == ["tiny_mix", "all"]
    assert "cycles/operation" in capsys.readouterr().out
    assert speed.main(["--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "tiny_mix" and len(lines) == 3


def test_floor_loop_does_the_mechanism_work_of_each_operation():
    row = floor.measure(3000, repeat=1)
    assert row["records"] == row["operations"] == 3000 and row["us_per_operation"] > 0
    assert row["lru_touches_per_operation"] > 2  # a dentry per path component, a page-cache block
    assert 0 < row["disk_waits_share"] < 1 and 0 < row["dentry_hit_ratio"] < 1


def test_breakdown_puts_each_function_in_its_component():
    import sim.engine
    engine = sim.engine.__file__
    lru_line = sim.engine.LRU.__init__.__code__.co_firstlineno
    spans: dict = {}
    assert breakdown._component(("/x/sim/fsview.py", 10, "lookup"), spans) == "path lookup"
    assert breakdown._component(("/x/sim/drivers/union.py", 10, "plan"), spans) == "driver plans"
    assert breakdown._component((engine, lru_line, "__init__"), spans) == "LRU"
    assert breakdown._component((engine, sim.engine.Engine.__init__.__code__.co_firstlineno, "__init__"), spans) \
        == "engine step loop"
    assert breakdown._component((engine, sim.engine.Disk.__init__.__code__.co_firstlineno, "__init__"), spans) == "disk"
    assert breakdown._component(("/x/sim/drivers/base.py", 10, "lookup"), spans) == "path lookup"
    assert breakdown._component(("~", 0, "<method 'move_to_end' of 'collections.OrderedDict' objects>"), spans) \
        == "LRU"
    assert breakdown._component(("~", 0, "<built-in method _bisect.bisect_right>"), spans) is None  # its callers'
    assert breakdown._component(("/usr/lib/python3/simpy/core.py", 1, "step"), spans) == "SimPy"
    assert breakdown._component(("/usr/lib/python3/json/decoder.py", 1, "decode"), spans) == "other"


def test_breakdown_command_prints_the_components_and_the_floor(capsys):
    assert speed.main(["--breakdown", "--operations", "1200", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for component, _what, _markers in breakdown.COMPONENTS:
        assert f"\n{component} " in out
    assert "floor (benchmarks.floor" in out and "Python calls per operation" in out
