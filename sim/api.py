"""The Python API: what the command line and the notebooks both call."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from . import files, results
from .drivers import REGISTRY, LayerLimitError
from .errors import CowsimError, ScenarioError
from .image import PROBE_DIR_ENTRIES
from .runner import STREAMS, simulate
from .scenario import (MAX_RUNS, FieldError, Point, Scenario, SweepError, apply_overrides, bases_first, expand_points,
                       model_at, suggest, union_kinds, unknown_key)
from .sweep import (RecordsProgress, WorkerLost, combine, combine_df, execute, ops_tables, part_key, part_meta,
                    part_ok, progress_bar)
from .units import UnitError, parse_size

# A sweep writing a run folder keeps its first parts in memory up to this many bytes too, as
# reading them back from disk at the end costs time (a whole copy-up sweep's parts fit).
PARTS_HELD_BYTES = 64 * 2**20
SEEDING = ("numpy SeedSequence(seed, spawn_key=(replicate, stream)) per random stream; the point is not "
           "part of the key, so every point of a sweep draws the same image and workload (common random numbers)")


class _LazyOps:
    """``RunResult.ops``: set to a DataFrame, an Arrow table or the path of a parquet file, read
    into a DataFrame on first use only (a run's operations can be larger than memory)."""

    def __get__(self, run, owner=None) -> pd.DataFrame:
        if run is None:
            raise AttributeError("ops")  # no default: the dataclass field stays required
        source = run._ops_source
        if isinstance(source, Path):
            source = pd.read_parquet(source) if source.exists() else pd.DataFrame()
        elif isinstance(source, pa.Table):
            source = source.to_pandas()
        run._ops_source = source
        return source

    def __set__(self, run, value: pd.DataFrame | pa.Table | Path) -> None:
        run._ops_source = value


@dataclass
class RunResult:
    """A finished run: one summary row per point and replicate, every operation, disk usage.
    ``ops`` is read from the run folder's ops.parquet when first used; ``operations`` counts
    them and :meth:`read_ops` reads some columns or rows only, without loading them all."""

    name: str
    summary: pd.DataFrame
    ops: pd.DataFrame = _LazyOps()  # type: ignore[assignment]  # a descriptor, not a default
    space: pd.DataFrame  # type: ignore[misc]  # (the descriptor above is no default either)
    resolved: dict  # type: ignore[misc]
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    df: pd.DataFrame = field(default_factory=pd.DataFrame)  # `docker system df` per run (Host.system_df)
    _ops_source: Any = field(init=False, repr=False, compare=False)  # what ``ops`` is read from

    @property
    def failed(self) -> int:
        """Runs that raised (their rows have status ``failed`` and the error in ``failure``)."""
        return int((self.summary["status"] == "failed").sum()) if "status" in self.summary else 0

    @property
    def operations(self) -> int:
        """How many operation records the run kept (from the parquet footer when not read yet)."""
        source = self._ops_source
        if isinstance(source, Path):
            return pq.read_metadata(source).num_rows if source.exists() else 0
        return len(source)

    def read_ops(self, columns: list[str] | None = None, step: int = 1) -> pd.DataFrame:
        """Every ``step``-th operation (the first, the step+1-th, ...; container creation and image
        preparation included) with the ``columns`` the run has among those named (``None``: all;
        a name the run lacks is left out, not an error), as a DataFrame numbered from 0.

        When ``ops`` has not been used, only the named columns are read from ops.parquet, and with
        a ``step`` above 1 a batch at a time, keeping every ``step``-th row, so memory holds only
        the rows returned; once ``ops`` was used, its rows are sliced in memory."""
        source = self._ops_source
        if not (isinstance(source, Path) and source.exists()):
            frame = self.ops
            frame = frame[[c for c in columns if c in frame]] if columns is not None else frame
            return frame.iloc[::step].reset_index(drop=True)
        # Neither buffered ahead nor read by threads: either holds a few row groups more, which
        # for 10 columns of a 10,000,000-row file was 200 MiB more peak memory.
        with pq.ParquetFile(source, pre_buffer=False) as ops:
            names = [c for c in columns if c in ops.schema_arrow.names] if columns is not None else None
            if step <= 1:
                return ops.read(columns=names).to_pandas()
            kept, seen = [], 0
            for batch in ops.iter_batches(columns=names, use_threads=False):
                kept.append(batch.take(np.arange((-seen) % step, batch.num_rows, step)))
                seen += batch.num_rows
            return (pa.Table.from_batches(kept) if kept else ops.read(columns=names)).to_pandas()

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"<RunResult {self.name}: {len(self.summary)} runs{failed}, {self.operations} operations{where}>"


class RunInterrupted(CowsimError):
    """A sweep stopped before its end; the finished runs are kept in its folder."""

    exit_code = 130


# -- reading scenario files, with the line of every value ---------------------------------------

@dataclass
class Source:
    data: dict
    origin: str = "<scenario>"
    node: Any = None                                      # the YAML node tree, for line numbers
    overrides: dict[tuple, str] = field(default_factory=dict)
    base: Path | None = None                              # relative file paths in it start here

    def line(self, path: tuple) -> int | None:
        """The line of the value at ``path`` (or of the nearest enclosing one that is written)."""
        node, line = self.node, None
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                entry = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if entry is None:
                    break
                line, node = entry[0].start_mark.line + 1, entry[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def error(self, message: str, path: tuple = (), label: str | None = None) -> ScenarioError:
        """The error, blamed on the ``--set`` that wrote the field (or a field below it), else on
        the line of the file that did."""
        for length in range(len(path), 0, -1):
            if path[:length] in self.overrides:
                return ScenarioError(message, file=self.overrides[path[:length]], field=label or _dotted(path))
        below = [origin for key, origin in self.overrides.items() if path and key[:len(path)] == path]
        if below:
            return ScenarioError(message, file=below[0], field=label or _dotted(path))
        return ScenarioError(message, file=self.origin, line=self.line(path), field=label or _dotted(path))


def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def read_source(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Source:
    """A scenario file (or mapping) read, with its line marks, and the ``--set`` overrides applied."""
    if isinstance(source, dict):
        loaded = Source(source)
    else:
        path = str(source)
        try:
            text = files.read_text(path, files.SCENARIO_BYTES, "scenario file")
        except files.ReadError as error:
            raise ScenarioError(str(error).removeprefix(f"{path}: "), file=path) from None
        try:
            node, data = files.load_yaml(text)
        except yaml.YAMLError as error:
            problem, line = files.yaml_problem(error)
            raise ScenarioError(f"not valid YAML: {problem}", file=path, line=line) from None
        if data is None:
            raise ScenarioError("the file is empty: expected a mapping of scenario fields (see `cowsim schema`)",
                                file=path, line=1)
        if not isinstance(data, dict):
            raise ScenarioError(f"the top level must be a mapping of scenario fields, not a {type(data).__name__}",
                                file=path, line=node.start_mark.line + 1 if node else 1)
        loaded = Source(data, path, node, base=Path(path).resolve().parent)
    if overrides:
        try:
            loaded.data, loaded.overrides = apply_overrides(loaded.data, overrides)
        except SweepError as error:  # its message names the --set
            raise CowsimError(str(error)) from None
        _files_from_working_directory(loaded)
    return loaded


def _files_from_working_directory(loaded: Source) -> None:
    """File paths given with ``--set`` start at the working directory, as on any command line."""
    for key in loaded.overrides:
        if key[0] == "sweep":
            swept = tuple(key[1].split("."))
            values = loaded.data["sweep"].get(key[1])
            if swept in FILE_FIELDS and isinstance(values, list):
                loaded.data["sweep"][key[1]] = [_absolute(swept, value) for value in values]
            continue
        for path, node, name in _file_fields(loaded.data):
            if path[:len(key)] == key:  # the override wrote this field or a mapping above it
                node[name] = _absolute(path, node[name])


def _absolute(path: tuple, value: Any) -> Any:
    if not isinstance(value, str) or not value or (path == ("profile",) and _profile_name(value)):
        return value
    return str(Path(value).resolve())


def _profile_name(value: str) -> bool:
    """``ssd`` names a built-in profile; ``mine.yaml`` or ``profiles/x`` is a file."""
    return not value.endswith((".yaml", ".yml")) and "/" not in value


def load_scenario(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, str]:
    """The scenario mapping and the name of where it came from."""
    loaded = read_source(source, overrides)
    return loaded.data, loaded.origin


# -- validation ---------------------------------------------------------------------------------

def _clean_loc(loc: tuple, data: Any) -> tuple:
    """A pydantic error location as a path in the scenario mapping (union tags dropped)."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and (part in union_kinds() or part.startswith("function-")):
            continue
        else:
            node = None
        path.append(part)
    return tuple(path)


def _raw(data: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _explain(error: ValidationError, data: dict) -> tuple[str, tuple]:
    """The first error of a validation as (message, path in the scenario mapping)."""
    errors = error.errors()
    # A misspelt key also makes the real one missing: name the misspelling.
    first = next((e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == errors[0]["loc"][:-1]),
                 errors[0])
    path = _clean_loc(first["loc"], data)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        path += cause.path
    if first["type"] == "extra_forbidden":
        model = model_at(path[:-1], data)
        return unknown_key(str(path[-1]), list(model.model_fields) if model else []), path
    if first["type"] == "union_tag_invalid":
        return f"unknown kind {first['ctx']['tag']!r}: use one of {first['ctx']['expected_tags']}", path + ("kind",)
    message = str(cause) if cause is not None else first["msg"]
    message = message.removeprefix("Value error, ").replace("Input should be", "should be")
    if cause is None and first["type"] != "missing":
        raw = _raw(data, path)
        shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
        message += f", got {shown}"
    return message, path


def _validate_point(point: Point, source: Source, swept: bool) -> Scenario:
    try:
        scenario = Scenario.model_validate(point.data)
    except ValidationError as error:
        message, path = _explain(error, point.data)
    else:
        problem = _check_inputs(scenario)
        if problem is None:
            return scenario
        message, path = problem
    for key, where in point.sources.items():
        key_path = tuple(int(k) if k.isdigit() else k for k in key.split("."))
        shorter = min(len(key_path), len(path))
        if swept and key_path[:shorter] == path[:shorter]:
            if len(point.values) > 1:
                message += " (at " + ", ".join(f"{k}={v}" for k, v in point.values.items()) + ")"
            raise source.error(message, where, label=_dotted(where[:-1]))  # the line of the value
    raise source.error(message, path)


# The fields that name files, read relative to the scenario file that names them ("*": every
# item of a list).
FILE_FIELDS = (("image", "path"), ("image", "from"), ("images", "*", "path"), ("images", "*", "from"),
               ("workload", "path"), ("profile",))


def _file_fields(data: dict):
    """(path, the mapping holding it, its key) of every file field ``data`` writes."""
    for pattern in FILE_FIELDS:
        nodes: list[tuple[tuple, Any]] = [((), data)]
        for part in pattern[:-1]:
            if part == "*":
                nodes = [(path + (i,), item) for path, node in nodes if isinstance(node, list)
                         for i, item in enumerate(node)]
            else:
                nodes = [(path + (part,), node.get(part)) for path, node in nodes if isinstance(node, dict)]
        name = pattern[-1]
        for path, node in nodes:
            if isinstance(node, dict) and name in node:
                yield path + (name,), node, name


def resolve_files(data: dict, base: Path | None) -> None:
    """Make the relative paths of ``data``'s file fields start at ``base`` (the scenario
    file's directory), as paths in every configuration file do; a profile name (``ssd``) stays."""
    if base is None:
        return
    for path, node, name in list(_file_fields(data)):
        value = node[name]
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            continue
        if path == ("profile",) and _profile_name(value):
            continue
        node[name] = str(base / value)


def _replicates(data: dict) -> int:
    """A point's replicates as written (its validation checks the value itself)."""
    value = data.get("replicates", Scenario.model_fields["replicates"].default)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def validate_source(source: Source) -> list[tuple[Point, Scenario]]:
    """Every point of the scenario, validated, before anything runs."""
    try:
        points = expand_points(source.data)
    except SweepError as error:
        raise source.error(str(error), error.path) from None
    runs = sum(_replicates(point.data) for point in points)
    if runs > MAX_RUNS:
        raise source.error(f"{len(points):,} points x replicates = {runs:,} runs, more than {MAX_RUNS:,}; "
                           f"split the sweep into several scenarios", ("replicates",))
    for point in points:
        resolve_files(point.data, source.base)
    swept = len(points) > 1 or bool(points[0].values)
    return [(point, _validate_point(point, source, swept)) for point in points]


def validate(source: str | Path | dict, origin: str | None = None, *,
             overrides: list[str] | tuple[str, ...] = ()) -> list[tuple[dict, Scenario]]:
    """(swept values, validated scenario) of every point; a ScenarioError names file, line and field."""
    loaded = read_source(source, overrides)
    if origin is not None:
        loaded.origin = origin
    return [(point.values, scenario) for point, scenario in validate_source(loaded)]


def count_runs(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> tuple[int, int]:
    """(points, runs) of a valid scenario; raises a ScenarioError for an invalid one."""
    points = validate_source(read_source(source, overrides))
    return len(points), sum(scenario.replicates for _, scenario in points)


# -- running --------------------------------------------------------------------------------------

def _resolved(source: Source, points: list[tuple[Point, Scenario]]) -> dict:
    """The scenario as it runs: the first point's validated fields, with the sweep as written."""
    resolved = points[0][1].model_dump(mode="json")
    resolved["driver"]["options"] = (source.data.get("driver") or {}).get("options") or {}
    resolved["sweep"] = source.data.get("sweep") or {}
    return resolved


def _specs(points: list[tuple[Point, Scenario]]) -> list[dict]:
    # Swept values become summary columns as written (``4KiB``; reports parse them); a column
    # whose values mix types (``4096`` and ``64KiB``) is written as text, as parquet needs one type.
    mixed = {key for key in points[0][0].values
             if len({type(point.values[key]) for point, _ in points}) > 1}
    specs = []
    for point, scenario in points:
        dumped = scenario.model_dump(mode="json")
        swept = {key: _column_value(value, key in mixed) for key, value in point.values.items()}
        for replicate in range(scenario.replicates):
            keys = {"scenario": scenario.name, "point": point.index, "replicate": replicate, "seed": scenario.seed,
                    **swept, "driver": scenario.driver.name}
            specs.append({"point": point.index, "replicate": replicate, "scenario": dumped, "keys": keys})
    return specs


def _column_value(value: Any, as_text: bool) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return str(value) if as_text else value
    return json.dumps(value, default=str)


def _sha256(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()


def _manifest(source: Source, resolved: dict, specs: list[dict], points: int) -> dict:
    seeds = sorted({(spec["keys"]["seed"], spec["replicate"]) for spec in specs})
    return {"status": "running", "scenario": resolved["name"], "source": source.origin,
            "base_dir": str(source.base) if source.base else None,
            "overrides": sorted(source.overrides.values()), "scenario_sha256": _sha256(resolved), "resolved": resolved,
            "points": points, "runs": len(specs), "seeding": SEEDING, "streams": STREAMS,
            "seeds": [{"seed": s, "replicate": r, "spawn_keys": {n: [r, i] for n, i in STREAMS.items()}}
                      for s, r in seeds],
            "sessions": [], **results.environment()}


def _check_inputs(scenario: Scenario) -> tuple[str, tuple] | None:
    """Real images and traces a point names are read (once: they are cached) before anything
    runs, so that a broken file or an image too deep for the driver stops the run up front.
    Returns (what is wrong, field path) for the first problem."""
    from .imagefile import ImageFormatError
    from .runner import file_image
    from .scenario import FileImage, Trace
    from .trace import TraceError, parse_trace
    try:
        if isinstance(scenario.image, FileImage):
            image = file_image(scenario.image.path)
            REGISTRY[scenario.driver.name].check_layers(len(image.layers))
            files = getattr(scenario.workload, "files", 0)  # a copy-up probe's
            if files > len(image.files):
                return f"{files:,} files asked, the image holds {len(image.files):,}", ("workload", "files")
    except (ImageFormatError, LayerLimitError) as error:
        return str(error), ("image",)
    layers: dict[str, int] = {}  # of each named image, its bases' included
    for spec in bases_first(scenario.images):
        index = scenario.images.index(spec)
        try:
            own = len(file_image(spec.path).layers) if isinstance(spec, FileImage) else spec.layers
            layers[spec.name] = own + layers.get(getattr(spec, "base", None) or "", 0)
            REGISTRY[scenario.driver.name].check_layers(layers[spec.name])
        except ImageFormatError as error:
            return str(error), ("images", index, "path")
        except LayerLimitError as error:
            return f"{error} (its bases' layers included)", ("images", index)
    try:
        if isinstance(scenario.workload, Trace):
            parse_trace(scenario.workload.path, scenario.workload.cwd)
    except TraceError as error:
        return str(error), ("workload", "path")
    return None


def run_scenario(source: str | Path | dict, out: str | Path | None = None, *, save: bool = False,
                 results_root: str | Path = "results", overrides: list[str] | tuple[str, ...] = (),
                 executor: str = "local", jobs: int = 1, scheduler: Any = None, progress: bool = False) -> RunResult:
    """Run every point x replicate of a scenario (a YAML path or a mapping).

    Writes a run folder when ``out`` is given or ``save`` is true (then under
    ``results/<name>/<UTC timestamp>/``), each run as soon as it finishes; otherwise only returns
    the tables. ``executor`` is ``local`` (``jobs`` processes; 1: in this process) or ``dask``
    (``scheduler``: an address or a Client's cluster; a local cluster of ``jobs`` workers when
    none). A run that raises is recorded as failed (``RunResult.failed``); the others go on.
    """
    loaded = read_source(source, overrides)
    points = validate_source(loaded)
    resolved = _resolved(loaded, points)
    specs = _specs(points)
    manifest = _manifest(loaded, resolved, specs, len(points))
    directory = None
    if out is not None or save:
        directory = Path(out) if out is not None else results.default_run_dir(resolved["name"], results_root)
        results.create_run(directory, resolved, manifest)
    try:
        return _run(specs, {}, resolved, manifest, directory, executor, jobs, scheduler, progress)
    except CowsimError as error:
        # An executor that could not start (e.g. no dask scheduler there) leaves no empty folder.
        if directory is not None and not isinstance(error, RunInterrupted) and not results.part_paths(directory):
            results.remove_empty_run(directory)
        raise


def resume_run(directory: str | Path, *, executor: str = "local", jobs: int = 1, scheduler: Any = None,
               progress: bool = False) -> RunResult:
    """Finish an interrupted run folder: run only what is missing (and what failed), then write its tables."""
    directory = Path(directory)
    manifest = results.read_manifest(directory)
    if manifest.get("status") == "complete":
        return load_run(directory)
    loaded = read_source(directory / results.RESOLVED)
    # Relative paths of the sweep start where the scenario file was, not in the run folder.
    loaded.base = Path(manifest["base_dir"]) if manifest.get("base_dir") else None
    if _sha256(loaded.data) != manifest.get("scenario_sha256"):
        raise results.RunFolderError(f"{directory / results.RESOLVED} changed since the run started; not resuming")
    points = validate_source(loaded)
    specs = _specs(points)
    wanted = {part_key(spec): spec for spec in specs}
    folder = directory / results.POINTS
    done = {}
    for key, part in results.part_paths(directory).items():
        meta = _trusted_part(part, wanted.get(key), folder)
        if meta is not None:
            done[key] = meta
    return _run(specs, done, loaded.data, manifest, directory, executor, jobs, scheduler, progress)


def _trusted_part(part: Path, spec: dict | None, folder: Path) -> dict | None:
    """A stored part's metadata when resume can keep it: readable, a run of this sweep (its
    point, replicate and swept values those of the spec its file is named after), finished, and
    with its ops file whole. Anything else is run again (and its file replaced)."""
    if spec is None:
        return None
    try:
        meta = part_meta(part)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None
    if not isinstance(meta, dict) or (meta.get("point"), meta.get("replicate")) != part_key(spec) \
            or meta.get("keys") != spec["keys"]:
        return None
    if meta.get("ops_file") and meta["ops_file"] != results.ops_part_path(folder.parent, *part_key(spec)).name:
        return None
    try:
        return meta if part_ok(meta, folder) else None
    except (KeyError, TypeError):
        return None


def _run(specs: list[dict], done: dict, resolved: dict, manifest: dict, directory: Path | None,
         executor: str, jobs: int, scheduler: Any, progress: bool) -> RunResult:
    """Run the specs not ``done`` yet (``done``: their parts' metadata by (point, replicate)).
    The parts' metadata is kept as they arrive; with a run folder the parts themselves go to
    disk (those beyond PARTS_HELD_BYTES are read back one at a time at the end), without one
    they stay in memory."""
    lock = results.lock_run(directory) if directory else None
    if directory:
        results.remove_temporaries(directory)
    finished = dict(done)
    in_memory: dict[tuple[int, int], bytes] = {}
    held = 0
    todo = [spec for spec in specs if part_key(spec) not in done]
    if directory and executor == "local":
        # Local workers share the run folder: long runs stream their operations into it.
        todo = [{**spec, "ops_path": str(results.ops_part_path(directory, *part_key(spec)))} for spec in todo]
    session = {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "executor": executor,
               "jobs": jobs, "runs_before": len(done), "runs_to_do": len(todo)}
    manifest["sessions"] = [*manifest.get("sessions", []), session]
    if directory:  # a session that is killed still shows in the manifest
        results.write_manifest(directory, manifest)
    started = time.perf_counter()
    bar = progress_bar(len(specs), len(done), resolved["name"], quiet=not progress)
    records_bar = RecordsProgress(quiet=not progress)
    try:
        for key, blob in execute(todo, executor, jobs, scheduler, records_bar.bar_for):
            if directory:
                results.write_part(directory, *key, blob)
            if not directory or held + len(blob) <= PARTS_HELD_BYTES:
                in_memory[key] = blob  # saves reading it back from disk at the end
                held += len(blob)
            finished[key] = part_meta(blob)
            bar.update()
    except (KeyboardInterrupt, WorkerLost) as error:
        records_bar.close()
        bar.close()
        if directory is None:
            raise
        session["wall_time_s"] = time.perf_counter() - started
        session["runs_done"] = len(finished) - len(done)
        manifest["status"] = "interrupted"
        results.write_manifest(directory, manifest)
        _release(lock)
        why = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
        kept = len(results.part_paths(directory))  # on disk: the signal may fall between storing and counting
        failure = RunInterrupted(f"{why}: {kept} of {len(specs)} runs are kept in {directory}; "
                                 f"finish with `cowsim run --resume {directory}`")
        if isinstance(error, WorkerLost):
            failure.exit_code = 1
        raise failure from None
    records_bar.close()
    bar.close()
    keys = sorted(finished)
    parts = [(in_memory.get(key) or results.part_path(directory, *key), finished[key])  # type: ignore[arg-type]
             for key in keys]  # (a part not in memory was written into the run folder)
    summary, space, status = combine(finished[key] for key in keys)
    df = combine_df(finished[key] for key in keys)
    session["wall_time_s"] = time.perf_counter() - started
    session["runs_done"] = len(todo)
    failed = [entry for entry in status if entry["status"] == "failed"]
    manifest.update({
        "status": "failed" if failed else "complete",
        "runs_ok": len(status) - len(failed), "runs_failed": len(failed),
        "wall_time_s": sum(s.get("wall_time_s", 0.0) for s in manifest["sessions"]),
        "events": int(summary["events"].sum()) if "events" in summary else 0,
        "run_status": [[entry["point"], entry["replicate"], entry["status"]] for entry in status],
        "failures": failed,
    })
    if directory:
        try:
            results.finish_run(directory, manifest, {"summary": summary, "space": space, "df": df},
                               ops_tables(parts, directory / results.POINTS))
        except BaseException:
            # The runs are all stored: the folder stays resumable rather than "running".
            manifest["status"] = "interrupted"
            results.write_manifest(directory, manifest)
            raise
        finally:
            _release(lock)
        ops = directory / results.OPS
    else:
        tables = list(ops_tables(parts))
        ops = pa.concat_tables(tables, promote_options="default") if tables else pd.DataFrame()
    return RunResult(resolved["name"], summary, ops, space, resolved, manifest, directory, df)


def _release(lock) -> None:
    """Unlock a run folder and leave no empty lock file in it (removed while still held, so no
    other process can take the old file in between). ``None``: there was no folder to lock."""
    if lock is None:
        return
    Path(lock.name).unlink(missing_ok=True)
    lock.close()


def load_run(directory: str | Path) -> RunResult:
    """A run folder read back (for reports, comparisons and notebooks); its ops.parquet is read
    when ``ops`` is first used."""
    resolved, manifest, tables = results.read_run(directory)
    return RunResult(manifest.get("scenario", Path(directory).parent.name), tables.get("summary", pd.DataFrame()),
                     Path(directory) / results.OPS, tables.get("space", pd.DataFrame()), resolved, manifest,
                     Path(directory), tables.get("df", pd.DataFrame()))


def probe(driver: str, file_size: int | str = 2**20, layers: int = 1, dir_depth: int = 1, cache: str = "cold",
          profile: str | None = None, dir_entries: int = PROBE_DIR_ENTRIES, **driver_options: Any) -> dict:
    """First and second write of one file ``dir_depth`` directories deep in the bottom of
    ``layers`` layers, each holding ``dir_entries`` files in the file's directory, in one
    container: the cost of copy_up, in seconds and bytes, and what creating the container cost
    before it (``create_container_s``)."""
    try:
        size = parse_size(file_size)
    except UnitError as error:
        raise CowsimError(f"file_size: {error}") from None
    if size < 0:
        raise CowsimError(f"file_size: must not be negative, got {file_size!r}")
    if cache not in ("cold", "warm"):
        raise CowsimError(f"cache: use cold or warm, got {cache!r}")
    data = {"name": "probe", "profile": profile or "ssd", "cache": cache,
            "driver": {"name": driver, "options": driver_options},
            "image": {"kind": "probe", "file_size": size, "layers": layers, "dir_depth": dir_depth,
                      "dir_entries": dir_entries},
            "workload": {"kind": "copyup_probe"}}
    (_, scenario), = validate(data, "probe")
    # Read from the Arrow table: a DataFrame of four rows cost more than the simulation (calibration
    # fits call this thousands of times).
    ops = simulate(scenario).ops_table
    names = ops.column("op").to_pylist()
    first, second = names.index("first_write"), names.index("second_write")
    # Some drivers pay before the first write: vfs copies the image, devicemapper makes a thin device.
    create = names.index("create_container")

    def value(column: str, row: int):
        return ops.column(column)[row].as_py()

    return {"driver": driver, "file_size": size, "layers": layers, "dir_depth": dir_depth, "dir_entries": dir_entries,
            "cache": cache,
            "lookup_s": float(value("lookup_s", first)), "copy_up_s": float(value("copy_up_s", first)),
            "first_write_s": float(value("latency_s", first)), "second_write_s": float(value("latency_s", second)),
            "copy_up_bytes": int(value("copy_up_bytes", first)),
            "second_copy_up_bytes": int(value("copy_up_bytes", second)),
            "create_container_s": float(value("latency_s", create))}


def inspect_image(path: str | Path, top: int = 10) -> dict:
    """A real image's layers, sizes, file-size and depth distributions, shadowed and largest files
    (see :func:`sim.imagefile.inspect_image`); ``path`` as a scenario's ``image: {from: PATH}``."""
    from .imagefile import inspect_image as inspect, load_image
    return inspect(load_image(path), top)


def image_history(path: str | Path, image: str | None = None) -> dict:
    """``docker history`` of a real image (``path`` as a scenario's ``image: {from: PATH}``), or of
    the images of a scenario file (``.yaml``/``.yml``: its first point, replicate 0; ``image``
    picks one by name): per image its steps, top first (see :meth:`sim.image.Image.history`)."""
    from .imagefile import load_image
    from .runner import build_images
    if str(path).endswith((".yaml", ".yml")):
        (_, scenario), *_ = validate(path)
        images = [found for found, _ in build_images(scenario, 0).values()]
    else:
        images = [load_image(path)]
    names = [found.name for found in images]
    if image is not None and image not in names:
        raise CowsimError(f"{path}: no image {image!r} {suggest(image, names)}")
    report = []
    for found in images:
        if image is not None and found.name != image:
            continue
        # another image whose layers are this one's bottom ones is a base: its ID is known here
        known = {len(other.layers) - 1: other.name for other in images
                 if other is not found and other.layers == found.layers[:len(other.layers)]}
        report.append({"name": found.name, "id": found.image_id, "layers": len(found.layers),
                       "size": found.virtual_size, "history": found.history(known)})
    return {"path": str(path), "images": report}


def inspect_trace(path: str | Path, cwd: str = "/") -> dict:
    """What a ``strace -f -tt -T`` trace holds for replay: syscalls replayed, kept for
    bookkeeping and unusable (by syscall name and reason), recorded time and bytes."""
    from .trace import parse_trace
    return parse_trace(path, cwd).summary()
