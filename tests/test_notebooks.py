"""The notebooks: committed without outputs, and each runs top to bottom (papermill, kernel python3)
against a small results folder made here, showing its figures."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import sim

from .waits import HANG_SECONDS

papermill = pytest.importorskip("papermill", reason="papermill is a dev dependency (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DRIVERS = ["overlay2", "btrfs", "vfs"]


@pytest.fixture(scope="module")
def copyup_run(tmp_path_factory):
    return sim.run_scenario({
        "name": "nb_copyup", "seed": 1,
        "image": {"kind": "probe", "file_size": "64KiB", "layers": 1, "dir_depth": 1},
        "workload": {"kind": "copyup_probe", "write_size": "1B"},
        "sweep": {"driver.name": DRIVERS, "image.file_size": ["64KiB", "4MiB"], "image.layers": [1, 8],
                  "image.dir_depth": [1, 4]}}, tmp_path_factory.mktemp("nb") / "copyup").path


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory):
    return sim.run_scenario({
        "name": "nb_mix", "seed": 2,
        "image": {"kind": "synthetic", "layers": 3, "files_per_layer": 60, "file_size": "16KiB", "dir_depth": 2},
        "workload": {"kind": "mix", "operations": 300, "workers": 2},
        "sweep": {"driver.name": DRIVERS, "containers.count": [1, 3]}}, tmp_path_factory.mktemp("nb") / "mix").path


def test_there_are_the_four_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"copyup_analysis", "driver_comparison", "disk_usage", "node_disk"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "run_dir = None" in tagged[0].source


def execute(path: Path, out: Path, monkeypatch, **parameters) -> nbformat.NotebookNode:
    # The kernel imports this checkout's sim, installed or not.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    # Bounds for a hang only (the kernel's start, each cell), not for speed: see tests/waits.py.
    papermill.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3", cwd=str(ROOT),
                               progress_bar=False, log_output=False, start_timeout=HANG_SECONDS,
                               execution_timeout=HANG_SECONDS)
    return nbformat.read(out, as_version=4)


def outputs(notebook, kind: str) -> list:
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "image" and "image/png" in output.get("data", {}):
                found.append(output)
            elif kind == "text" and output.get("output_type") == "stream":
                found.append(output["text"])
    return found


@pytest.mark.parametrize("name,run,figures", [("copyup_analysis", "copyup_run", 4), ("driver_comparison", "mix_run", 1),
                                              ("disk_usage", "mix_run", 2), ("node_disk", "mix_run", 2)])
def test_notebook_runs_against_a_results_folder(name, run, figures, request, tmp_path, monkeypatch):
    folder = request.getfixturevalue(run)
    notebook = execute(ROOT / "notebooks" / f"{name}.ipynb", tmp_path / "out.ipynb", monkeypatch, run_dir=str(folder))
    text = "".join(outputs(notebook, "text"))
    assert str(sim.load_run(folder).name) in text
    assert len(outputs(notebook, "image")) >= figures  # the figures show in the notebook itself
    if name == "copyup_analysis":
        # the fitted model finds that overlay2 copies whole files and btrfs does not
        growing = next(line for line in text.splitlines() if line.startswith("drivers whose first write grows"))
        assert "overlay2" in growing and "btrfs" not in growing and "vfs" not in growing
    if name == "driver_comparison":
        assert " wins; " in text and "mostly because of" in text


def test_copyup_notebook_simulates_its_own_sweep_by_default(tmp_path, monkeypatch):
    notebook = execute(ROOT / "notebooks" / "copyup_analysis.ipynb", tmp_path / "out.ipynb", monkeypatch,
                          drivers=["overlay2", "btrfs"], file_sizes=["64KiB", "1MiB"], layers=[1, 4], dir_depths=[1])
    text = "".join(outputs(notebook, "text"))
    assert "copyup_analysis: 8 runs" in text


def test_node_disk_notebook_simulates_a_node_by_default(tmp_path, monkeypatch):
    notebook = execute(ROOT / "notebooks" / "node_disk.ipynb", tmp_path / "out.ipynb", monkeypatch)
    text = "".join(outputs(notebook, "text"))
    assert len(outputs(notebook, "image")) >= 2
    # shared layers stored once; logs capped by max-size x max-file; a prune frees what df said
    stored = re.search(r"stored, each layer once: .* \(x([0-9.]+)\)", text)
    assert stored and float(stored.group(1)) > 1.5  # 6 images on 2 bases
    assert "largest container log" in text and "max-size x max-file = 384 KiB" in text
    assert "prune gave back exactly the reclaimable figure: True" in text
