"""The Python API: what the command line and the notebooks both call."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from .drivers import REGISTRY, LayerLimitError, UnknownDriverError
from .errors import CowsimError, ScenarioError
from .profile import ProfileError, load_profile
from .results import default_run_dir, environment, read_run, write_run
from .runner import STREAMS, simulate
from .scenario import Scenario, expand_points
from .units import UnitError, parse_size


@dataclass
class RunResult:
    """A finished run: one summary row per point and replicate, every operation, disk usage."""

    name: str
    summary: pd.DataFrame
    ops: pd.DataFrame
    space: pd.DataFrame
    resolved: dict
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<RunResult {self.name}: {len(self.summary)} runs, {len(self.ops)} operations{where}>"


def load_scenario(source: str | Path | dict) -> tuple[dict, str]:
    """The scenario mapping and the name of where it came from."""
    if isinstance(source, dict):
        return source, "<scenario>"
    path = Path(source)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError("no such scenario file", file=str(path)) from None
    except OSError as error:
        raise ScenarioError(f"cannot read: {error.strerror}", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ScenarioError(f"not valid YAML: {getattr(error, 'problem', error)}", file=str(path),
                            line=mark.line + 1 if mark else None) from None
    if data is None:
        raise ScenarioError("the file is empty", file=str(path))
    if not isinstance(data, dict):
        raise ScenarioError("the top level must be a mapping of fields", file=str(path), line=1)
    return data, str(path)


def validate(data: dict, origin: str = "<scenario>") -> list[tuple[dict, Scenario]]:
    """Every point of the scenario, validated, before anything runs."""
    try:
        base = Scenario.model_validate(data)
        points = [(values, Scenario.model_validate(point)) for values, point in expand_points(data)]
        load_profile(base.profile)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
        raise ScenarioError(first["msg"].removeprefix("Value error, "), file=origin, field=where) from None
    except (ProfileError, LayerLimitError, UnknownDriverError, UnitError) as error:
        raise ScenarioError(str(error), file=origin) from None
    for _, scenario in points:
        check_inputs(scenario, origin)
    return points


def check_inputs(scenario: Scenario, origin: str) -> None:
    """Real images and traces a point names are read (once: they are cached) before anything
    runs, so that a broken file or an image too deep for the driver stops the run up front."""
    from .imagefile import ImageFormatError
    from .runner import file_image
    from .scenario import FileImage, Trace
    from .trace import TraceError, parse_trace
    try:
        if isinstance(scenario.image, FileImage):
            image = file_image(scenario.image.path)
            REGISTRY[scenario.driver.name].check_layers(len(image.layers))
    except (ImageFormatError, LayerLimitError) as error:
        raise ScenarioError(str(error), file=origin, field="image") from None
    try:
        if isinstance(scenario.workload, Trace):
            parse_trace(scenario.workload.path, scenario.workload.cwd)
    except TraceError as error:
        raise ScenarioError(str(error), file=origin, field="workload.path") from None


def run_scenario(source: str | Path | dict, out: str | Path | None = None, *, save: bool = False,
                 results_root: str | Path = "results") -> RunResult:
    """Run every point x replicate of a scenario (a YAML path or a mapping).

    Writes a run folder when ``out`` is given or ``save`` is true (then under
    ``results/<name>/<UTC timestamp>/``); otherwise only returns the tables.
    """
    data, origin = load_scenario(source)
    points = validate(data, origin)
    base = points[0][1]
    started = time.time()
    summaries, ops_frames, space_frames, seeds = [], [], [], []
    for index, (values, scenario) in enumerate(points):
        for replicate in range(scenario.replicates):
            result = simulate(scenario, replicate)
            keys = {"scenario": base.name, "point": index, "replicate": replicate, "seed": scenario.seed, **values,
                    "driver": scenario.driver.name}
            summaries.append({**keys, **result.summary})
            tag = {"point": index, "replicate": replicate, "driver": scenario.driver.name}
            if scenario.keep_ops:
                ops_frames.append(result.ops.assign(**tag))
            space_frames.append(result.space.assign(**tag))
            seeds.append({"point": index, "replicate": replicate,
                          "streams": {name: [scenario.seed, replicate, sid] for name, sid in STREAMS.items()}})
    summary = pd.DataFrame(summaries)
    ops = pd.concat(ops_frames, ignore_index=True) if ops_frames else pd.DataFrame()
    space = pd.concat(space_frames, ignore_index=True)
    resolved = base.model_dump(mode="json")
    resolved["sweep"] = data.get("sweep") or {}
    manifest = {
        "scenario": base.name, "source": origin,
        "scenario_sha256": hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest(),
        "points": len(points), "runs": len(summary), "wall_time_s": time.time() - started,
        "events": int(summary["events"].sum()), "seeds": seeds, **environment(),
    }
    result = RunResult(base.name, summary, ops, space, resolved, manifest)
    if out is not None or save:
        directory = Path(out) if out is not None else default_run_dir(base.name, results_root)
        result.path = write_run(directory, resolved, manifest, {"ops": ops, "summary": summary, "space": space})
    return result


def load_run(directory: str | Path) -> RunResult:
    """A run folder read back (for reports, comparisons and notebooks)."""
    resolved, manifest, tables = read_run(directory)
    return RunResult(manifest.get("scenario", Path(directory).parent.name), tables.get("summary", pd.DataFrame()),
                     tables.get("ops", pd.DataFrame()), tables.get("space", pd.DataFrame()), resolved, manifest,
                     Path(directory))


def probe(driver: str, file_size: int | str = 2**20, layers: int = 1, dir_depth: int = 1, cache: str = "cold",
          profile: str | None = None, **driver_options: Any) -> dict:
    """First and second write of one file ``dir_depth`` directories deep in the bottom of
    ``layers`` layers, in one container: the cost of copy_up, in seconds and bytes."""
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
            "image": {"kind": "probe", "file_size": size, "layers": layers, "dir_depth": dir_depth},
            "workload": {"kind": "copyup_probe"}}
    (_, scenario), = validate(data, "probe")
    ops = simulate(scenario).ops
    first = ops[ops["op"] == "first_write"].iloc[0]
    second = ops[ops["op"] == "second_write"].iloc[0]
    return {"driver": driver, "file_size": size, "layers": layers, "dir_depth": dir_depth, "cache": cache,
            "lookup_s": float(first["lookup_s"]), "copy_up_s": float(first["copy_up_s"]),
            "first_write_s": float(first["latency_s"]), "second_write_s": float(second["latency_s"]),
            "copy_up_bytes": int(first["copy_up_bytes"]), "second_copy_up_bytes": int(second["copy_up_bytes"])}


def inspect_image(path: str | Path, top: int = 10) -> dict:
    """A real image's layers, sizes, file-size and depth distributions, shadowed and largest files
    (see :func:`sim.imagefile.inspect_image`); ``path`` as a scenario's ``image: {from: PATH}``."""
    from .imagefile import inspect_image as inspect, load_image
    return inspect(load_image(path), top)


def inspect_trace(path: str | Path, cwd: str = "/") -> dict:
    """What a ``strace -f -tt -T`` trace holds for replay: syscalls replayed, kept for
    bookkeeping and unusable (by syscall name and reason), recorded time and bytes."""
    from .trace import parse_trace
    return parse_trace(path, cwd).summary()
