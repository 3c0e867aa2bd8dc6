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

from .drivers import REGISTRY
from .units import format_duration, format_size

# The look of the shipped drivers (which drivers exist, and their order, is the registry's): union
# drivers in blues/purples, snapshot drivers in greens/reds, vfs grey. Markers and dashes differ
# too, so drivers whose numbers coincide (overlay2, overlay and aufs often do) stay visible.
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
_SPARE_MARKERS = ["h", "p", "d", "<", ">", "8"]

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
    "all_running_s": "time until every container runs",
    "pull_mean_s": "time of a pull, mean",
    "pull_fetched_bytes": "bytes fetched from the registry",
    "images_real_bytes": "bytes the images occupy on the node",
}


def driver_style(driver: str) -> dict:
    """Colour, marker and dash of a driver. A driver registered beyond the shipped ones gets a
    spare style of its own (by its place in the registry), the same in every figure."""
    if driver in DRIVER_STYLE:
        return DRIVER_STYLE[driver]
    others = [name for name in REGISTRY if name not in DRIVER_STYLE]
    index = others.index(driver) if driver in others else sum(driver.encode())
    return {"color": _SPARE[index % len(_SPARE)], "marker": _SPARE_MARKERS[index % len(_SPARE_MARKERS)],
            "linestyle": "-"}


def driver_order(drivers) -> list[str]:
    """Drivers in the registry's order (:mod:`sim.drivers`), names it lacks after, so legends match."""
    known = list(REGISTRY)
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
    """Linear byte ticks a power of two apart (256 KiB, 512 KiB, 768 KiB, 1 MiB), so that each
    reads as a round size, never 410 KiB or 819 KiB."""

    def tick_values(self, vmin, vmax):
        nbins = self._nbins if isinstance(self._nbins, int) else 6
        span = vmax - vmin
        if not span > 0:
            return super().tick_values(vmin, vmax)
        step = 2.0 ** math.ceil(math.log2(span / nbins))
        return np.arange(math.floor(vmin / step), math.ceil(vmax / step) + 1) * step


def label_axis(axis, unit: str, label: str) -> None:
    """Label an axis and write its ticks in human units (``10 ms``, ``64 MiB``, ``50%``).
    Call it after choosing the axis scale."""
    if unit == "fraction":  # the ticks say "50%"
        axis.set_label_text(label)
        axis.set_major_formatter(PercentFormatter(1.0))
    else:
        # Seconds, bytes and rates carry their unit on every tick ("10 ms", "64 MiB"); a bare
        # count says so in the label; names (programs, cache modes) have none.
        axis.set_label_text(label if unit in ("s", "bytes", "ops/s", "name", "") else f"{label} [{unit}]")
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


def _renderer(figure: Figure):
    """A renderer that measures text as the saved PNG draws it (Agg, at the figure's dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    return canvas.get_renderer()


def _clashes(figure: Figure, pad: float) -> list[tuple]:
    """(axis, first label, second label) for each pair of tick labels that touch once laid out."""
    figure.draw_without_rendering()
    renderer = _renderer(figure)
    found = []
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [label for label in axis.get_majorticklabels()
                      if label.get_visible() and label.get_text().strip()]
            boxes = [label.get_window_extent(renderer).padded(pad / 2) for label in labels]
            found += [(axis, labels[i], labels[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                      if boxes[i].overlaps(boxes[j])]
    return found


def overlapping_tick_labels(figure: Figure, pad: float = 2.0) -> list[tuple[str, str, str]]:
    """Pairs of tick labels that touch or overlap once the figure is laid out, as (axis label,
    first text, second text); empty when every label reads on its own."""
    return [(axis.get_label_text(), first.get_text(), second.get_text())
            for axis, first, second in _clashes(figure, pad)]


def fit_tick_labels(figure: Figure, pad: float = 2.0) -> None:
    """Make every tick label readable: x labels that run into each other are turned first; then
    (and for y labels at once) a label that touches the last one kept is left out, its tick kept."""
    for _ in range(4):
        crowded = list(dict.fromkeys(axis for axis, _, _ in _clashes(figure, pad)))
        if not crowded:
            return
        renderer = _renderer(figure)
        for axis in crowded:
            labels = axis.get_majorticklabels()
            if axis.axis_name == "x" and not labels[0].get_rotation():
                axis.axes.tick_params(axis="x", labelrotation=30)
                for label in labels:
                    label.set_horizontalalignment("right")
                    label.set_rotation_mode("anchor")
                continue
            texts, kept = [], None
            for label in labels:
                box = label.get_window_extent(renderer).padded(pad / 2)
                readable = label.get_text().strip() and (kept is None or not box.overlaps(kept))
                texts.append(label.get_text() if readable else "")
                kept = box if readable else kept
            axis.set_ticks(axis.get_majorticklocs(), texts)
            for label in axis.get_majorticklabels():  # set_ticks keeps the rotation, not the alignment
                label.set_horizontalalignment(labels[0].get_horizontalalignment())
                label.set_rotation_mode(labels[0].get_rotation_mode())


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


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def coinciding_drivers(stats: pd.DataFrame, x: str, rtol: float = 1e-3) -> list[list[str]]:
    """Groups of two or more drivers whose means agree at every ``x`` (within ``rtol``): drawn
    over one another they look like one line, so the caption says so."""
    series = {driver: rows.set_index(x)["mean"] for driver, rows in stats.groupby("driver")}
    groups: list[list[str]] = []
    for driver in driver_order(series):
        for group in groups:
            first = series[group[0]]
            if first.index.equals(series[driver].index) and np.allclose(first, series[driver], rtol=rtol, atol=0):
                group.append(driver)
                break
        else:
            groups.append([driver])
    return [group for group in groups if len(group) > 1]


def bunched_drivers(stats: pd.DataFrame, log: bool, share: float = 0.05) -> list[str]:
    """Three or more drivers whose lines, apart from each other, crowd into a sliver of the axis (under
    ``share`` of its span) while another driver stretches it: a second panel shows them apart."""
    means = stats.groupby("driver")["mean"].agg(lambda v: float(np.exp(np.log(v).mean())) if log else float(v.mean()))
    values = stats["mean"][stats["mean"] > 0] if log else stats["mean"]
    if len(means) < 4 or not len(values):
        return []
    scale = np.log10 if log else (lambda v: v)
    span = scale(values.max()) - scale(values.min())
    if not span > 0:
        return []
    ordered = means.sort_values()
    best: list[str] = []
    for start in range(len(ordered)):
        for end in range(len(ordered), start + 1, -1):
            names = list(ordered.index[start:end])
            rows = stats[stats["driver"].isin(names)]["mean"]
            rows = rows[rows > 0] if log else rows
            if len(rows) and scale(rows.max()) - scale(rows.min()) <= share * span and len(names) > len(best):
                best = names
    if len(best) < 3 or len(best) == len(means):
        return []
    # Only worth a panel when the crowded drivers really differ from one another.
    rows = stats[stats["driver"].isin(best)]["mean"]
    return best if rows.max() > rows.min() * 1.02 else []


def plot_vs(frame: pd.DataFrame, x: str, metrics: list[str], *, title: str, x_label: str, x_unit: str,
            logx: bool | None = None, logy: bool | None = None, text=str) -> Figure:
    """One panel per metric against the swept ``x``, one line per driver, replicates as a band.

    Names (programs, profiles, cache modes) are categories, not a scale: each driver is a point
    per category, side by side, with a whisker for the replicates, and ``text`` writes the tick
    labels (wrapped). Where some drivers' lines crowd into a sliver of a panel that others
    stretch, a second panel draws just them on their own linear scale."""
    xs = list(dict.fromkeys(frame[x].dropna()))
    categories = [] if all(_is_number(v) for v in xs) else xs
    if categories:
        frame = frame.assign(**{x: frame[x].map({v: i for i, v in enumerate(categories)})})
        xs, logx = list(range(len(categories))), False
    xs = sorted(xs)
    logx = _wants_log(xs) if logx is None else logx
    replicated = frame.groupby(["driver", x]).size().max() > 1
    panels: list[tuple[str, pd.DataFrame, bool, list[str] | None]] = []
    for metric in metrics:
        stats = replicate_stats(frame, x, metric)
        use_logy = _wants_log(stats["mean"]) if logy is None else logy
        panels.append((metric, stats, use_logy, None))
        bunched = [] if categories else bunched_drivers(stats, use_logy)
        if bunched:
            panels.append((metric, stats[stats["driver"].isin(bunched)], False, bunched))
    figure, axes = new_figure(len(panels), title)
    all_drivers = driver_order(frame["driver"])
    for ax, (metric, stats, use_logy, zoom) in zip(axes, panels):
        for driver in driver_order(stats["driver"]):
            rows = stats[stats["driver"] == driver].sort_values(x)
            style = driver_style(driver)
            if categories:  # points side by side within each category, never joined across them
                offset = (all_drivers.index(driver) - (len(all_drivers) - 1) / 2) * 0.6 / max(len(all_drivers), 1)
                whisker = [rows["mean"] - rows["min"], rows["max"] - rows["mean"]]
                ax.errorbar(rows[x] + offset, rows["mean"], yerr=whisker, label=driver, color=style["color"],
                            marker=style["marker"], linestyle="none", markersize=7, markerfacecolor="none", capsize=2)
                continue
            ax.plot(rows[x], rows["mean"], label=driver, markersize=6, markerfacecolor="none", **style)
            if replicated:
                ax.fill_between(rows[x], rows["min"], rows["max"], color=style["color"], alpha=0.15, linewidth=0)
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale("log" if use_logy else "linear")
        if zoom:
            low, high = stats["min"].min(), stats["max"].max()
            ax.set_ylim(low - (high - low) * 0.15, high + (high - low) * 0.15)
            ax.set_title("close-up: " + ", ".join(zoom), fontsize=9)
        elif not use_logy and unit_of(metric) != "fraction":
            ax.set_ylim(bottom=0)
        label_axis(ax.xaxis, x_unit, x_label)
        label_axis(ax.yaxis, unit_of(metric), METRIC_LABELS.get(metric, metric))
        if categories:
            ax.set_xticks(xs, [textwrap.fill(text(v), 18) for v in categories])
            ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.grid(True, axis="y", which="major", alpha=0.3)
            continue
        if len(xs) <= 12:
            ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.grid(True, which="major", alpha=0.3)
    legend_title = "driver" + (" (band: min-max of replicates)" if replicated and not categories else "")
    axes[0].legend(title=legend_title, fontsize=8, title_fontsize=8)
    fit_tick_labels(figure)
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
    fit_tick_labels(figure)
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
    fit_tick_labels(figure)
    return figure


def plot_startup_timeline(startups: pd.DataFrame, *, title: str) -> Figure:
    """Containers running against time since the first arrived, one step line per driver
    (``startups``: the ``startup`` setup rows of one replicate, with ``driver``)."""
    figure, (ax,) = new_figure(1, title, width=7.0)
    first = startups["start_s"].min()
    for driver in driver_order(startups["driver"]):
        rows = startups[startups["driver"] == driver]
        running = np.sort((rows["start_s"] + rows["latency_s"]).to_numpy() - first)
        style = driver_style(driver)
        ax.step(np.concatenate(([0.0], running)), np.arange(len(running) + 1), where="post", label=driver,
                color=style["color"], linestyle=style["linestyle"])
        ax.plot(running[-1:], [len(running)], marker=style["marker"], color=style["color"])
    arrived = np.sort(startups.drop_duplicates("container")["start_s"].to_numpy() - first)
    ax.step(np.concatenate((arrived, [ax.get_xlim()[1]])), np.arange(1, len(arrived) + 2).clip(max=len(arrived)),
            where="post", color="black", linewidth=0.8, linestyle=":", label="arrived")
    label_axis(ax.xaxis, "s", "time since the first container arrived")
    label_axis(ax.yaxis, "count", "containers running")
    ax.grid(True, alpha=0.3)
    ax.legend(title="driver", fontsize=8, title_fontsize=8)
    fit_tick_labels(figure)
    return figure
