"""The command line end to end: real subprocesses, exit codes, one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sim

from .waits import HANG_SECONDS

ROOT = Path(__file__).resolve().parents[1]


def cowsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_probe_prints_json():
    result = cowsim("probe", "--driver", "overlay2", "--file-size", "64MiB", "--layers", "8", "--dir-depth", "4",
                    "--json")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["copy_up_bytes"] == 64 * 2**20
    assert probe["first_write_s"] > probe["copy_up_s"] > 0 and probe["second_write_s"] > 0


def test_probe_takes_the_entries_of_the_directory():
    result = cowsim("probe", "--driver", "fuse-overlayfs", "--layers", "4", "--dir-entries", "300", "--json")
    assert result.returncode == 0, result.stderr
    populated = json.loads(result.stdout)
    assert populated["dir_entries"] == 300
    assert populated["lookup_s"] > sim.probe("fuse-overlayfs", layers=4, dir_entries=1)["lookup_s"]


def test_drivers_lists_every_driver_with_options():
    result = cowsim("drivers", "--json")
    names = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(names) == {"overlay2", "overlay", "aufs", "fuse-overlayfs", "btrfs", "zfs", "devicemapper", "vfs"}
    assert names["devicemapper"]["options"]["block_size"]["default"] == 65536
    assert names["overlay2"]["options"]["metacopy"]["default"] is False


@pytest.mark.parametrize("args, message", [
    (["--driver", "ext9"], "unknown driver 'ext9'"),
    (["--driver", "overlay2", "--file-size", "-5MiB"], "must not be negative"),
    (["--driver", "overlay2", "--file-size", "5 parsecs"], "unknown size unit"),
    (["--driver", "overlay2", "--file-size", "lots"], "cannot read"),
    (["--driver", "aufs", "--layers", "130"], "aufs allows at most 125 image layers, got 130"),
    (["--driver", "overlay2", "--option", "block_size=64KiB"], "block_size"),
    (["--driver", "devicemapper", "--option", "block_size=100KiB"], "multiple of 64 KiB"),
    (["--driver", "overlay2", "--dir-entries", "-1"], "dir_entries"),
])
def test_probe_bad_input_is_one_line(args, message):
    result = cowsim("probe", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("content, message", [
    ("driver: {name: ext9}\n", "unknown driver 'ext9'"),
    ("image: {kind: probe, file_size: -1MiB}\n", "file_size"),
    ("image: {kind: probe, layers: 126}\ndriver: {name: aufs}\n", "at most 125"),
])
def test_run_bad_input_is_one_line_and_writes_nothing(tmp_path, content, message):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(content)
    result = cowsim("run", scenario, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_run_writes_the_run_folder_and_never_overwrites(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: tiny\nimage: {kind: probe, file_size: 1MiB}\nworkload: {kind: copyup_probe}\n"
                        "sweep: {driver.name: [overlay2, btrfs]}\n")
    out = tmp_path / "run"
    result = cowsim("run", scenario, "-o", out)
    assert result.returncode == 0, result.stderr
    for name in ("scenario.resolved.yaml", "manifest.json", "ops.parquet", "summary.parquet", "summary.csv",
                 "space.parquet"):
        assert (out / name).exists(), name
    summary = pd.read_parquet(out / "summary.parquet")
    assert list(summary["driver"]) == ["overlay2", "btrfs"]
    assert "overlay2" in result.stdout and "btrfs" in result.stdout
    before = (out / "summary.csv").read_text()
    again = cowsim("run", scenario, "-o", out)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert (out / "summary.csv").read_text() == before


def test_same_seed_same_numbers():
    import sim
    spec = {"name": "det", "seed": 11, "containers": {"count": 3}, "image": {"layers": 3, "files_per_layer": 60},
            "workload": {"workers": 2, "operations": 400}}
    first, second = sim.run_scenario(spec), sim.run_scenario(spec)
    pd.testing.assert_frame_equal(first.ops, second.ops)
    other = sim.run_scenario({**spec, "seed": 12})
    assert not first.ops["path"].equals(other.ops["path"])


def test_a_reader_that_stops_early_is_not_an_error():
    """`cowsim image inspect X | head -1`: the pipe closes, cowsim ends quietly with 0. (5,000
    rows of files: more than a pipe's buffer holds, so cowsim is still writing when it closes.)"""
    inspect = subprocess.Popen([sys.executable, "-m", "sim", "image", "inspect",
                                str(ROOT / "scenarios/data/debian-bookworm.csv.gz"), "--top", "5000"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert inspect.stdout.readline().startswith("image debian-bookworm:")
    inspect.stdout.close()
    assert inspect.wait(timeout=HANG_SECONDS) == 0 and inspect.stderr.read() == ""
