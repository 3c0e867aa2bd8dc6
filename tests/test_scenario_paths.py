"""Paths in a scenario file start at the file's directory, as in every configuration file."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sim
from sim.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scenario folder with its data beside it, and a working directory somewhere else."""
    folder = tmp_path / "project" / "scenarios"
    (folder / "data").mkdir(parents=True)
    shutil.copy(ROOT / "scenarios/data/debian-bookworm.csv.gz", folder / "data")
    shutil.copy(ROOT / "scenarios/data/python3-startup.strace.gz", folder / "data")
    shutil.copy(ROOT / "sim/profiles/ssd.yaml", folder / "data/disk.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return folder


def test_image_trace_and_profile_are_found_next_to_the_scenario(project):
    (project / "s.yaml").write_text(
        "name: rel\nprofile: data/disk.yaml\nimage: {from: data/debian-bookworm.csv.gz}\n"
        "workload: {kind: trace, path: data/python3-startup.strace.gz}\n"
        "sweep: {workload.path: [data/python3-startup.strace.gz]}\n")
    run = sim.run_scenario("../project/scenarios/s.yaml", "out")
    assert run.failed == 0
    assert list(run.summary["workload.path"]) == ["data/python3-startup.strace.gz"]  # as written
    assert run.manifest["base_dir"] == str(project)


def test_a_missing_file_is_blamed_on_the_line_that_names_it(project):
    (project / "s.yaml").write_text("name: rel\nimage: {from: data/nothing.tar}\nworkload: {kind: copyup_probe}\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:2"):
        sim.run_scenario(project / "s.yaml")


def test_a_mapping_reads_paths_from_the_working_directory(project):
    with pytest.raises(ScenarioError):
        sim.run_scenario({"name": "rel", "image": {"from": "data/debian-bookworm.csv.gz"},
                          "workload": {"kind": "copyup_probe"}})


def test_resume_finds_swept_paths_from_where_the_scenario_was(project, monkeypatch):
    (project / "s.yaml").write_text(
        "name: rel\nimage: {from: data/debian-bookworm.csv.gz}\n"
        "workload: {kind: trace, path: data/python3-startup.strace.gz}\n"
        "sweep: {workload.path: [data/python3-startup.strace.gz], driver.name: [overlay2, btrfs]}\n")
    simulate = sim.runner.simulate

    def fail_on_btrfs(scenario, *args, **kwargs):
        if scenario.driver.name == "btrfs":
            raise RuntimeError("injected failure")
        return simulate(scenario, *args, **kwargs)
    monkeypatch.setattr(sim.runner, "simulate", fail_on_btrfs)
    assert sim.run_scenario(project / "s.yaml", "out").failed == 1
    monkeypatch.undo()
    monkeypatch.chdir(project.parent.parent)  # resumed from yet another directory
    resumed = sim.api.resume_run(project.parent.parent / "elsewhere" / "out")
    assert resumed.failed == 0 and resumed.manifest["sessions"][-1]["runs_to_do"] == 1


def test_a_path_given_with_set_starts_at_the_working_directory(project, monkeypatch):
    (project / "s.yaml").write_text("name: rel\nimage: {from: data/debian-bookworm.csv.gz}\n"
                                    "workload: {kind: trace, path: data/nothing.strace}\n")
    monkeypatch.chdir(project / "data")
    run = sim.run_scenario(project / "s.yaml", overrides=["workload.path=python3-startup.strace.gz"])
    assert run.failed == 0
    swept = sim.run_scenario(project / "s.yaml", overrides=["sweep.workload.path=[./python3-startup.strace.gz]"])
    assert swept.failed == 0
