"""A ninth driver needs its own file and nothing else: a toy driver, registered here at test time,
runs through `cowsim probe`, `cowsim drivers`, a sweep beside overlay2 and its report.

The toy, "copy-everything-on-write", copies the container's whole image into its layer at the
first change made in that container, then writes in place (what vfs pays at creation, paid late).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import sim
from sim import report
from sim.cli import main
from sim.drivers import REGISTRY
from sim.plots import DRIVER_STYLE, driver_style

NAME = "copy-everything"
ROOT = Path(__file__).resolve().parents[1]
# The driver's whole file, as a contributor would write it into sim/drivers/copy_everything.py.
TOY_SOURCE = '''"""copy-everything: a toy driver that copies the whole image up at a container's first change."""
from pydantic import BaseModel, ConfigDict, Field

from ..plan import COPY_UP
from .base import Driver, register


class CopyEverythingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files_per_request: int = Field(64, ge=1, description="files the copy reads per disk request [count]")


@register
class CopyEverything(Driver):
    name = "copy-everything"
    summary = "toy: the first change in a container copies its whole image up, then writes in place"
    Options = CopyEverythingOptions
    keeps_image_inodes = False  # the copy makes new inodes

    def __init__(self, options=None, profile=None):
        super().__init__(options, profile)
        self.copied: set = set()  # containers whose image is copied already

    def _copy_everything(self, plan, cid, view):
        if cid in self.copied:
            return
        self.copied.add(cid)
        image = self.images[cid]
        for path in image.files:
            if view.stat(path) is not None:
                view.copy_up(path)
        files = len(image.files)
        plan.copy_ups += files
        plan.copy_up_bytes += image.merged_size
        plan.cpu(COPY_UP, files * self.costs.metadata_update)
        plan.disk_read(COPY_UP, image.merged_size, max(1, files // self.options.files_per_request))
        plan.writeback(COPY_UP, image.merged_size)

    def _make_writable(self, plan, cid, view, path, offset, nbytes, size):
        self._copy_everything(plan, cid, view)
        view.copy_up(path)  # a file created since is not in the image

    def _metadata_changed(self, plan, cid, view, path):
        self._copy_everything(plan, cid, view)
'''


def toy_driver() -> type:
    """The toy's class, built from its file without the module's @register."""
    namespace: dict = {}
    exec(compile(TOY_SOURCE.replace("from ..plan", "from sim.plan").replace("from .base", "from sim.drivers.base")
                 .replace("@register\n", ""), "copy_everything.py", "exec"), namespace)
    return namespace["CopyEverything"]


@pytest.fixture
def registered(monkeypatch):
    """The toy in the registry for this test only (as its module's @register would put it)."""
    driver = toy_driver()
    monkeypatch.setitem(REGISTRY, NAME, driver)
    return driver


def test_probe_sees_the_whole_image_copied_at_the_first_write(registered):
    probe = sim.probe(NAME, file_size="1MiB", layers=3)
    assert probe["copy_up_bytes"] >= 2**20  # the target and every file beside it in the layers
    assert probe["second_copy_up_bytes"] == 0 and probe["first_write_s"] > probe["second_write_s"]
    shown = CliRunner().invoke(main, ["probe", "--driver", f"overlay2,{NAME}", "--file-size", "1MiB", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [row["driver"] for row in json.loads(shown.output)] == ["overlay2", NAME]
    listed = CliRunner().invoke(main, ["drivers"])
    assert f"{NAME}: toy:" in listed.output and "--option files_per_request=64" in listed.output


def test_a_sweep_with_the_ninth_driver_runs_and_reports(registered, tmp_path):
    run = sim.run_scenario({"name": "ninth", "seed": 3, "containers": {"count": 2},
                            "image": {"kind": "synthetic", "layers": 2, "files_per_layer": 40, "file_size": "8KiB"},
                            "workload": {"kind": "mix", "operations": 200, "workers": 2},
                            "sweep": {"driver.name": ["overlay2", NAME]}},
                           tmp_path / "run")
    assert run.failed == 0
    rows = run.summary.set_index("driver")
    # every file of the image is in each container's layer: SIZE is the image twice over
    assert rows.loc[NAME, "containers_size_bytes"] > rows.loc["overlay2", "containers_size_bytes"]
    page = report.write_report(run)
    assert page.exists() and NAME in page.read_text()
    figure = {f.name: f.figure for f in report.figures(run)}["headline"]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["overlay2", NAME]
    assert NAME not in DRIVER_STYLE and driver_style(NAME)["color"] not in {s["color"] for s in DRIVER_STYLE.values()}
    assert [rank.table["driver"].tolist() for rank in report.rankings(run)][0].count(NAME) == 1


def test_its_file_alone_makes_it_a_driver(tmp_path):
    """The toy's file dropped into a copy of sim/drivers/, and nothing else: cowsim lists it and
    probes it (the package imports every module it holds)."""
    shutil.copytree(ROOT / "sim", tmp_path / "sim", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "sim" / "drivers" / "copy_everything.py").write_text(TOY_SOURCE)

    def cowsim(*args):
        return subprocess.run([sys.executable, "-m", "sim", *args], cwd=tmp_path, capture_output=True, text=True,
                              env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    listed = cowsim("drivers")
    assert listed.returncode == 0, listed.stderr[-500:]
    names = [line.split(":")[0] for line in listed.stdout.splitlines() if not line.startswith(" ")]
    assert names == [*REGISTRY, NAME]  # after the shipped drivers
    probed = cowsim("probe", "--driver", NAME, "--json")
    assert probed.returncode == 0, probed.stderr[-500:]
    assert json.loads(probed.stdout)["copy_up_bytes"] >= 2**20
