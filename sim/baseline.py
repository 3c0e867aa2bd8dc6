"""Baselines: a run's numbers kept in the repository, small enough to review in a diff.

A baseline is a folder ``benchmarks/baselines/NAME/`` with ``summary.json`` (the summary table,
one row per line), ``manifest.json`` (the run's manifest: commit, versions, seeds) and
``scenario.yaml`` (the resolved scenario, whose ``sweep`` says how rows are matched).
``benchmarks/scenarios/`` holds the standard regression scenarios; :func:`check` runs each and
compares it with its committed baseline, and :func:`refresh` rewrites the baselines whose
numbers changed (an intended change of numbers updates them in the same commit).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .api import RunResult, load_run, run_scenario
from .compare import Comparison, compare
from .errors import CowsimError

BASELINE_ROOT = Path("benchmarks/baselines")
SCENARIO_ROOT = Path("benchmarks/scenarios")
SUMMARY, MANIFEST, SCENARIO = "summary.json", "manifest.json", "scenario.yaml"
# The simulator is deterministic: a committed baseline must match to the last digits that
# floating point can change between platforms and library versions.
CHECK_RTOL = 1e-9


class BaselineError(CowsimError):
    """A baseline that cannot be saved or found (exit code 2)."""


def summary_json(summary: pd.DataFrame) -> str:
    """The summary as JSON, one row per line; floats exact (repr), NaN as null. The runs' status
    columns are left out: a baseline only holds runs that all finished."""
    summary = summary.drop(columns=["status", "failure"], errors="ignore")
    def plain(value):
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    rows = [json.dumps({column: plain(value) for column, value in row.items()}, default=str)
            for row in summary.to_dict("records")]
    return "[\n" + ",\n".join(rows) + "\n]\n"


def save(run: RunResult, name: str, root: str | Path = BASELINE_ROOT, force: bool = False) -> Path:
    """Store ``run`` as baseline ``name`` under ``root``; replace an existing one only with ``force``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise BaselineError(f"baseline name {name!r}: use letters, digits, '_', '.' and '-'")
    status = run.manifest.get("status", "complete")
    if status != "complete":
        raise BaselineError(f"{run.path or run.name}: the run is {status}; a baseline is made from a complete run only")
    target = Path(root) / name
    if target.exists() and not force:
        raise BaselineError(f"{target} already exists: pass --force to replace it, and say why in the commit message")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        (partial / SUMMARY).write_text(summary_json(run.summary))
        (partial / MANIFEST).write_text(json.dumps(run.manifest, indent=2, default=str) + "\n")
        (partial / SCENARIO).write_text(yaml.safe_dump(run.resolved, sort_keys=False))
        if target.exists():
            retired = target.with_name(f".{name}.old-{os.getpid()}")
            target.rename(retired)
            partial.rename(target)
            shutil.rmtree(retired)
        else:
            partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


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


def scenario_files(scenarios: str | Path = SCENARIO_ROOT) -> list[Path]:
    files = sorted(Path(scenarios).glob("*.yaml"))
    if not files:
        raise BaselineError(f"{scenarios}: no scenario files (*.yaml)")
    return files


def refresh(scenarios: str | Path = SCENARIO_ROOT, root: str | Path = BASELINE_ROOT) -> list[tuple[str, str]]:
    """Run every scenario and save it as the baseline of its name where its numbers changed.

    Returns (name, "new" | "updated" | "unchanged"); an unchanged baseline is left untouched so
    that its manifest (commit, wall time) does not churn in the diff.
    """
    outcome = []
    for path in scenario_files(scenarios):
        result = run_scenario(path)
        target = Path(root) / result.name
        if _same_text(target / SUMMARY, summary_json(result.summary)) and \
                _same_text(target / SCENARIO, yaml.safe_dump(result.resolved, sort_keys=False)):
            outcome.append((result.name, "unchanged"))
            continue
        status = "updated" if target.exists() else "new"
        save(result, result.name, root, force=True)
        outcome.append((result.name, status))
    return outcome


def _same_text(path: Path, text: str) -> bool:
    return path.exists() and path.read_text() == text


def check_scenario(path: str | Path, root: str | Path = BASELINE_ROOT, rtol: float = CHECK_RTOL) -> Comparison:
    """Run one scenario and compare it, replicate by replicate, with its committed baseline."""
    result = run_scenario(path)
    target = Path(root) / result.name
    if not (target / SUMMARY).exists():
        raise BaselineError(f"{path}: no baseline {target}: run `cowsim baseline refresh` and commit it")
    # The scenario file is the same; a default that moved since the baseline was saved is a
    # change to show (in the comparison's notes), not a reason to refuse.
    return compare(result, load(target), rtol=rtol, by_replicate=True, anyway=True)


def check(scenarios: str | Path = SCENARIO_ROOT, root: str | Path = BASELINE_ROOT,
          rtol: float = CHECK_RTOL) -> list[Comparison]:
    """Every scenario under ``scenarios`` checked against its baseline under ``root``."""
    return [check_scenario(path, root, rtol) for path in scenario_files(scenarios)]
