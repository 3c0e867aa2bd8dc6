"""Bad scenario input: one line `FILE:LINE: field: what is wrong`, exit 2, no traceback, no results."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from sim.cli import main

BASE = "name: bad\nimage:\n  kind: probe\n  layers: 2\nworkload: {kind: copyup_probe}\n"

# (scenario text, expected line, expected field, a piece of the message)
CASES = {
    "yaml syntax": ("name: x\nimage: {layers: [1\n", 3, None, "not valid YAML"),
    "empty file": ("", 1, None, "the file is empty"),
    "only comments": ("# nothing\n", 1, None, "the file is empty"),
    "top level list": ("- a\n- b\n", 1, None, "must be a mapping"),
    "unknown key": ("name: x\nimage:\n  kind: probe\n  layer: 4\n", 4, "image.layer", "did you mean 'layers'?"),
    "unknown top key": ("name: x\nreplicate: 2\n", 2, "replicate", "did you mean 'replicates'?"),
    "wrong type": ("name: x\nseed: 1\nimage:\n  kind: probe\n  layers: many\n", 5, "image.layers", "got 'many'"),
    "wrong type bool": ("name: x\nworkload:\n  kind: copyup_probe\n  fsync: maybe\n", 4, "workload.fsync",
                        "got 'maybe'"),
    "negative size": ("name: x\nimage:\n  kind: probe\n  file_size: -5MiB\n", 4, "image.file_size", "got '-5MiB'"),
    "zero size": ("name: x\nimage:\n  kind: synthetic\n  file_size: 0\n", 4, "image.file_size", "greater than 0"),
    "zero request": ("name: x\nworkload:\n  request_size: 0B\n", 3, "workload.request_size", "greater than 0"),
    "unknown unit": ("name: x\nimage:\n  kind: probe\n  file_size: 5XB\n", 4, "image.file_size",
                     "unknown size unit 'XB'"),
    "unparseable unit": ("name: x\nworkload:\n  think_time: soon\n", 3, "workload.think_time", "cannot read 'soon'"),
    "unknown driver": ("name: x\ndriver:\n  name: overlay3\n", 3, "driver.name", "use one of overlay2, overlay, aufs"),
    "foreign option": ("name: x\ndriver:\n  name: btrfs\n  options:\n    metacopy: true\n", 5,
                       "driver.options.metacopy", "btrfs has no option 'metacopy'"),
    "too many layers": ("name: x\ndriver: {name: aufs}\nimage:\n  kind: probe\n  layers: 200\n", 5, "image.layers",
                        "at most 125 image layers"),
    "sweep unknown key": ("name: x\nsweep:\n  image.bogus: [1, 2]\n", 3, "sweep.image.bogus", "unknown field 'bogus'"),
    "sweep unknown top key": ("name: x\nsweep:\n  seeds: [1, 2]\n", 3, "sweep.seeds", "did you mean 'seed'?"),
    "empty sweep list": ("name: x\nsweep:\n  driver.name: []\n", 3, "sweep.driver.name", "empty list"),
    "sweep not a list": ("name: x\nsweep:\n  driver.name: overlay2\n", 3, "sweep.driver.name", "give a list"),
    "sweep bad value": ("name: x\nimage: {kind: probe}\nsweep:\n  driver.name: [overlay2, btrfs]\n  image.layers:\n"
                        "    - 4\n    - 300\n", 7, "sweep.image.layers", "got 300"),
    "sweep bad driver": ("name: x\nsweep:\n  driver.name:\n    - overlay2\n    - ovrlay\n", 5, "sweep.driver.name",
                         "unknown driver 'ovrlay'"),
    "zip unequal": ("name: x\nsweep:\n  zip:\n    - {image.layers: [1, 2], image.dir_depth: [1]}\n", 4, "sweep.zip[0]",
                    "same length"),
    "zip bad value": ("name: x\nimage: {kind: probe}\nsweep:\n  zip:\n    - image.layers: [1, 2]\n"
                      "      image.dir_depth: [1, -3]\n", 6, "sweep.zip[0].image.dir_depth", "got -3"),
    "replicates zero": ("name: x\nreplicates: 0\n", 2, "replicates", "greater than or equal to 1"),
    "unreadable profile": ("name: x\nprofile: /nonexistent/p.yaml\n", 2, "profile", "no such profile"),
    "unknown profile": ("name: x\nprofile: ssdd\n", 2, "profile", "unknown profile 'ssdd'"),
    "unknown image kind": ("name: x\nimage: {kind: prob}\n", 2, "image.kind", "unknown kind 'prob'"),
    "unknown mix op": ("name: x\nworkload:\n  ops: {read: 1, wrte: 1}\n", 3, "workload.ops.wrte",
                       "did you mean 'write'?"),
    "node unknown key": ("name: x\nnode:\n  images_presnt: false\n", 3, "node.images_presnt",
                         "did you mean 'images_present'?"),
    "node downloads zero": ("name: x\nnode:\n  max_concurrent_downloads: 0\n", 3, "node.max_concurrent_downloads",
                            "greater than or equal to 1"),
    "node negative interval": ("name: x\nnode:\n  arrival_interval: -1s\n", 3, "node.arrival_interval", "-1s"),
    "node read fraction": ("name: x\nnode:\n  first_read_fraction: 1.5\n", 3, "node.first_read_fraction",
                           "less than or equal to 1"),
    "node compression": ("name: x\nnode:\n  compression: xz\n", 3, "node.compression", "'gzip' or 'zstd'"),
    "node compressed zero": ("name: x\nnode:\n  compressed_fraction: 0\n", 3, "node.compressed_fraction",
                             "greater than 0"),
    "image and images": ("name: x\nimage: {layers: 2}\nimages:\n  - {name: a}\n", 3, "images", "not both"),
    "unknown base": ("name: x\nimages:\n  - {name: a}\n  - name: b\n    base: c\n", 5, "images[1].base",
                     "unknown image 'c'"),
    "cycle of bases": ("name: x\nimages:\n  - {name: a, base: b}\n  - {name: b, base: a}\n", 3, "images[0].base",
                       "bases form a cycle: a -> b -> a"),
    "container of unknown image": ("name: x\nimages:\n  - {name: app1}\ncontainers:\n  groups:\n"
                                   "    - {image: app2, count: 2}\n", 6, "containers.groups[0].image",
                                   "unknown image 'app2' (did you mean 'app1'?)"),
    "stacked layers": ("name: x\ndriver: {name: aufs}\nimages:\n  - {name: a, layers: 100}\n  - name: b\n"
                       "    base: a\n    layers: 30\ncontainers: {groups: [{image: b}]}\n", 7, "images[1].layers",
                       "at most 125 image layers, got 130"),
    "image named twice": ("name: x\nimages:\n  - {name: a}\n  - name: a\n", 4, "images[1].name",
                          "two images are named 'a'"),
    "images item key": ("name: x\nimages:\n  - name: a\n    kind: probe\n    dir_depht: 2\n", 5,
                        "images[0].dir_depht", "did you mean 'dir_depth'?"),
    "rmi of a running image": ("name: x\nimages:\n  - {name: a}\nremove_images_at_end:\n  - a\n", 5,
                               "remove_images_at_end[0]", "docker rmi refuses"),
    "sweep an image that is not there": ("name: x\nimages:\n  - {name: a}\nsweep:\n  images.3.layers: [1, 2]\n", 5,
                                         "sweep.images.3.layers", "'3' is not an item of a list of 1"),
    "sweep a listed image's field": ("name: x\nimages:\n  - {name: a}\n  - {name: b, base: a}\n"
                                     "containers: {groups: [{image: b}]}\nsweep:\n  images.1.layers:\n    - 2\n"
                                     "    - 121\n", 9, "sweep.images.1.layers", "got 126"),
    "volume list item": ("name: x\ncontainers:\n  volumes:\n    - {name: v, mount: /d}\n    - {name: w, mont: /e}\n", 5,
                         "containers.volumes[1].mont", "did you mean 'mount'?"),
    "log compress without rotation": ("name: x\ncontainers:\n  logging:\n    max_size: 10MiB\n    compress: true\n", 5,
                                      "containers.logging.compress", "compress needs max_file of 2 or more"),
    "log line too long": ("name: x\ncontainers:\n  logging:\n    line_bytes: 1MiB\n", 4,
                          "containers.logging.line_bytes", "less than or equal to 16384"),
    "log driver": ("name: x\ncontainers:\n  logging:\n    driver: syslog\n", 4, "containers.logging.driver",
                   "'json-file' or 'local', got 'syslog'"),
    "log rate": ("name: x\ncontainers:\n  logging:\n    rate: fast\n", 4, "containers.logging.rate",
                 "cannot read 'fast' as a rate"),
    "log max_file": ("name: x\ncontainers:\n  logging:\n    max_file: 0\n", 4, "containers.logging.max_file",
                     "greater than or equal to 1"),
    "log max_size": ("name: x\ncontainers:\n  logging: {max_size: 1KiB}\n", 3, "containers.logging.max_size",
                     "greater than or equal to 4096"),
    "log unknown option": ("name: x\ncontainers:\n  logging:\n    max_sise: 1MiB\n", 4,
                           "containers.logging.max_sise", "did you mean 'max_size'?"),
}


def invoke(args, cwd):
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, args)
    finally:
        os.chdir(old)


def check_one_line(result, expected_prefix):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cowsim: error: {expected_prefix}"), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_scenario_is_one_line_with_file_line_and_field(tmp_path, case, command):
    text, line, field, message = CASES[case]
    (tmp_path / "bad.yaml").write_text(text)
    result = invoke([command, "bad.yaml", "-o", "out"] if command == "run" else [command, "bad.yaml"], tmp_path)
    prefix = f"bad.yaml:{line}: " + (f"{field}: " if field else "")
    error = check_one_line(result, prefix)
    assert message in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


def test_missing_scenario_file(tmp_path):
    result = invoke(["run", "nowhere.yaml"], tmp_path)
    check_one_line(result, "nowhere.yaml: no such scenario file")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_scenario_file(tmp_path):
    (tmp_path / "locked.yaml").write_text("name: x\n")
    (tmp_path / "locked.yaml").chmod(0)
    check_one_line(invoke(["validate", "locked.yaml"], tmp_path), "locked.yaml: cannot read")


def test_profile_that_cannot_be_read(tmp_path):
    # A directory cannot be read by anyone, root included (CI runs as root).
    (tmp_path / "p.yaml").mkdir()
    (tmp_path / "s.yaml").write_text(f"name: x\nprofile: {tmp_path / 'p.yaml'}\n")
    error = check_one_line(invoke(["validate", "s.yaml"], tmp_path), "s.yaml:2: profile: ")
    assert "cannot read the profile: it is a directory" in error


def test_unreadable_profile_file(tmp_path):
    (tmp_path / "p.yaml").write_text("disk: [not, a, profile\n")
    (tmp_path / "s.yaml").write_text(f"name: x\nprofile: {tmp_path / 'p.yaml'}\n")
    error = check_one_line(invoke(["validate", "s.yaml"], tmp_path), "s.yaml:2: profile: ")
    assert "not valid YAML" in error


@pytest.mark.parametrize("override, expected", [
    ("image.layers=many", "--set image.layers=many: image.layers: "),
    ("image.layrs=3", "--set image.layrs=3: image.layrs: unknown field 'layrs' (did you mean 'layers'?)"),
    ("sweep.driver.name=[]", "--set sweep.driver.name=[]: sweep.driver.name: an empty list"),
    ("nonsense", "--set nonsense: use --set KEY=VALUE"),
])
def test_bad_override(tmp_path, override, expected):
    (tmp_path / "s.yaml").write_text(BASE)
    check_one_line(invoke(["run", "s.yaml", "--set", override, "-o", "out"], tmp_path), expected)
    assert not (tmp_path / "out").exists()


def test_existing_results_folder_is_never_overwritten(tmp_path):
    (tmp_path / "s.yaml").write_text(BASE)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    check_one_line(invoke(["run", "s.yaml", "-o", "out", "-j", "1"], tmp_path), "out already exists")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
