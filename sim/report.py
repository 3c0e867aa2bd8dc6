"""Reports of a run: the figures that fit its sweep, a per-driver summary with a ranking, written
as a self-contained HTML page (figures embedded) and a Markdown summary beside PNG files.

Everything reads the run through :class:`sim.api.RunResult` (``sim.load_run``), so notebooks get
the same figures and table as ``cowsim report``.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, TypeAdapter, ValidationError

from .api import RunResult, load_run
from .errors import CowsimError
from .plots import (METRIC_LABELS, coinciding_drivers, driver_order, plot_bars, plot_latency_cdf, plot_vs,
                    replicate_stats, unit_of)
from .records import SETUP_OPS
from .scenario import CopyupProbe, FileImage, Mix, ProbeImage, Scenario, SyntheticImage, swept_fields
from .units import format_duration, format_size

RATIOS = ["page_cache_hit_ratio", "dentry_hit_ratio"]
DISK = ["size_bytes", "virtual_bytes", "real_bytes"]
MAX_SLICES = 4
# The operations' columns the figures (and the notebooks' phase breakdowns) use: not the paths.
VIEW_COLUMNS = ["point", "replicate", "driver", "op", "error", "latency_s", "lookup_s", "copy_up_s", "data_s",
                "fsync_s"]
# A run with more operations is looked at through every n-th of them, so that a report of a run of
# tens of millions of operations fits in memory; the summary's quantiles are from all of them.
MAX_VIEW_OPS = 1_000_000


# Axis labels of fields whose description does not make one (a path, a choice of names).
AXIS_LABELS = {"workload.path": "traced program", "image.path": "image", "profile": "host profile",
               "cache": "cache at start", "driver.name": "driver"}
PATH_FIELDS = ("workload.path", "image.path")


@dataclass
class SweptKey:
    """A swept scenario field other than the driver: its summary column, axis label and unit."""

    column: str
    label: str
    unit: str

    @property
    def short(self) -> str:
        return self.column.rsplit(".", 1)[-1]

    @property
    def categorical(self) -> bool:
        return self.unit == "name"

    def text(self, value) -> str:
        if self.unit == "bytes":
            return format_size(value)
        if self.unit == "s":
            return format_duration(value)
        if self.unit == "fraction" and isinstance(value, (int, float, np.number)):
            return f"{value:.0%}"
        if self.column in PATH_FIELDS:  # the file's name says which program or image it is
            return Path(str(value)).name
        return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


@dataclass
class RunView:
    """A run made ready to plot: swept values parsed into numbers (seconds, bytes)."""

    run: RunResult
    summary: pd.DataFrame
    space: pd.DataFrame  # the ``total`` rows of space.parquet, with the swept values
    ops: pd.DataFrame  # the measured operations (no setup), VIEW_COLUMNS and the swept values
    keys: list[SweptKey] = field(default_factory=list)
    fixed: str = ""
    probe: bool = False  # a copy-up probe (first and second writes) rather than a mix
    ops_step: int = 1  # ``ops`` holds every ops_step-th operation of the run (see MAX_VIEW_OPS)


def _base_scenario(resolved: dict) -> Scenario | None:
    try:
        return Scenario.model_validate(resolved)
    except (ValidationError, ValueError):
        return None


def _field(base: Scenario | None, dotted: str):
    """The pydantic field behind a dotted scenario key, walking the validated scenario."""
    node = base
    *parents, name = dotted.split(".")
    for part in parents:
        node = getattr(node, part, None)
    if not isinstance(node, BaseModel):
        return None
    return type(node).model_fields.get(name)


def axis_label(column: str, description: str, numeric: bool) -> str:
    """What an axis of ``column`` is called: the first clause of the field's description when it
    names a quantity briefly, else a fixed label or the field's own name in words."""
    text = re.sub(r"\s*\[[^\]]+\]\s*$", "", description).split(";")[0]
    text = re.sub(r"\s*\([^)]*\)", "", text.split(": ", 1)[-1]).strip()
    if column in AXIS_LABELS:
        return AXIS_LABELS[column]
    if numeric and text and len(text) <= 45 and "`" not in text:
        return text
    return column.rsplit(".", 1)[-1].replace("_", " ")


def swept_key(base: Scenario | None, column: str) -> tuple[SweptKey, Callable[[Any], Any]]:
    """Axis label and unit from the field (its declared unit, or ``... [bytes]`` in its
    description), and its parser. Fields that are not numbers (names, paths) have unit ``name``."""
    info = _field(base, column)
    description = (info.description or "") if info else ""
    match = re.search(r"\[([^\]]+)\]\s*$", description)
    # Scenario fields declare their unit in the schema (sim.scenario.field); driver options end
    # their description with it.
    declared = info.json_schema_extra.get("unit") if info and isinstance(info.json_schema_extra, dict) else None
    unit = declared if declared not in (None, "-") else (match.group(1) if match else "")
    types = (info.annotation, *getattr(info.annotation, "__args__", ())) if info else ()
    numeric = any(t in (int, float) for t in types)
    if column.endswith("fraction"):
        unit = "fraction"
    elif unit == "1" or (not unit and numeric):
        unit = ""
    elif not unit:
        unit = "name"

    # The field's own type with its validators parses "64MiB" to bytes, "2ms" to seconds.
    kind: Any = (Annotated[tuple([info.annotation, *info.metadata])]  # type: ignore[valid-type]
                 if info and info.metadata else info.annotation if info else None)
    adapter = TypeAdapter(kind) if kind is not None else None

    def parse(value):
        try:
            return adapter.validate_python(value) if adapter else value
        except ValidationError:
            return value
    return SweptKey(column, axis_label(column, description, numeric), unit), parse


def held_fixed(base: Scenario | None, swept: set[str]) -> str:
    """What the run kept constant, in a few words, for figure titles."""
    if base is None:
        return ""
    parts = [("profile", f"{base.profile} disk"), ("cache", f"{base.cache} cache")]
    image, work, boxes = base.image, base.workload, base.containers
    if isinstance(image, ProbeImage):
        parts += [("image.file_size", f"{format_size(image.file_size)} file"),
                  ("image.layers", f"{image.layers} layer{'s' * (image.layers != 1)}"),
                  ("image.dir_depth", f"dir depth {image.dir_depth}")]
    elif isinstance(image, SyntheticImage):
        parts += [("image.layers", f"{image.layers} layers"),
                  ("image.files_per_layer", f"{image.files_per_layer} files/layer"),
                  ("image.file_size", f"{image.size_distribution} {format_size(image.file_size)} files"),
                  ("image.dir_depth", f"dir depth {image.dir_depth}")]
    elif isinstance(image, FileImage):
        parts.append(("image.path", Path(image.path).name))
    if base.images:  # several images: the one of image: is not there
        parts = parts[:2] + [("images", f"{len(base.images)} images")]
    parts.append(("containers.count", f"{boxes.count} container{'s' * (boxes.count != 1)}"))
    if boxes.volumes:
        parts.append(("containers.volumes", f"{len(boxes.volumes)} volume{'s' * (len(boxes.volumes) != 1)}"))
    if isinstance(work, CopyupProbe):
        parts.append(("workload.write_size", f"{format_size(work.write_size)} write{' + fsync' * work.fsync}"))
    elif isinstance(work, Mix):
        loop = (f"{work.workers} workers/container" if work.mode == "closed"
                else f"{work.arrival_rate:g} ops/s/container")
        parts += [("workload.mode", loop), ("workload.operations", f"{work.operations} ops" if work.operations else ""),
                  ("workload.fsync", "fsync" if work.fsync else ""),
                  ("workload.volume_fraction",
                   f"{work.volume_fraction:.0%} on volumes" if work.volume_fraction else "")]
    options = base.driver.options
    if options and "driver.name" not in swept:  # options belong to one driver, not to a driver sweep
        parts.append(("driver.options", ", ".join(f"{k}={v}" for k, v in options.items())))
    return ", ".join(text for key, text in parts
                     if text and not any(s == key or s.startswith(key + ".") for s in swept))


def view(run: RunResult | str | Path) -> RunView:
    """Read a run (or take a loaded one) and parse its swept values."""
    run = run if isinstance(run, RunResult) else load_run(run)
    base = _base_scenario(run.resolved)
    sweep = swept_fields((run.resolved or {}).get("sweep"))
    summary = run.summary.copy()
    keys = []
    for column in sweep:
        if column == "driver.name" or column not in summary.columns:
            continue
        key, parse = swept_key(base, column)
        summary[column] = summary[column].map(parse)
        keys.append(key)
    tags = summary[["point", "replicate", *[k.column for k in keys]]].drop_duplicates(["point", "replicate"])
    space = run.space
    if len(space):
        space = space[space["kind"] == "total"].merge(tags, on=["point", "replicate"], how="left")
    step = max(1, math.ceil(run.operations / MAX_VIEW_OPS))
    ops = run.read_ops(VIEW_COLUMNS, step)
    if len(ops):
        ops = ops[~ops["op"].isin(SETUP_OPS)]
        ops = ops.merge(tags, on=["point", "replicate"], how="left")
    probe = "first_write_s" in summary and summary["first_write_s"].notna().any()
    return RunView(run, summary, space, ops, keys, held_fixed(base, set(sweep)), bool(probe), step)


def _slices(frame: pd.DataFrame, keys: list[SweptKey]) -> list[dict]:
    """Combinations of the given swept keys to hold fixed: each key's first and last value."""
    combos: list[dict] = [{}]
    for key in keys:
        values = sorted(frame[key.column].dropna().unique())
        ends = list(dict.fromkeys([values[0], values[-1]])) if values else []
        combos = [{**c, key.column: v} for c in combos for v in ends]
    return combos[:MAX_SLICES]


def _select(frame: pd.DataFrame, held: dict) -> pd.DataFrame:
    for column, value in held.items():
        frame = frame[frame[column] == value]
    return frame


def _title(what: str, fixed: str, held: dict, keys: list[SweptKey]) -> str:
    named = {k.column: k for k in keys}
    extra = [f"{named[c].label} = {named[c].text(v)}" for c, v in held.items()]
    return f"{what}\nheld fixed: " + "; ".join(p for p in [fixed, *extra] if p)


def _slug(held: dict, keys: list[SweptKey]) -> str:
    named = {k.column: k for k in keys}
    return "".join(f"_{named[c].short}-{re.sub(r'[^A-Za-z0-9.]+', '', named[c].text(v))}" for c, v in held.items())


def _varies(frame: pd.DataFrame, columns: list[str]) -> bool:
    return any(c in frame and frame[c].dropna().nunique() > 1 for c in columns)


@dataclass
class ReportFigure:
    name: str
    caption: str
    figure: object  # matplotlib.figure.Figure


def coincidence_note(frame: pd.DataFrame, x: str, metrics: list[str]) -> str:
    """A caption sentence naming the drivers drawn over one another in each panel."""
    notes = []
    for metric in metrics:
        for group in coinciding_drivers(replicate_stats(frame, x, metric), x):
            everyone = len(group) == frame["driver"].nunique()
            who = f"all {len(group)} drivers" if everyone else ", ".join(group[:-1]) + f" and {group[-1]}"
            notes.append(f"{METRIC_LABELS.get(metric, metric)}: {who} give the same values, drawn as one line")
    return (" Lines on top of each other: " + "; ".join(notes) + ".") if notes else ""


def _sweep_figure(name: str, caption: str, what: str, frame: pd.DataFrame, key: SweptKey, metrics: list[str],
                  v: RunView, held: dict, band: str, **scales) -> ReportFigure:
    figure = plot_vs(frame, key.column, metrics, x_label=key.label, x_unit=key.unit, text=key.text,
                     title=_title(f"{what} vs {key.label}", v.fixed, held, v.keys), **scales)
    note = "" if key.categorical else coincidence_note(frame, key.column, metrics)
    return ReportFigure(name, caption + (band if not key.categorical else "") + note, figure)


def figures(run: RunResult | str | Path | RunView) -> list[ReportFigure]:
    """The figures that fit the run's sweep (see the module docstring of :mod:`sim.plots`)."""
    v = run if isinstance(run, RunView) else view(run)
    out: list[ReportFigure] = []
    band = " Lines are means over replicates; the band spans the smallest to the largest." \
        if v.summary.groupby("point").size().max() > 1 else ""
    for key in v.keys:
        others = [k for k in v.keys if k is not key]
        for held in _slices(v.summary, others):
            rows, tag = _select(v.summary, held), _slug(held, v.keys)
            if v.probe:
                log = True if key.unit == "bytes" else None
                out.append(_sweep_figure(
                    f"copyup_vs_{key.short}{tag}",
                    "Latency of the first write to a file (lookup, copy-up, write, fsync) against "
                    f"{key.label}, one line per driver.", "First write (with copy-up)", rows, key,
                    ["first_write_s"], v, held, band, logx=log, logy=log))
            else:
                out.append(_sweep_figure(
                    f"throughput_vs_{key.short}{tag}",
                    f"Throughput and p99 latency of the workload's operations against {key.label}.",
                    "Throughput and tail latency", rows, key, ["throughput_ops_s", "latency_p99_s"], v, held, band))
            if not v.probe and key.column == "containers.count":
                out.append(_sweep_figure(
                    f"contention_vs_{key.short}{tag}",
                    "Mean operation latency and makespan against the number of containers running at once: what "
                    "they share (CPUs, disk, locks) against what running side by side gains.",
                    "Contention: latency and makespan", rows, key, ["latency_mean_s", "makespan_s"], v, held, band))
            if len(v.space):
                out.append(_sweep_figure(
                    f"disk_usage_vs_{key.short}{tag}",
                    "docker ps -s style disk usage at the end of the workload: SIZE (all writable layers), "
                    "virtual size (SIZE plus each image once) and the bytes the driver really holds "
                    "(image, layers, metadata, volumes).", "Disk usage", _select(v.space, held), key, DISK, v,
                    held, band))
            if _varies(rows, RATIOS):
                out.append(_sweep_figure(
                    f"cache_vs_{key.short}{tag}",
                    "Page-cache hit ratio (bytes served from memory) and dentry-cache hit ratio.",
                    "Cache hit ratios", rows, key, RATIOS, v, held, band))
    if not v.keys:
        headline = ["first_write_s", "second_write_s"] if v.probe else ["throughput_ops_s", "latency_p99_s"]
        out.append(ReportFigure("headline", "The run's headline figures per driver (whiskers: replicate range).",
                                plot_bars(v.summary, headline, title=_title("Per driver", v.fixed, {}, []))))
        if len(v.space):
            out.append(ReportFigure("disk_usage", "docker ps -s style disk usage per driver.",
                                    plot_bars(v.space, DISK, title=_title("Disk usage", v.fixed, {}, []))))
        if _varies(v.summary, RATIOS):
            out.append(ReportFigure("cache", "Cache hit ratios per driver.",
                                    plot_bars(v.summary, RATIOS, title=_title("Cache hit ratios", v.fixed, {}, []))))
    if not v.probe and len(v.ops):
        for held in _slices(v.ops, v.keys):
            out.append(ReportFigure(
                f"latency_cdf{_slug(held, v.keys)}",
                "Distribution of operation latency per operation and driver (replicates pooled, failed "
                "operations left out)." + (f" Drawn from one operation in {v.ops_step:,} of the run's "
                                           f"{v.run.operations:,} (the summary's quantiles use them all)."
                                           if v.ops_step > 1 else ""),
                plot_latency_cdf(_select(v.ops, held), title=_title("Latency distribution", v.fixed, held, v.keys))))
    return out


# -- the summary table ---------------------------------------------------------------------------
# setup_s is there because some drivers move the copy out of the first write into container
# creation (vfs copies the whole image), which the first write alone would hide.
PROBE_HEADLINE = ["first_write_s", "second_write_s", "copy_up_bytes", "setup_s", "containers_size_bytes",
                  "real_bytes"]
MIX_HEADLINE = ["throughput_ops_s", "latency_p50_s", "latency_p99_s", "copy_ups", "errors",
                "page_cache_hit_ratio", "containers_size_bytes", "real_bytes"]
TABLE_LABELS = {"containers_size_bytes": "SIZE", "real_bytes": "real bytes", "errors": "failed ops",
                "first_write_s": "1st write", "second_write_s": "2nd write", "throughput_ops_s": "throughput",
                "latency_p50_s": "p50", "latency_p99_s": "p99", "copy_ups": "copy-ups",
                "copy_up_bytes": "copied up", "page_cache_hit_ratio": "page-cache hits",
                "setup_s": "image + container setup"}


@dataclass
class Ranking:
    table: pd.DataFrame  # one row per driver, best first: rank, the headline metrics, vs_best
    metric: str
    higher_is_better: bool
    points: int  # points every driver ran, over which the figures are aggregated
    criterion: str
    held: str = ""  # the value of a swept name (program, profile) this ranking is for


def rankings(run: RunResult | str | Path | RunView) -> list[Ranking]:
    """The drivers ranked once per value of each swept name (two traced programs are two
    different workloads, not points of one to average), else once for the whole run."""
    v = run if isinstance(run, RunView) else view(run)
    names = [k for k in v.keys if k.categorical]
    combos: list[dict] = [{}]
    for key in names:
        combos = [{**c, key.column: value} for c in combos for value in dict.fromkeys(v.summary[key.column].dropna())]
    return [ranking(v, held) for held in combos]


def ranking(run: RunResult | str | Path | RunView, held: dict | None = None) -> Ranking:
    """Per driver the headline figures over the points every driver ran, and the drivers ranked
    for the run's workload: by first-write latency for copy-up probes, by throughput for a closed
    loop, by p99 latency for an open loop (where throughput is set by the arrival rate).
    ``held`` keeps only the runs with these swept values (see :func:`rankings`).

    Times and rates are geometric means over points (so a 1 GiB point does not drown a 4 KiB
    one), bytes and counts arithmetic means; replicates are averaged first."""
    v = run if isinstance(run, RunView) else view(run)
    held = held or {}
    summary = _select(v.summary, held)
    mode = (v.run.resolved.get("workload") or {}).get("mode", "closed")
    if v.probe:
        metrics, metric, higher = PROBE_HEADLINE, "first_write_s", False
    elif mode == "open":
        metrics, metric, higher = MIX_HEADLINE, "latency_p99_s", False
    else:
        metrics, metric, higher = MIX_HEADLINE, "throughput_ops_s", True
    metrics = [m for m in metrics if m in summary]
    keys = [k.column for k in v.keys if k.column not in held]
    per_point = summary.groupby(["driver", *keys])[metrics].mean().reset_index()
    # Only the points every driver ran, so that each driver is judged on the same work.
    if keys:
        drivers = per_point["driver"].nunique()
        complete = per_point.groupby(keys)["driver"].transform("nunique") == drivers
        per_point = per_point[complete]
    points = len(per_point.drop_duplicates(keys)) if keys else 1

    def aggregate(series: pd.Series) -> float:
        values = series.dropna()
        if not len(values):
            return math.nan
        if unit_of(series.name) in ("s", "ops/s") and (values > 0).all():
            return float(np.exp(np.log(values).mean()))
        return float(values.mean())

    table = per_point.groupby("driver")[metrics].agg(aggregate)
    table = table.sort_values(metric, ascending=not higher)
    best = table[metric].iloc[0]
    table["vs_best"] = best / table[metric] if higher else table[metric] / best
    table = table.reset_index()
    table.insert(0, "rank", range(1, len(table) + 1))
    how = "geometric mean" if unit_of(metric) in ("s", "ops/s") else "mean"
    criterion = (f"ranked by {METRIC_LABELS.get(metric, metric)} ({'higher' if higher else 'lower'} is better), "
                 f"{how} over the {points} point{'s' * (points != 1)} every driver ran; in the other columns times "
                 "and rates are geometric means, bytes and counts arithmetic means")
    named = {k.column: k for k in v.keys}
    where = "; ".join(f"{named[c].label} = {named[c].text(value)}" for c, value in held.items())
    return Ranking(table, metric, higher, points, criterion, where)


# What an errno means for a replayed or simulated operation.
ERRNO_MEANING = {
    "ENOENT": "the path does not exist: a program probing for optional files (it failed the same way when "
              "recorded), or a file removed earlier in the run",
    "EXDEV": "renaming a directory that lies in a lower layer: aufs, and overlayfs without redirect_dir, refuse "
             "it (programs then copy and delete)",
    "ENOTEMPTY": "removing a directory that still holds entries",
    "EEXIST": "creating a path that already exists",
    "ENOTDIR": "a path component is a file, not a directory",
    "EISDIR": "a file operation on a directory",
    "ELOOP": "too many symbolic links on the way",
}


def failed_operations(v: RunView, examples: int = 3) -> pd.DataFrame:
    """Operations that failed: per swept name (a program), operation and errno, how many failed
    per run under each driver, some of their paths, and what the errno means."""
    if not len(v.ops) or not (v.ops["error"] != "").any():
        return pd.DataFrame()
    names = [k.column for k in v.keys if k.categorical]
    if v.ops_step == 1:  # the view leaves the paths out: read them, for the failed operations only
        failed = v.run.read_ops(["point", "replicate", "driver", "op", "error", "path"])
        tags = v.summary[["point", "replicate", *names]].drop_duplicates(["point", "replicate"])
        failed = failed[(failed["error"] != "") & ~failed["op"].isin(SETUP_OPS)].merge(tags, on=["point", "replicate"])
    else:
        failed = v.ops[v.ops["error"] != ""].assign(path="")
    runs = v.summary.groupby(["driver", *names]).size().rename("runs").reset_index()
    counts = failed.groupby(["driver", *names, "op", "error"]).size().rename("failed").reset_index()
    counts = counts.merge(runs, on=["driver", *names])
    counts["per_run"] = counts["failed"] / counts["runs"] * v.ops_step
    table = counts.pivot_table(index=[*names, "op", "error"], columns="driver", values="per_run", fill_value=0,
                               sort=False)
    table = table[[d for d in driver_order(counts["driver"]) if d in table.columns]]
    if v.ops_step == 1:
        table["for example"] = failed.groupby([*names, "op", "error"])["path"].agg(
            lambda paths: ", ".join("/" + p for p in list(dict.fromkeys(paths))[:examples]))
    table["why"] = [ERRNO_MEANING.get(error, "") for error in table.index.get_level_values("error")]
    table = table.reset_index()
    table.columns.name = None
    named = {k.column: k for k in v.keys}
    for column in names:
        table[column] = table[column].map(named[column].text)
    return table.rename(columns={c: named[c].label for c in names})


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    unit = unit_of(column)
    if column == "vs_best":
        return f"{value:.2f}x"
    if column in ("rank", "driver"):
        return str(value)
    if unit == "s":
        return format_duration(value)
    if unit == "bytes":
        return format_size(value)
    if unit == "fraction":
        return f"{value:.1%}"
    if unit == "ops/s":
        return f"{value:,.0f} ops/s"
    return f"{value:,.0f}" if float(value).is_integer() or value > 100 else f"{value:.3g}"


def table_rows(rank: Ranking) -> tuple[list[str], list[list[str]]]:
    columns = list(rank.table.columns)
    header = [TABLE_LABELS.get(c, "vs best" if c == "vs_best" else c) for c in columns]
    rows = [[_cell(c, row[c]) for c in columns] for _, row in rank.table.iterrows()]
    return header, rows


# -- writing -------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f2f2f2; } table.facts td { text-align: left; }
table.ranking td:nth-child(2) { text-align: left; font-weight: 600; }
table.ranking tr:nth-child(2) td { background: #eef7ee; }
table.failed td:nth-child(-n+3), table.failed td:nth-last-child(-n+2) { text-align: left; }
figure { margin: 2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.4em; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def _facts(v: RunView) -> list[tuple[str, str]]:
    m, resolved = v.run.manifest, v.run.resolved or {}
    sweep = resolved.get("sweep") or {}
    replicates = resolved.get("replicates", 1)
    facts = [("scenario", v.run.name), ("run folder", str(v.run.path or "(not saved)")),
             ("held fixed", v.fixed or "-"),
             ("swept", "; ".join(f"{k}: {', '.join(map(str, vals))}" for k, vals in sweep.items()) or "nothing"),
             ("runs", f"{m.get('runs', len(v.summary))} ({m.get('points', '?')} points x "
                      f"{replicates} replicate{'s' * (replicates != 1)}), seed {resolved.get('seed', '?')}"),
             ("wall time", format_duration(m["wall_time_s"]) if "wall_time_s" in m else "-"),
             ("cowsim", f"{m.get('cowsim', '?')}" + (f", commit {m['git_commit'][:10]}" if m.get("git_commit") else "")
              + (" (dirty tree)" if m.get("git_dirty") else ""))]
    return facts


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


@dataclass
class Table:
    """A table of the report, written the same way into HTML and Markdown."""

    title: str
    text: str
    header: list[str]
    rows: list[list[str]]
    css: str = ""


def tables(v: RunView, ranks: list[Ranking]) -> list[Table]:
    """The rankings (one per swept name), then what failed and why."""
    out = []
    for rank in ranks:
        header, rows = table_rows(rank)
        title = "Drivers ranked for this workload" + (f": {rank.held}" if rank.held else "")
        out.append(Table(title, f"{rank.criterion}.", header, rows, "ranking"))
    out += disk_tables(v.run.df)
    failed = failed_operations(v)
    if len(failed):
        drivers = [c for c in failed.columns if c in set(v.summary["driver"])]
        rows = [[f"{row[c]:,.4g}" if c in drivers else str(row[c]) for c in failed.columns]
                for _, row in failed.iterrows()]
        out.append(Table("Failed operations",
                         "Operations that returned an error, per run, under each driver; a replayed program "
                         "mostly fails where it failed when it was recorded" + _recorded_failures(v) + ". Failed "
                         "operations are counted in the tables but left out of the latency distributions.",
                         [str(c) for c in failed.columns], rows, "failed"))
    return out


DF_TYPES = ("images", "containers", "volumes", "logs", "total")


def disk_tables(df: pd.DataFrame) -> list[Table]:
    """``docker system df`` of the first run of each driver (the node's disk when the workload
    ended, and after what the scenario removed), and ``docker system df -v``'s images when the
    node holds several."""
    if df is None or not len(df) or "kind" not in df:
        return []
    first = df.drop_duplicates("driver")[["driver", "point", "replicate"]]
    runs = df.merge(first, on=["driver", "point", "replicate"])
    header = ["driver", "when", "type", "total", "active", "size", "reclaimable", "docker says reclaimable",
              "real bytes"]
    rows = [[row["driver"], row["when"], row["kind"], f"{row['count']:,}" if row["kind"] != "total" else "",
             f"{row['active']:,}" if row["kind"] != "total" else "", format_size(row["size_bytes"]),
             format_size(row["reclaimable_bytes"]), format_size(row["docker_reclaimable_bytes"]),
             format_size(row["real_bytes"])]
            for _, row in runs[runs["kind"].isin(DF_TYPES)].iterrows()]
    out = [Table("Node disk (docker system df)",
                 "What the node holds, per driver (its first run): images with each layer once (reclaimable: "
                 "the layers no container's image holds, what docker image prune -a frees; Docker itself prints "
                 "more, counting the shared layers of images in use), the containers' writable layers (SIZE), "
                 "volumes (reclaimable when no container mounts them) and json-file logs; real bytes are what the "
                 "driver and the host filesystem really hold.", header, rows)]
    images = runs[(runs["kind"] == "image") & (runs["driver"] == runs["driver"].iloc[0])
                  & (runs["when"] == runs["when"].iloc[0])]
    if len(images) > 1:
        out.append(Table("Images (docker system df -v)",
                         "Each image on the node: its size (all its layers), the part it shares with other images "
                         "and its own; a layer shared by several images is stored once.",
                         ["image", "size", "shared size", "unique size", "containers"],
                         [[row["name"], format_size(row["size_bytes"]), format_size(row["shared_bytes"]),
                           format_size(row["unique_bytes"]), f"{row['containers']:,}"]
                          for _, row in images.iterrows()]))
    return out


def _recorded_failures(v: RunView) -> str:
    """``(when recorded: 172 syscalls failed per run for python3-startup...)`` for trace runs."""
    if "trace_recorded_failures" not in v.summary or not v.summary["trace_recorded_failures"].notna().any():
        return ""
    names = [k for k in v.keys if k.categorical]
    recorded = v.summary.groupby([k.column for k in names])["trace_recorded_failures"].mean() if names else \
        pd.Series([v.summary["trace_recorded_failures"].mean()], index=[""])
    parts = [f"{count:,.0f}" + (f" for {names[0].text(key)}" if names else "") for key, count in recorded.items()]
    return f" (when recorded, the syscalls that failed per run: {', '.join(parts)})"


def render_html(v: RunView, sections: list[Table], figs: list[ReportFigure], pngs: dict[str, bytes]) -> str:
    e = html.escape
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(val)}</td></tr>" for k, val in _facts(v))
    body = [f"<h1>cowsim report: {e(v.run.name)}</h1>",
            f"<p class='meta'>written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}</p>",
            f"<p>{e((v.run.resolved or {}).get('description', '').strip())}</p>",
            f"<table class='facts'>{facts}</table>"]
    for section in sections:
        body += [f"<h2>{e(section.title)}</h2>", f"<p>{e(section.text)}</p>",
                 f"<table class='{section.css}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in section.header) + "</tr>"
                 + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in section.rows)
                 + "</table>"]
    body.append("<h2>Figures</h2>")
    for fig in figs:
        data = base64.b64encode(pngs[fig.name]).decode()
        body.append(f"<figure id='{e(fig.name)}'><img src='data:image/png;base64,{data}' alt='{e(fig.name)}'>"
                    f"<figcaption>{e(fig.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>cowsim report: {e(v.run.name)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def render_markdown(v: RunView, sections: list[Table], figs: list[ReportFigure]) -> str:
    lines = [f"# cowsim report: {v.run.name}", "", (v.run.resolved or {}).get("description", "").strip(), ""]
    lines += [f"- **{k}**: {val}" for k, val in _facts(v)]
    for section in sections:
        lines += ["", f"## {section.title}", "", section.text, "",
                  "| " + " | ".join(section.header) + " |", "|" + "---|" * len(section.header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in section.rows]
    lines += ["", "## Figures", ""]
    for fig in figs:
        lines += [f"![{fig.name}]({fig.name}.png)", "", fig.caption, ""]
    return "\n".join(lines)


def write_report(run: RunResult | str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` (self-contained), ``report.md`` and one PNG per figure into ``out``
    (default ``<run folder>/report``); returns the path of ``report.html``.

    The folder is written whole under a temporary name and then put in place; an earlier report
    there is replaced, but a folder that is not a cowsim report is never touched."""
    try:
        v = view(run)
    except FileNotFoundError as error:
        raise CowsimError(str(error)) from None
    if out is None:
        if v.run.path is None:
            raise CowsimError("this run was not saved: give the report folder (out)")
        out = v.run.path / "report"
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "report.html").exists():
        raise CowsimError(f"{out} exists and is not a cowsim report: choose another -o")
    if len(v.summary) == 0:
        raise CowsimError(f"{v.run.path}: the run has no summary rows to report")
    if "status" in v.summary and not (v.summary["status"] == "ok").any():
        first = v.summary["failure"].iloc[0] if "failure" in v.summary else "?"
        raise CowsimError(f"{v.run.path}: all {len(v.summary)} runs failed (the first: {first}): nothing to report")
    figs = figures(v)
    sections = tables(v, rankings(v))
    pngs = {}
    for fig in figs:
        pngs[fig.name] = _png(fig.figure)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        for name, data in pngs.items():
            (partial / f"{name}.png").write_bytes(data)
        (partial / "report.md").write_text(render_markdown(v, sections, figs))
        (partial / "report.html").write_text(render_html(v, sections, figs, pngs))
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out / "report.html"
