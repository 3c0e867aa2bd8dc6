"""Runs read back from disk: a run folder, a saved baseline's folder, or a baseline's name.

Both :mod:`sim.compare` (which compares any two of them) and :mod:`sim.baseline` (which saves,
refreshes and checks baselines) read runs through here, so neither imports the other for it.
A baseline folder holds ``summary.json`` (one row per line), ``manifest.json`` and
``scenario.yaml`` (see :mod:`sim.baseline`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from .api import RunResult, load_run
from .errors import CowsimError
from .metrics import RENAMED

BASELINE_ROOT = Path("benchmarks/baselines")
SUMMARY, MANIFEST, SCENARIO = "summary.json", "manifest.json", "scenario.yaml"


class BaselineError(CowsimError):
    """A baseline that cannot be saved or found (exit code 2)."""


def load(directory: str | Path) -> RunResult:
    """A saved baseline as a RunResult (summary, manifest and resolved scenario; no ops)."""
    directory = Path(directory)
    try:
        rows = json.loads((directory / SUMMARY).read_text())
        manifest = json.loads((directory / MANIFEST).read_text())
        resolved = yaml.safe_load((directory / SCENARIO).read_text())
    except FileNotFoundError as error:
        raise BaselineError(f"{directory}: not a whole baseline (no {Path(error.filename).name})") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise BaselineError(f"{directory}: damaged baseline: {error}") from None
    summary = pd.DataFrame(rows, columns=list(rows[0]) if rows else None).assign(status="ok", failure="")
    summary = summary.rename(columns=RENAMED)
    return RunResult(manifest.get("scenario", directory.name), summary, pd.DataFrame(), pd.DataFrame(), resolved,
                     manifest, directory)


def resolve(source: str | Path, root: str | Path = BASELINE_ROOT) -> RunResult:
    """A run folder, a baseline folder, or the name of a baseline under ``root``."""
    path = Path(source)
    if path.is_dir() and (path / SUMMARY).exists():
        return load(path)
    if path.is_dir():
        try:
            return load_run(path)
        except FileNotFoundError:
            raise BaselineError(f"{path}: neither a run folder nor a baseline") from None
    named = Path(root) / str(source)
    if not path.exists() and (named / SUMMARY).exists():
        return load(named)
    raise BaselineError(f"{source}: no such run folder, baseline folder, or baseline under {root}")


