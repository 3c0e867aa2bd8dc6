"""Figures of a run. Each function returns a matplotlib Figure built without pyplot, so nothing
opens a window, no global figure state leaks between calls, and saving renders with Agg whatever
backend a notebook has chosen.

Every figure draws one line (or bar) per driver in that driver's colour and marker from
:data:`DRIVER_STYLE`, the one place colours are chosen, so a driver looks the same everywhere.
Replicates are drawn as their mean with a band from the smallest to the largest replicate.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, PercentFormatter

from .units import format_duration, format_size

# Union drivers in blues/purples, snapshot drivers in greens/reds, vfs grey. Markers and dashes
# differ too, so drivers whose numbers coincide (overlay2, overlay and aufs often do) stay visible.
DRIVER_STYLE = {
    "overlay2": {"color": "#1f77b4", "marker": "o", "linestyle": "-"},
    "overlay": {"color": "#17becf", "marker": "s", "linestyle": "--"},
    "aufs": {"color": "#9467bd", "marker": "^", "linestyle": ":"},
    "fuse-overlayfs": {"color": "#ff7f0e", "marker": "D", "linestyle": "-"},
    "btrfs": {"color": "#2ca02c", "marker": "v", "linestyle": "-"},
    "zfs": {"color": "#8c564b", "marker": "P", "linestyle": "--"},
    "devicemapper": {"color": "#d62728", "marker": "X", "linestyle": "-."},
    "vfs": {"color": "#7f7f7f", "marker": "*", "linestyle": "-"},
}
_SPARE = ["#e377c2", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173"]

# What each metric is called on an axis, and how its ticks are written. Units come from the name:
# ``_s`` seconds, ``_bytes`` bytes, ``_ratio`` a fraction, ``_ops_s`` operations per second.
METRIC_LABELS = {
    "first_write_s": "first write latency (with its copy-up)",
    "second_write_s": "second write latency",
    "copy_up_p50_s": "copy-up time, median",
    "latency_mean_s": "operation latency, mean",
    "latency_p50_s": "operation latency, p50",
    "latency_p95_s": "operation latency, p95",
    "latency_p99_s": "operation latency, p99",
    "throughput_ops_s": "throughput",
    "makespan_s": "makespan (start to last operation's end)",
    "page_cache_hit_ratio": "page-cache hit ratio (bytes)",
    "dentry_hit_ratio": "dentry-cache hit ratio",
    "size_bytes": "SIZE (writable layers)",
    "virtual_bytes": "virtual size (SIZE + image once)",
    "real_bytes": "real bytes the driver holds",
    "copy_up_bytes": "bytes copied up",
    "copy_ups": "copy-ups",
    "setup_s": "image and container setup time",
    "lookup_s": "path lookup time per operation",
    "copy_up_s": "copy-up time per operation",
    "data_s": "data transfer time per operation",
    "fsync_s": "fsync time per operation",
}


def driver_style(driver: str) -> dict:
    """Colour, marker and dash of a driver; drivers added later get a stable spare colour."""
    if driver in DRIVER_STYLE:
        return DRIVER_STYLE[driver]
    index = sum(driver.encode()) % len(_SPARE)
    return {"color": _SPARE[index], "marker": "h", "linestyle": "-"}


def driver_order(drivers) -> list[str]:
    """Drivers in the fixed order of :data:`DRIVER_STYLE`, unknown ones after, so legends match."""
    known = list(DRIVER_STYLE)
    return sorted(set(drivers), key=lambda d: (known.index(d) if d in known else len(known), d))


def unit_of(column: str) -> str:
    if column.endswith("_ops_s"):
        return "ops/s"
    if column.endswith("_s"):
        return "s"
    if column.endswith("bytes"):
        return "bytes"
    if column.endswith("ratio"):
        return "fraction"
    return "count"


def _tick_text(unit: str):
    if unit == "s":
        return lambda v, _=None: format_duration(v) if v > 0 else "0"
    if unit == "bytes":
        return lambda v, _=None: format_size(v)
    if unit == "ops/s":
        return lambda v, _=None: f"{v / 1000:g}k ops/s" if abs(v) >= 10_000 else f"{v:,.4g} ops/s"
    return lambda v, _=None: f"{v:g}"


class BinaryLocator(MaxNLocator):
    """Linear byte ticks at round numbers of KiB, MiB or GiB rather than of 10^n bytes."""

    def tick_values(self, vmin, vmax):
        scale = 1024.0 ** max(0, math.floor(math.log(max(abs(vmin), abs(vmax), 1), 1024)))
        return super().tick_values(vmin / scale, vmax / scale) * scale


def label_axis(axis, unit: str, label: str) -> None:
    """Label an axis and write its ticks in human units (``10 ms``, ``64 MiB``, ``50%``).
    Call it after choosing the axis scale."""
    if unit == "fraction":
        axis.set_label_text(f"{label} [%]")
        axis.set_major_formatter(PercentFormatter(1.0))
    else:
        # Seconds, bytes and rates carry their unit on every tick ("10 ms", "64 MiB"); a bare
        # count says so in the label.
        axis.set_label_text(label if unit in ("s", "bytes", "ops/s", "") else f"{label} [{unit}]")
        axis.set_major_formatter(FuncFormatter(_tick_text(unit)))
        low, high = axis.get_view_interval()
        if unit != "bytes" and axis.get_scale() == "log" and 0 < low < high < 100 * low:
            # Under two decades: label 1, 2 and 5 of each decade, or there may be no label at all.
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        if unit == "bytes":  # ticks at 4 KiB, 64 KiB, 1 MiB (log) or round KiB/MiB/GiB (linear)
            narrow = 0 < low < high < 64 * low
            axis.set_major_locator(LogLocator(base=2 if narrow else 4) if axis.get_scale() == "log"
                                   else BinaryLocator(nbins=6, steps=[1, 2, 4, 5, 8, 10]))
    axis.set_minor_formatter(NullFormatter())


def _wants_log(values) -> bool:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    return len(values) > 1 and (values > 0).all() and values.max() / values.min() >= 30


def new_figure(panels: int, title: str, width: float = 0, height: float = 4.4) -> tuple[Figure, list]:
    columns = min(panels, 3)
    width = width or (6.4 if columns == 1 else 5.4)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(width * columns, height * rows + 0.5), dpi=100, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.remove()
    # Wrap long "held fixed" lines to the figure's width (about 13 characters per inch).
    lines = [textwrap.fill(line, int(width * columns * 13)) for line in title.splitlines()]
    figure.suptitle("\n".join(lines), fontsize=11)
    return figure, axes[:panels]


def replicate_stats(frame: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    """Mean, min, max and count of ``metric`` per driver and ``x`` over replicates."""
    grouped = frame.dropna(subset=[metric]).groupby(["driver", x])[metric]
    return grouped.agg(["mean", "min", "max", "count"]).reset_index()


def plot_vs(frame: pd.DataFrame, x: str, metrics: list[str], *, title: str, x_label: str, x_unit: str,
            logx: bool | None = None, logy: bool | None = None) -> Figure:
    """One panel per metric against the swept ``x``, one line per driver, replicates as a band."""
    figure, axes = new_figure(len(metrics), title)
    xs = list(dict.fromkeys(frame[x].dropna()))
    # Names (profiles, cache modes) and flags sit at evenly spaced positions, in sweep order.
    categories = [] if all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                           for v in xs) else xs
    if categories:
        frame = frame.assign(**{x: frame[x].map({v: i for i, v in enumerate(categories)})})
        xs, logx = list(range(len(categories))), False
    xs = sorted(xs)
    logx = _wants_log(xs) if logx is None else logx
    replicated = frame.groupby(["driver", x]).size().max() > 1
    for ax, metric in zip(axes, metrics):
        stats = replicate_stats(frame, x, metric)
        for driver in driver_order(stats["driver"]):
            rows = stats[stats["driver"] == driver].sort_values(x)
            style = driver_style(driver)
            ax.plot(rows[x], rows["mean"], label=driver, markersize=6, markerfacecolor="none", **style)
            if replicated:
                ax.fill_between(rows[x], rows["min"], rows["max"], color=style["color"], alpha=0.15, linewidth=0)
        ax.set_xscale("log" if logx else "linear")
        use_logy = _wants_log(stats["mean"]) if logy is None else logy
        ax.set_yscale("log" if use_logy else "linear")
        if not use_logy and unit_of(metric) != "fraction":
            ax.set_ylim(bottom=0)
        label_axis(ax.xaxis, x_unit, x_label)
        label_axis(ax.yaxis, unit_of(metric), METRIC_LABELS.get(metric, metric))
        if categories:
            ax.set_xticks(xs, [str(v) for v in categories])
            ax.set_xlim(-0.5, len(xs) - 0.5)
        elif len(xs) <= 12:
            ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(title="driver" + (" (band: min-max of replicates)" if replicated else ""), fontsize=8,
                   title_fontsize=8)
    return figure


def plot_bars(frame: pd.DataFrame, metrics: list[str], *, title: str) -> Figure:
    """One panel per metric, one bar per driver (mean of replicates, whisker from min to max)."""
    figure, axes = new_figure(len(metrics), title)
    for ax, metric in zip(axes, metrics):
        stats = frame.dropna(subset=[metric]).groupby("driver")[metric].agg(["mean", "min", "max"])
        drivers = driver_order(stats.index)
        stats = stats.loc[drivers]
        positions = np.arange(len(drivers))
        ax.bar(positions, stats["mean"], color=[driver_style(d)["color"] for d in drivers],
               yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]], capsize=3,
               label=drivers if ax is axes[0] else None, tick_label=drivers)
        ax.tick_params(axis="x", rotation=30)
        ax.set_yscale("log" if _wants_log(stats["mean"]) else "linear")
        label_axis(ax.yaxis, unit_of(metric), METRIC_LABELS.get(metric, metric))
        ax.grid(True, axis="y", alpha=0.3)
    return figure


CDF_POINTS = 2000  # more than a figure's width in pixels can show


def plot_latency_cdf(ops: pd.DataFrame, *, title: str, max_panels: int = 6) -> Figure:
    """Empirical CDF of operation latency, one panel per operation, one line per driver.
    Replicates are pooled; failed operations (ENOENT and the like) are left out."""
    done = ops[ops["error"] == ""]
    kinds = done["op"].value_counts().index[:max_panels].tolist()
    figure, axes = new_figure(len(kinds), title, width=5.2, height=4.0)
    for ax, kind in zip(axes, kinds):
        rows = done[done["op"] == kind]
        for driver in driver_order(rows["driver"]):
            latency = np.sort(rows.loc[rows["driver"] == driver, "latency_s"].to_numpy())
            latency = np.maximum(latency, 1e-9)  # a log axis cannot show an exactly free operation
            fraction = np.arange(1, len(latency) + 1) / len(latency)
            if len(latency) > CDF_POINTS:  # the same curve from evenly spaced order statistics
                keep = np.linspace(0, len(latency) - 1, CDF_POINTS).astype(int)
                latency, fraction = latency[keep], fraction[keep]
            style = driver_style(driver)
            ax.step(latency, fraction, where="post", label=driver, color=style["color"],
                    linestyle=style["linestyle"])
        # Log scale where latencies span a decade or more; a narrow spread reads better linear.
        low, high = max(rows["latency_s"].min(), 1e-9), max(rows["latency_s"].max(), 1e-9)
        if high >= 10 * low:
            ax.set_xscale("log")
        else:
            ax.set_xlim(low * 0.95, high * 1.05)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_ylim(0, 1.01)
        ax.set_title(f"{kind} ({len(rows):,} ops)", fontsize=10)
        label_axis(ax.xaxis, "s", "latency")
        label_axis(ax.yaxis, "fraction", "operations at or below")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(title="driver", fontsize=8, title_fontsize=8)
    return figure
