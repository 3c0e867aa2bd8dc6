"""Corrupt run folders, table by table: `report`, `compare` and `baseline save` name the damaged
file in one line (exit 2); `--resume` keeps only the stored runs it can trust, re-runs the rest,
never counts a run twice and cleans up what a killed write left behind."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import sim
from sim import api
from sim.cli import main

from .refusals import one_line

SCENARIO = {"name": "folders", "seed": 3, "replicates": 2, "image": {"kind": "probe", "layers": 2},
            "workload": {"kind": "copyup_probe"},
            "sweep": {"driver.name": ["overlay2", "btrfs"], "image.file_size": ["4KiB", "1MiB"]}}
RUNS = 8


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("complete") / "run"
    sim.run_scenario(SCENARIO, out=folder)
    return folder


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def replace_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def extra_row(path: Path) -> None:
    frame = pd.read_parquet(path)
    pd.concat([frame, frame.iloc[:1]]).to_parquet(path, index=False)


# (id, file, what is done to it, what the one line says about it)
CORRUPTIONS = [
    ("summary truncated", "summary.parquet", truncate, "damaged (truncated, empty or not parquet"),
    ("summary empty", "summary.parquet", lambda p: p.write_bytes(b""), "damaged (truncated, empty or not parquet"),
    ("summary foreign", "summary.parquet", lambda p: pd.DataFrame({"x": [1]}).to_parquet(p),
     "not a cowsim table (no column point, replicate, status)"),
    ("summary missing", "summary.parquet", Path.unlink, "missing, though the manifest says the run is complete"),
    ("summary a directory", "summary.parquet", replace_dir, "cannot read the table: it is a directory"),
    ("summary with a run twice", "summary.parquet", extra_row, f"{RUNS + 1} rows for the {RUNS} runs"),
    ("space truncated", "space.parquet", truncate, "damaged (truncated, empty or not parquet"),
    ("ops truncated", "ops.parquet", truncate, "damaged (truncated, empty or not parquet"),
    ("ops foreign bytes", "ops.parquet", lambda p: p.write_bytes(b"PAR1 not really"), "damaged"),
    ("manifest truncated", "manifest.json", truncate, "damaged (not valid JSON"),
    ("manifest a list", "manifest.json", lambda p: p.write_text("[1, 2]"), "damaged (not a cowsim manifest)"),
    ("manifest /dev/zero", "manifest.json", lambda p: (p.unlink(), p.symlink_to("/dev/zero")),
     "not a regular file but a character device"),
    ("resolved scenario broken", "scenario.resolved.yaml", lambda p: p.write_text("name: [unclosed\n"), "damaged"),
    ("resolved scenario a list", "scenario.resolved.yaml", lambda p: p.write_text("- 1\n"), "not a scenario mapping"),
]


@pytest.mark.parametrize("name, damage, message", [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_a_damaged_run_folder_is_named_in_one_line(tmp_path, complete, name, damage, message):
    folder = tmp_path / "run"
    shutil.copytree(complete, folder)
    damage(folder / name)
    runner = CliRunner()
    for args in (["report", folder], ["compare", folder, complete],
                 ["compare", complete, folder, "--output-dir", tmp_path],
                 ["baseline", "save", folder, "b", "--root", tmp_path / "baselines"]):
        one_line(runner.invoke(main, [str(a) for a in args]), str(folder / name), message)
    assert not (tmp_path / "baselines").exists() and not (folder / "report").exists()


def test_report_on_a_run_whose_runs_all_failed_says_so(tmp_path, monkeypatch):
    import sim.runner

    def broken(*args, **kwargs):
        raise RuntimeError("injected")
    monkeypatch.setattr(sim.runner, "simulate", broken)
    sim.run_scenario(SCENARIO, out=tmp_path / "run")
    one_line(CliRunner().invoke(main, ["report", str(tmp_path / "run")]),
             f"all {RUNS} runs failed (the first: RuntimeError: injected): nothing to report")


# -- resume ------------------------------------------------------------------------------------------
def interrupted(folder: Path, monkeypatch, keep: int = 5) -> None:
    """A run folder as Ctrl-C leaves it: ``keep`` runs stored, the manifest saying interrupted."""
    real = api.execute

    def stopping(*args, **kwargs):
        for count, item in enumerate(real(*args, **kwargs)):
            if count == keep:
                raise KeyboardInterrupt
            yield item
    monkeypatch.setattr(api, "execute", stopping)
    with pytest.raises(api.RunInterrupted):
        sim.run_scenario(SCENARIO, out=folder)
    monkeypatch.undo()


def copy_part(source: str, target: str):
    return lambda points: shutil.copy(points / source, points / target)


# (id, what is done to the points/ of an interrupted run, runs resume must do)
RESUME_CASES = [
    ("nothing wrong", lambda points: None, RUNS - 5),
    ("part truncated", lambda points: truncate(points / "000000-0000.arrow"), RUNS - 4),
    ("part garbage", lambda points: (points / "000001-0000.arrow").write_bytes(b"garbage"), RUNS - 4),
    ("part empty", lambda points: (points / "000001-0001.arrow").write_bytes(b""), RUNS - 4),
    ("part of another run under this run's name", copy_part("000000-0001.arrow", "000000-0000.arrow"), RUNS - 4),
    ("part beyond the sweep", copy_part("000000-0000.arrow", "000099-0000.arrow"), RUNS - 5),
    ("part copied under another name", copy_part("000000-0000.arrow", "000000-0000 (copy).arrow"), RUNS - 5),
    ("stray file", lambda points: (points / "zzz.arrow").write_bytes(b"zzz"), RUNS - 5),
    ("temporaries of killed writes", lambda points: ((points / ".000003-0000.arrow.tmp-99999").write_bytes(b"half"),
                                                     (points.parent / ".manifest.json.tmp-99999").write_text("{")),
     RUNS - 5),
]


@pytest.fixture(scope="module")
def whole() -> pd.DataFrame:
    return sim.run_scenario(SCENARIO).summary


@pytest.mark.parametrize("damage, todo", [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES])
def test_resume_keeps_only_what_it_can_trust(tmp_path, monkeypatch, whole, damage, todo):
    folder = tmp_path / "run"
    interrupted(folder, monkeypatch)
    damage(folder / "points")
    resumed = api.resume_run(folder)
    assert resumed.manifest["sessions"][-1]["runs_to_do"] == todo
    assert len(resumed.summary) == RUNS
    pd.testing.assert_frame_equal(resumed.summary, whole)
    pd.testing.assert_frame_equal(sim.load_run(folder).summary, whole)
    assert not list(folder.glob(".*.tmp-*")) and not (folder / "points").exists()


def test_resume_of_a_folder_whose_manifest_is_broken_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    interrupted(folder, monkeypatch)
    (folder / "manifest.json").write_text('{"status": "interr')
    one_line(CliRunner().invoke(main, ["run", "--resume", str(folder)]), f"{folder / 'manifest.json'}: damaged")
    assert len(list((folder / "points").glob("*.arrow"))) == 5  # nothing was thrown away
