"""A run is a folder: the resolved scenario, a manifest, and the tables.

Folders are written under a temporary name and renamed into place when complete, so a folder
that exists is whole; an existing folder is never overwritten.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from . import __version__

TABLES = ("ops", "summary", "space")


def default_run_dir(name: str, root: str | Path = "results") -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return Path(root) / name / stamp


def git_state() -> dict:
    """The commit and dirty flag of the source tree the package runs from, where there is one."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode:
            return {}
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment() -> dict:
    import importlib.metadata as metadata
    versions = {}
    for package in ("simpy", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cowsim": __version__, "python": platform.python_version(), "host": platform.node(),
            "platform": platform.platform(), "libraries": versions, **git_state()}


def write_run(directory: Path, resolved: dict, manifest: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write a complete run folder atomically; refuse to touch an existing one."""
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} already exists: results are never overwritten; choose another -o")
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        (partial / "scenario.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        for name, frame in tables.items():
            frame.to_parquet(partial / f"{name}.parquet", index=False)
        tables["summary"].to_csv(partial / "summary.csv", index=False)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        partial.rename(directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return directory


def read_run(directory: str | Path) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    directory = Path(directory)
    if not (directory / "manifest.json").exists():
        raise FileNotFoundError(f"{directory}: not a cowsim run folder (no manifest.json)")
    manifest = json.loads((directory / "manifest.json").read_text())
    resolved = yaml.safe_load((directory / "scenario.resolved.yaml").read_text())
    tables = {name: pd.read_parquet(directory / f"{name}.parquet")
              for name in TABLES if (directory / f"{name}.parquet").exists()}
    return resolved, manifest, tables
