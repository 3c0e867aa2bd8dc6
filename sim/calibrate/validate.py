"""Predicted against measured: the simulator run on the very experiments ``calibrate`` measured.

A point is one configuration (experiment, driver, filesystem, options, file size, layers,
directory depth, cache); its measured value is the median of its repeats. The prediction comes
from :func:`sim.probe` (lookup, first and second write; ``copy_up`` is first minus second) or,
for ``create``, from the ``create_container`` operation of a one-container scenario.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..api import probe, run_scenario
from ..errors import CowsimError
from ..units import format_duration
from .measure import COLUMNS, OPTIONAL_COLUMNS

POINT = ["experiment", "sweep", "driver", "fs", "options", "file_size", "layers", "dir_depth", "dir_entries",
         "concurrency", "cache"]
SWEPT = {"file_size": "file_size", "layers": "layers", "dir_depth": "dir_depth", "image_size": "file_size",
         "dir_entries": "dir_entries", "concurrency": "concurrency"}
DEFAULT_THRESHOLD = 0.25
FLAT = 0.25  # a sweep that moves the time by less than this fraction of its mean has no trend


def read_measurements(path: str | Path) -> pd.DataFrame:
    """A measurements CSV, checked: one line naming the file and what is wrong otherwise."""
    try:
        frame = pd.read_csv(path, keep_default_na=False)
    except FileNotFoundError:
        raise CowsimError(f"{path}: no such measurements file") from None
    except (OSError, ValueError) as error:
        raise CowsimError(f"{path}: cannot read measurements: {error}") from None
    for column, default in OPTIONAL_COLUMNS.items():
        if column not in frame.columns:
            frame[column] = default
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CowsimError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise CowsimError(f"{path}: no measurements")
    seconds = pd.to_numeric(frame["seconds"], errors="coerce")
    bad = ~np.isfinite(seconds)  # copy_up (a difference of two times) may be slightly negative
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CowsimError(f"{path}: line {row + 2}: seconds: not a number: {frame['seconds'].iloc[row]!r}")
    frame["seconds"] = seconds
    return frame


# What stands for a point's repeats. Timing noise from other work on a shared host only adds
# time, so the lower quartile is the default: it keeps the uncontended cost without trusting
# the single luckiest run (``min``); ``median`` is there for a quiet machine.
STATISTICS = {"p25": 0.25, "median": 0.5, "min": 0.0}
DEFAULT_STATISTIC = "p25"


def points(measurements: pd.DataFrame, statistic: str = DEFAULT_STATISTIC) -> pd.DataFrame:
    """One row per configuration: the chosen statistic, quartiles and count of its repeats."""
    if statistic not in STATISTICS:
        raise CowsimError(f"statistic: use one of {', '.join(STATISTICS)}, got {statistic!r}")
    grouped = measurements.groupby(POINT, sort=False)["seconds"]
    table = grouped.quantile(STATISTICS[statistic]).rename("measured_s").to_frame()
    table["median_s"] = grouped.median()
    table["p25_s"] = grouped.quantile(0.25)
    table["p75_s"] = grouped.quantile(0.75)
    table["repeats"] = grouped.size()
    return table.reset_index()


# Experiment families: what one held-out fit leaves out (``cowsim validate-profile --held-out``)
# and what each stage of the fit learns from (``fit.STAGES``). A family is a driver's sweep, but
# xfs reflink copy-ups and concurrent runs are one family each, and a driver's container
# creation is ``<driver>_create``.
DRIVER_FAMILY = {"overlay2": "overlay", "fuse-overlayfs": "fuse", "btrfs": "btrfs", "vfs": "vfs"}
FAMILIES = ("overlay_file_size", "overlay_layers", "overlay_dir_depth", "overlay_dir_entries", "fuse_file_size",
            "fuse_layers", "fuse_dir_entries", "reflink", "overlay_create", "btrfs_create", "vfs_create",
            "btrfs_dir_depth", "concurrent_copy_up", "concurrent_read")


def family(row) -> str:
    driver = DRIVER_FAMILY.get(row.driver, row.driver)
    if row.experiment == "create":
        return f"{driver}_create"
    if row.sweep == "concurrency":
        return "concurrent_read" if row.experiment.startswith("read") else "concurrent_copy_up"
    if "reflink=true" in str(row.options):
        return "reflink"
    return f"{driver}_{row.sweep}"


def families(table: pd.DataFrame) -> pd.Series:
    """Each point's experiment family."""
    return pd.Series([family(row) for row in table.itertuples(index=False)], index=table.index, dtype=object)


def _options(text: str) -> dict:
    options = {}
    for item in filter(None, str(text).split(",")):
        key, _, value = item.partition("=")
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options


class Predictor:
    """Predictions for points under one profile, each simulation run once."""

    def __init__(self, profile: str | Path):
        self.profile = str(profile)
        self._memo: dict[tuple, dict] = {}

    def _probe(self, row) -> dict:
        key = ("probe", row.driver, row.options, int(row.file_size), int(row.layers), int(row.dir_depth),
               int(row.dir_entries), row.cache)
        if key not in self._memo:
            self._memo[key] = probe(row.driver, int(row.file_size), int(row.layers), int(row.dir_depth), row.cache,
                                    self.profile, int(row.dir_entries), **_options(row.options))
        return self._memo[key]

    def _scenario(self, row, workload: dict) -> pd.DataFrame:
        """The operations of ``row.concurrency`` containers over the row's probe image."""
        key = ("scenario", row.driver, row.options, int(row.file_size), int(row.layers), int(row.dir_depth),
               int(row.dir_entries), int(row.concurrency), row.cache, workload["kind"])
        if key not in self._memo:
            scenario = {"name": "calibrate", "profile": self.profile, "cache": row.cache,
                        "driver": {"name": row.driver, "options": _options(row.options)},
                        "image": {"kind": "probe", "file_size": int(row.file_size), "layers": int(row.layers),
                                  "dir_depth": int(row.dir_depth), "dir_entries": int(row.dir_entries)},
                        "containers": {"count": int(row.concurrency)}, "workload": workload}
            self._memo[key] = run_scenario(scenario).ops
        return self._memo[key]

    def _at_once(self, row) -> float:
        """Concurrent containers: the mean latency of their ``first_write`` or ``read``, or for
        ``<op>_makespan``, from the first start to the last end."""
        op = row.experiment.removesuffix("_makespan")
        if op == "read":
            workload = {"kind": "mix", "ops": {"read": 1.0}, "file_choice": "uniform",
                        "request_size": int(row.file_size), "operations": int(row.concurrency)}
        elif op == "first_write":
            workload = {"kind": "copyup_probe"}
        else:
            raise CowsimError(f"unknown concurrent experiment {row.experiment!r}")
        ops = self._scenario(row, workload)
        ops = ops[ops["op"] == op]
        if row.experiment.endswith("_makespan"):
            return float((ops["start_s"] + ops["latency_s"]).max() - ops["start_s"].min())
        return float(ops["latency_s"].mean())

    def predict(self, row) -> float:
        if row.experiment == "create":
            ops = self._scenario(row, {"kind": "copyup_probe"})
            return float(ops.loc[ops["op"] == "create_container", "latency_s"].iloc[0])
        if row.sweep == "concurrency":
            return self._at_once(row)
        result = self._probe(row)
        if row.experiment == "lookup":
            return result["lookup_s"]
        if row.experiment == "first_write":
            return result["first_write_s"]
        if row.experiment == "second_write":
            return result["second_write_s"]
        if row.experiment == "copy_up":
            return result["first_write_s"] - result["second_write_s"]
        raise CowsimError(f"unknown experiment {row.experiment!r}")

    def frame(self, table: pd.DataFrame) -> np.ndarray:
        return np.array([self.predict(row) for row in table.itertuples(index=False)])


@dataclass
class Validation:
    table: pd.DataFrame   # per point: measured, predicted, error
    slopes: pd.DataFrame  # per sweep: measured and predicted slope
    threshold: float
    statistic: str = DEFAULT_STATISTIC

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[self.table["error"].abs() > self.threshold]

    @property
    def ok(self) -> bool:
        return self.failed.empty


UNITS = {"file_size": "s/byte", "image_size": "s/byte", "layers": "s/layer", "dir_depth": "s/dir",
         "dir_entries": "s/entry", "concurrency": "s/container"}


def slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slope of seconds against the swept variable, measured and predicted, for
    each series (every other variable of the point fixed)."""
    rows = []
    for sweep, swept in table.groupby("sweep", sort=False):
        x_column = SWEPT[sweep]
        fixed = [c for c in POINT if c not in ("sweep", x_column)]
        for keys, group in swept.groupby(fixed, sort=False):
            x = group[x_column].astype(float).to_numpy()
            if len(np.unique(x)) < 2:
                continue
            measured = np.polyfit(x, group["measured_s"].to_numpy(), 1)[0]
            predicted = np.polyfit(x, group["predicted_s"].to_numpy(), 1)[0]
            # A trend is what the sweep changes relative to the mean; under FLAT both call it flat
            span = (x.max() - x.min()) / group["measured_s"].mean()
            measured_flat, predicted_flat = abs(measured) * span < FLAT, abs(predicted) * span < FLAT
            flat = measured_flat and predicted_flat
            right = flat or (measured_flat == predicted_flat and np.sign(measured) == np.sign(predicted))
            rows.append({**dict(zip(fixed, keys)), "sweep": sweep, "unit": UNITS[sweep],
                         "measured_slope": measured, "predicted_slope": predicted,
                         "ratio": predicted / measured if measured else np.nan,
                         "flat": bool(flat), "trend_right": bool(right)})
    return pd.DataFrame(rows)


def validate_profile(profile: str | Path, measurements: str | Path, threshold: float = DEFAULT_THRESHOLD,
                     statistic: str = DEFAULT_STATISTIC) -> Validation:
    """Simulate every measured point with ``profile``; relative error = predicted / measured - 1."""
    table = points(read_measurements(measurements), statistic)
    table["predicted_s"] = Predictor(profile).frame(table)
    table["error"] = table["predicted_s"] / table["measured_s"] - 1
    return Validation(table, slopes(table), threshold, statistic)


def format_report(result: Validation) -> str:
    lines = [f"{'experiment':<21}{'driver':<15}{'fs':<6}{'options':<13}{'size':>10}{'layers':>7}{'depth':>6}"
             f"{'entries':>8}{'n':>3}  {'cache':<5}{'measured':>11}{'predicted':>11}{'error':>8}"]
    for row in result.table.itertuples(index=False):
        flag = "  !" if abs(row.error) > result.threshold else ""
        lines.append(f"{row.experiment:<21}{row.driver:<15}{row.fs:<6}{row.options or '-':<13}{row.file_size:>10}"
                     f"{row.layers:>7}{row.dir_depth:>6}{row.dir_entries:>8}{row.concurrency:>3}  {row.cache:<5}"
                     f"{format_duration(row.measured_s):>11}{format_duration(row.predicted_s):>11}{row.error:>+8.0%}{flag}")
    if not result.slopes.empty:
        lines.append("")
        lines.append("slopes (seconds per unit of the swept variable):")
        for row in result.slopes.itertuples(index=False):
            at = f" ({row.layers} layers)" if row.sweep == "dir_entries" else ""
            lines.append(f"  {row.experiment:<21}{row.driver:<15}{row.fs:<6}{row.options or '-':<13}vs {row.sweep}{at:<12}"
                         f"{row.cache:<5} measured {row.measured_slope:.3g} predicted {row.predicted_slope:.3g} {row.unit}"
                         + (" (both flat: the sweep moves it by less than 25%)" if row.flat else
                            f" (ratio {row.ratio:.2f}{'' if row.trend_right else ', WRONG DIRECTION'})"))
    errors = result.table["error"].abs()
    lines.append("")
    lines.append(f"measured = the {result.statistic} of each point's repeats")
    lines.append(f"{len(result.table)} points, median |error| {errors.median():.0%}, max |error| {errors.max():.0%}; "
                 f"threshold {result.threshold:.0%}: {len(result.failed)} point(s) beyond it")
    return "\n".join(lines)


def plot(result: Validation, path: str | Path) -> Path:
    """Predicted against measured, log-log, one marker per experiment, the threshold band shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table
    fig, ax = plt.subplots(figsize=(7, 6))
    low = min(table["measured_s"].min(), table["predicted_s"].min()) / 2
    high = max(table["measured_s"].max(), table["predicted_s"].max()) * 2
    line = np.array([low, high])
    ax.plot(line, line, color="black", linewidth=0.8, label="predicted = measured")
    ax.fill_between(line, line * (1 - result.threshold), line * (1 + result.threshold), color="grey", alpha=0.2,
                    label=f"±{result.threshold:.0%}")
    for (experiment, driver), group in table.groupby(["experiment", "driver"], sort=False):
        ax.errorbar(group["measured_s"], group["predicted_s"],
                    xerr=[(group["measured_s"] - group["p25_s"]).clip(lower=0),
                          (group["p75_s"] - group["measured_s"]).clip(lower=0)],
                    fmt="o", markersize=4, capsize=2, label=f"{driver} {experiment}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"measured [s] ({result.statistic} of the repeats, bars: quartiles)")
    ax.set_ylabel("predicted [s]")
    ax.set_title("cowsim: predicted against measured")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
