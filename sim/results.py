"""A run is a folder: the resolved scenario, a manifest, and the tables.

The folder appears whole (made under a temporary name, then renamed) with ``manifest.json``
saying ``status: running``; every finished run of the sweep is then written into ``points/`` as
its own file, atomically (temporary name, then rename), beside the operations of the runs that
streamed them to a file of their own. When the sweep ends the tables are put together
(ops.parquet a row group at a time, never all its rows in memory), the manifest says
``complete`` (or ``failed`` when some runs raised) and ``points/`` goes. A folder that is not
complete can be resumed; an existing folder is never overwritten.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from . import __version__, files
from .errors import CowsimError

OPS = "ops.parquet"
RESOLVED = "scenario.resolved.yaml"
MANIFEST = "manifest.json"
POINTS = "points"
FINISHED = ("complete", "failed")  # the tables are written (failed: some runs raised)
GROUP_ROWS = 1 << 16  # rows per row group of ops.parquet: the most it holds in memory while written


class RunFolderError(CowsimError):
    pass


class NotARunFolder(RunFolderError, FileNotFoundError):
    pass


def default_run_dir(name: str, root: str | Path = "results") -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return Path(root) / name / stamp


def git_state() -> dict:
    """The commit and dirty flag of the source tree the package runs from, where there is one."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5)
        if commit.returncode:
            return {}
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment() -> dict:
    import importlib.metadata as metadata
    versions = {}
    for package in ("simpy", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "matplotlib", "dask", "distributed"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cowsim": __version__, "python": platform.python_version(), "host": platform.node(),
            "platform": platform.platform(), "cpus": os.cpu_count(), "libraries": versions, **git_state()}


def write_atomically(path: Path, write):
    """``write(temporary)``, then the file takes its name: under ``path`` it is always whole.
    Returns what ``write`` returned; on any error the temporary file goes."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        written = write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return written


def write_manifest(directory: Path, manifest: dict) -> None:
    write_atomically(directory / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1, default=str)))


def create_run(directory: str | Path, resolved: dict, manifest: dict) -> Path:
    """A new run folder holding the resolved scenario and a ``running`` manifest; never an existing one."""
    directory = Path(directory)
    if directory.exists():
        raise RunFolderError(f"{directory} already exists: results are never overwritten "
                             f"(choose another -o, or finish an interrupted run with --resume {directory})")
    partial = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        (partial / POINTS).mkdir(parents=True)
    except OSError as error:
        raise RunFolderError(f"{directory}: cannot create the run folder: {error.strerror}"
                             f"{f' ({error.filename})' if error.filename else ''}") from None
    try:
        (partial / RESOLVED).write_text(yaml.safe_dump(resolved, sort_keys=False))
        write_manifest(partial, manifest)
        partial.rename(directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return directory


def lock_run(directory: Path):
    """An exclusive lock on a run folder for as long as the returned file stays open. A POSIX
    record lock (lockf), not flock: forked workers must not inherit it and outlive the parent."""
    handle = open(directory / ".lock", "w")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunFolderError(f"{directory} is being written by another cowsim process") from None
    return handle


def part_path(directory: Path, point: int, replicate: int) -> Path:
    return directory / POINTS / f"{point:06d}-{replicate:04d}.arrow"


def ops_part_path(directory: Path, point: int, replicate: int) -> Path:
    """Where a run that streams its operations writes them (see :mod:`sim.sweep`)."""
    return directory / POINTS / f"{point:06d}-{replicate:04d}.ops.parquet"


def write_part(directory: Path, point: int, replicate: int, blob: bytes) -> None:
    write_atomically(part_path(directory, point, replicate), lambda p: p.write_bytes(blob))


def part_paths(directory: Path) -> dict[tuple[int, int], Path]:
    """The parts of the runs already finished in a run folder, by (point, replicate), in that order.
    Only names :func:`part_path` makes count: a stray or copied file is not a run."""
    parts = {}
    for path in sorted((directory / POINTS).glob("*.arrow")):
        point, _, replicate = path.stem.partition("-")
        if point.isdigit() and replicate.isdigit() and path == part_path(directory, int(point), int(replicate)):
            parts[int(point), int(replicate)] = path
    return parts


def remove_temporaries(directory: Path) -> list[Path]:
    """Delete what a killed write left behind (``.NAME.tmp-PID`` files); call with the folder locked."""
    left = [*directory.glob(".*.tmp-*"), *(directory / POINTS).glob(".*.tmp-*")]
    for path in left:
        path.unlink(missing_ok=True)
    return left


def remove_empty_run(directory: Path) -> None:
    """Remove a run folder this process just made and that holds no run yet."""
    for name in (MANIFEST, RESOLVED, ".lock"):
        (directory / name).unlink(missing_ok=True)
    (directory / POINTS).rmdir()
    directory.rmdir()


def finish_run(directory: Path, manifest: dict, tables: dict[str, pd.DataFrame], ops: Iterable[pa.Table]) -> None:
    """Write ops.parquet from the runs' ``ops`` tables (in order), the other tables, then the
    final manifest; drop the parts once the run is complete."""
    write_atomically(directory / OPS, lambda p: write_ops(p, ops))
    for name, frame in tables.items():
        write_atomically(directory / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))
    write_atomically(directory / "summary.csv", lambda p: tables["summary"].to_csv(p, index=False))
    write_manifest(directory, manifest)
    if manifest["status"] == "complete":
        shutil.rmtree(directory / POINTS, ignore_errors=True)


def write_ops(path: Path, tables: Iterable[pa.Table]) -> None:
    """One parquet file of the tables, in order, written GROUP_ROWS rows at a time. The file is
    what pandas' ``to_parquet`` makes of the tables put together (same types and pandas
    metadata), so readers get the same DataFrame; with no rows at all, an empty DataFrame's."""
    writer, pending, held = None, [], 0
    try:
        for table in tables:
            pending.append(table)
            held += table.num_rows
            if held >= GROUP_ROWS:
                writer = _write_group(path, writer, pending)
                pending, held = [], 0
        if held:
            writer = _write_group(path, writer, pending)
        if writer is None:
            pd.DataFrame().to_parquet(path, index=False)
    finally:
        if writer is not None:
            writer.close()


def _write_group(path: Path, writer: pq.ParquetWriter | None, tables: list[pa.Table]) -> pq.ParquetWriter:
    group = pa.concat_tables(tables, promote_options="default")
    if writer is None:
        # The schema pandas writes for these columns (large strings and its metadata), from one row.
        schema = pa.Schema.from_pandas(group.slice(0, 1).to_pandas(), preserve_index=False)
        writer = pq.ParquetWriter(path, schema)
    writer.write_table(group.cast(writer.schema), row_group_size=GROUP_ROWS)
    return writer


def read_manifest(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        raise NotARunFolder(f"{directory}: not a cowsim run folder (no {MANIFEST})")
    try:
        manifest = json.loads(files.read_bytes(path, files.MANIFEST_BYTES, "run manifest"))
    except files.ReadError as error:
        raise RunFolderError(str(error)) from None
    except (ValueError, RecursionError) as error:
        raise RunFolderError(f"{path}: damaged (not valid JSON: {_one_line(error)}); "
                             f"the run's tables cannot be trusted") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("status", ""), str):
        raise RunFolderError(f"{path}: damaged (not a cowsim manifest)")
    return manifest


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# columns every summary has, whatever its runs measured
SUMMARY_COLUMNS = ("point", "replicate", "status")


def read_table(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table of a run folder; a truncated, empty or foreign file is one line naming it."""
    try:
        files.check_regular(path, what="table")
        frame = pd.read_parquet(path)
    except files.ReadError as error:
        raise RunFolderError(str(error)) from None
    except (OSError, ValueError, pa.ArrowException) as error:
        raise RunFolderError(f"{path}: damaged (truncated, empty or not parquet: {_one_line(error)})") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise RunFolderError(f"{path}: not a cowsim table (no column {', '.join(missing)})")
    return frame


def check_ops_file(path: Path) -> None:
    """ops.parquet is read when needed, but its footer is checked when the run is opened."""
    try:
        files.check_regular(path, what="table")
        pq.read_metadata(path)
    except files.ReadError as error:
        raise RunFolderError(str(error)) from None
    except (OSError, ValueError, pa.ArrowException) as error:
        raise RunFolderError(f"{path}: damaged (truncated, empty or not parquet: {_one_line(error)})") from None


def read_run(directory: str | Path) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """The resolved scenario, the manifest and the tables of a finished run folder, except
    ops.parquet, which can be larger than memory: read it when needed."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    status = manifest.get("status", "complete")
    if status not in FINISHED:
        raise RunFolderError(f"{directory}: the run is {status}, not finished; complete it with "
                             f"`cowsim run --resume {directory}`")
    try:
        _, resolved = files.load_yaml(files.read_text(directory / RESOLVED, files.SCENARIO_BYTES, "resolved scenario"))
    except files.ReadError as error:
        raise RunFolderError(str(error)) from None
    except yaml.YAMLError as error:
        problem, line = files.yaml_problem(error)
        raise RunFolderError(f"{directory / RESOLVED}:{line}: damaged: {problem}") from None
    if not isinstance(resolved, dict):
        raise RunFolderError(f"{directory / RESOLVED}: damaged (not a scenario mapping)")
    summary = directory / "summary.parquet"
    if not summary.exists():
        raise RunFolderError(f"{summary}: missing, though the manifest says the run is {status}")
    tables = {"summary": read_table(summary, SUMMARY_COLUMNS)}
    for name in ("space", "df"):
        if (directory / f"{name}.parquet").exists():
            tables[name] = read_table(directory / f"{name}.parquet")
    if (directory / OPS).exists():
        check_ops_file(directory / OPS)
    if len(tables["summary"]) != manifest.get("runs", len(tables["summary"])):
        raise RunFolderError(f"{summary}: {len(tables['summary'])} rows for the {manifest['runs']} runs the "
                             f"manifest counts")
    return resolved, manifest, tables
