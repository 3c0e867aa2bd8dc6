"""Comparing a run with a baseline: which metrics got worse, better, or stayed put, per point.

Rows are matched by the parameter columns of the summary (the swept fields and the driver: every
column that is neither a metric of :data:`sim.metrics.METRICS` nor a row id), never by point
index, so a baseline stays valid when a sweep is reordered. For each point and metric:

- one sample on either side (a deterministic run): the change counts when the relative change
  of the values exceeds ``rtol``;
- replicates on both sides: the change counts only when the relative change of the means
  exceeds ``rtol`` AND the samples differ significantly. Significance follows asv
  (``asv.statistics.is_different``): a two-sided Mann-Whitney U test at ``alpha`` = 0.002 when
  there are enough replicates for the test to reach that level, otherwise the 99% confidence
  intervals of the two means must not overlap. The reported interval is the 95% Welch interval
  of the difference of means, relative to the baseline mean.

Whether a counted change is a regression or an improvement comes from :data:`sim.metrics.METRICS`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .api import RunResult
from .errors import CowsimError
from .metrics import HIGHER_IS_WORSE, METRICS, NEITHER
from .stored import resolve

ALPHA = 0.002  # asv's threshold for Mann-Whitney U
STATUS_ORDER = ("regression", "improvement", "changed", "unchanged")
SECTION_TITLES = {"regression": "Regressions", "improvement": "Improvements",
                  "changed": "Changed (metrics with no better or worse direction)", "unchanged": "Unchanged"}


class CompareError(CowsimError):
    """The run and the baseline cannot be compared (exit code 2)."""


@dataclass
class Comparison:
    """Every (point, metric) of a run against a baseline, with a status each."""

    run: str
    baseline: str
    scenario: str
    rtol: float
    keys: list[str]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)

    def with_status(self, status: str) -> list[dict]:
        return [row for row in self.rows if row["status"] == status]

    @property
    def regressions(self) -> list[dict]:
        return self.with_status("regression")

    @property
    def differences(self) -> list[dict]:
        """Every row that is not unchanged: what a committed baseline must not show."""
        return [row for row in self.rows if row["status"] != "unchanged"]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def counts(self) -> dict[str, int]:
        return {status: len(self.with_status(status)) for status in STATUS_ORDER}

    def tally(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in self.counts().items())

    def headline(self) -> str:
        return f"{self.scenario}: {self.run} against {self.baseline} (rtol {self.rtol:g}): {self.tally()}"

    def markdown(self, unchanged: bool = True) -> str:
        """The comparison as Markdown: flagged rows first; unchanged rows in full or as a count per point."""
        lines = [f"# Comparison of `{self.scenario}`", "", f"- run: `{self.run}`", f"- baseline: `{self.baseline}`",
                 f"- relative tolerance: {self.rtol:g}; significance (with replicates): Mann-Whitney U p < {ALPHA} "
                 "or non-overlapping 99% confidence intervals", f"- metrics per point: {self.tally()}"]
        lines += [f"- note: {note}" for note in self.notes]
        for status in STATUS_ORDER:
            rows = self.with_status(status)
            lines += ["", f"## {SECTION_TITLES[status]} ({len(rows)})", ""]
            if not rows:
                lines.append("none")
            elif status == "unchanged" and not unchanged:
                per_point: dict[str, int] = {}
                for row in rows:
                    per_point[row["point"]] = per_point.get(row["point"], 0) + 1
                lines.append(_markdown_table(["point", "metrics unchanged"],
                                             [[point, str(n)] for point, n in per_point.items()]))
            else:
                lines.append(_markdown_table(
                    ["point", "metric", "baseline", "run", "change", "95% CI", "p", "n"],
                    [[row["point"], row["metric"], _shown(row, "baseline"), _shown(row, "run"), row["change_text"],
                      _interval(row), "-" if row["p_value"] is None else f"{row['p_value']:.3g}",
                      f"{row['n_baseline']}/{row['n_run']}"] for row in rows]))
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "run": self.run, "baseline": self.baseline, "rtol": self.rtol,
                "alpha": ALPHA, "keys": self.keys, "counts": self.counts(), "exit_code": self.exit_code,
                "notes": self.notes, "rows": self.rows}

    def write(self, directory: str | Path, stem: str = "comparison") -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.json`` (each replaced whole, never half-written)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix, text in ((".md", self.markdown()), (".json", json.dumps(self.as_dict(), indent=1) + "\n")):
            path = directory / f"{stem}{suffix}"
            partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
            partial.write_text(text)
            partial.replace(path)
            written.append(path)
        return written[0], written[1]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, rows)])


def _shown(row: dict, side: str) -> str:
    value = row[side]
    return "-" if value is None else METRICS[row["metric"]].format(value)


def _percent(change: float) -> str:
    return f"{change:+.1%}" if math.isfinite(change) else ("+inf" if change > 0 else "-inf")


def _interval(row: dict) -> str:
    if row["ci_low"] is None:
        return "-"
    return f"[{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]"


def _key_text(value) -> str:
    """A swept value as text, the same whether it was read from a run folder or a baseline."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# where a row sits in its run and whether it ran, not what it measured
ROW_IDS = ("scenario", "point", "replicate", "seed", "status", "failure")


def parameters(summary: pd.DataFrame) -> list[str]:
    """The summary's parameter columns: the swept fields (zip groups included) and the driver."""
    columns = [c for c in summary.columns if c not in METRICS and c not in ROW_IDS]
    return [c for c in columns if not (c == "driver" and "driver.name" in columns)]


def match_keys(run: RunResult, baseline: RunResult, by_replicate: bool = False) -> list[str]:
    """The columns that identify a point: every parameter column, the same on both sides."""
    swept, base_swept = parameters(run.summary), parameters(baseline.summary)
    if sorted(swept) != sorted(base_swept):
        raise CompareError(f"the run varies {', '.join(swept)} but the baseline varies "
                           f"{', '.join(base_swept)}: save a new baseline for this sweep")
    return [*swept, *(["replicate"] if by_replicate else [])]


def _grouped(summary: pd.DataFrame, keys: list[str]) -> dict[str, pd.DataFrame]:
    labels = summary[keys].apply(lambda row: " ".join(f"{k}={_key_text(row[k])}" for k in keys), axis=1)
    return {label: frame for label, frame in summary.groupby(labels.to_numpy(), sort=False)}


def _metrics(run: RunResult, baseline: RunResult, wanted: list[str] | None, notes: list[str]) -> list[str]:
    unknown = [name for name in wanted or [] if name not in METRICS]
    if unknown:
        raise CompareError(f"unknown metric {unknown[0]!r}: use one of {', '.join(METRICS)}")
    names = wanted or list(METRICS)
    if not wanted:  # metrics of a feature neither side used (e.g. logs) are no news
        names = [name for name in names if name in run.summary.columns or name in baseline.summary.columns]
    for side, result in (("run", run), ("baseline", baseline)):
        absent = [name for name in names if name not in result.summary.columns]
        if absent and wanted:
            raise CompareError(f"the {side} has no metric {absent[0]!r}")
        if absent:
            notes.append(f"not in the {side}, so not compared: {', '.join(absent)}")
    names = [name for name in names if name in run.summary.columns and name in baseline.summary.columns]
    if not names:
        raise CompareError("the run and the baseline have no metric in common")
    return names


def _significant(base: np.ndarray, new: np.ndarray) -> tuple[bool, float | None, str]:
    """asv's rule: Mann-Whitney U when it can reach ALPHA with these sample sizes, else 99% CIs apart.

    Returns (significant, Mann-Whitney p-value, which test decided)."""
    p_value = None
    if np.ptp(np.concatenate([base, new])) > 0:
        p_value = float(stats.mannwhitneyu(base, new, alternative="two-sided").pvalue)
    if 2 / math.comb(len(base) + len(new), min(len(base), len(new))) < ALPHA:
        return p_value is not None and p_value < ALPHA, p_value, "mann-whitney"

    def interval(sample: np.ndarray) -> tuple[float, float]:
        half = stats.t.ppf(0.995, len(sample) - 1) * sample.std(ddof=1) / math.sqrt(len(sample))
        return sample.mean() - half, sample.mean() + half

    (low_a, high_a), (low_b, high_b) = interval(base), interval(new)
    return bool(high_a < low_b or high_b < low_a), p_value, "ci99-overlap"


def _welch_interval(base: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """95% interval of mean(new) - mean(base), Welch's t (unequal variances)."""
    difference = new.mean() - base.mean()
    var_a, var_b = base.var(ddof=1) / len(base), new.var(ddof=1) / len(new)
    error = math.sqrt(var_a + var_b)
    if error == 0:
        return difference, difference
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(base) - 1) + var_b**2 / (len(new) - 1))
    half = stats.t.ppf(0.975, dof) * error
    return difference - half, difference + half


def compare_metric(metric: str, base: np.ndarray, new: np.ndarray, rtol: float) -> dict:
    """The statistics and status of one metric at one point."""
    base, new = base[~np.isnan(base)], new[~np.isnan(new)]
    row = {"metric": metric, "unit": METRICS[metric].unit, "worse": METRICS[metric].worse,
           "baseline": _finite_or_none(base.mean()) if len(base) else None,
           "run": _finite_or_none(new.mean()) if len(new) else None, "n_baseline": len(base), "n_run": len(new),
           "change": None, "change_text": "-", "ci_low": None, "ci_high": None, "p_value": None, "test": "tolerance"}
    if not len(base) or not len(new):
        # Defined on one side only (e.g. copy-up latency when copy-ups appeared or vanished).
        row["status"] = "unchanged" if len(base) == len(new) else "changed"
        return row
    reference, difference = base.mean(), new.mean() - base.mean()
    scale = abs(reference)
    if difference == 0:
        change = 0.0
    else:
        change = difference / scale if scale else math.copysign(math.inf, difference)
    row["change"] = change if math.isfinite(change) else None  # JSON has no infinity: see change_text
    row["change_text"] = _percent(change)
    flagged = abs(change) > rtol
    if len(base) > 1 and len(new) > 1:
        significant, row["p_value"], row["test"] = _significant(base, new)
        if scale:
            low, high = _welch_interval(base, new)
            row["ci_low"], row["ci_high"] = low / scale, high / scale
        flagged = flagged and significant
    if not flagged:
        row["status"] = "unchanged"
    elif METRICS[metric].worse == NEITHER:
        row["status"] = "changed"
    else:
        worse = (difference > 0) == (METRICS[metric].worse == HIGHER_IS_WORSE)
        row["status"] = "regression" if worse else "improvement"
    return row


# Fields of the resolved scenario that do not make it another experiment.
NOT_THE_EXPERIMENT = ("name", "description", "sweep", "replicates", "keep_ops")


def _flatten(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def experiment_differences(run: dict | None, baseline: dict | None, swept: list[str]) -> list[str]:
    """What differs between two resolved scenarios besides their swept fields, as
    ``field: baseline -> run``. A field only one side has (a newer schema's) does not count."""
    flat_run, flat_base = _flatten(run or {}), _flatten(baseline or {})
    moved = [key.removesuffix(".name") if key == "driver.name" else key for key in swept]

    def counts(key: str) -> bool:
        if key.split(".")[0] in NOT_THE_EXPERIMENT:
            return False
        return not any(key == s or key.startswith(s + ".") or s.startswith(key + ".") for s in moved)
    return [f"{key}: {flat_base[key]!r} -> {flat_run[key]!r}" for key in flat_run
            if key in flat_base and counts(key) and flat_run[key] != flat_base[key]]


def compare(run: RunResult | str | Path, baseline: RunResult | str | Path, rtol: float = 0.05,
            metrics: list[str] | None = None, by_replicate: bool = False, anyway: bool = False) -> Comparison:
    """Compare ``run`` with ``baseline`` point by point. Raises CompareError when they cannot be compared.

    Either may be a RunResult, a run folder, a baseline folder or a saved baseline's name.

    ``by_replicate`` also matches replicates one to one (same seeds, deterministic numbers): each
    replicate is then compared on its own, with the tolerance only.

    Two runs whose scenarios differ besides the swept fields (another profile, seed, image...)
    are different experiments: refused, unless ``anyway``, which compares them with a note.
    """
    run = run if isinstance(run, RunResult) else resolve(run)
    baseline = baseline if isinstance(baseline, RunResult) else resolve(baseline)
    if not rtol >= 0:
        raise CompareError(f"rtol must be a non-negative number, got {rtol}")
    run_name, base_name = _label(run), _label(baseline)
    if run.summary.empty or baseline.summary.empty:
        raise CompareError(f"{run_name if run.summary.empty else base_name}: the summary is empty")
    scenario, base_scenario = run.summary["scenario"].iloc[0], baseline.summary["scenario"].iloc[0]
    if scenario != base_scenario:
        raise CompareError(f"different scenarios: the run is {scenario!r}, the baseline is {base_scenario!r}")
    notes: list[str] = []
    keys = match_keys(run, baseline, by_replicate)
    differences = experiment_differences(run.resolved, baseline.resolved, keys)
    if differences and not anyway:
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise CompareError(f"{run_name} and {base_name} are different experiments: besides the swept fields, "
                           f"{'; '.join(differences[:3])}{more} (compare them anyway with --anyway)")
    if differences:
        notes.append("different experiments, compared anyway: " + "; ".join(differences))
    names = _metrics(run, baseline, metrics, notes)
    run_points, base_points = _grouped(run.summary, keys), _grouped(baseline.summary, keys)
    for side, points, other in (("run", run_points, base_points), ("baseline", base_points, run_points)):
        extra = [label for label in points if label not in other]
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            lacking = "baseline" if side == "run" else "run"
            raise CompareError(f"the {side} has points the {lacking} lacks: {extra[0]}{more}")
    rows = []
    for label, base_frame in base_points.items():
        run_frame = run_points[label]
        for name in names:
            base = pd.to_numeric(base_frame[name], errors="coerce").to_numpy(dtype=float)
            new = pd.to_numeric(run_frame[name], errors="coerce").to_numpy(dtype=float)
            rows.append({"point": label, "params": {key: _key_text(base_frame[key].iloc[0]) for key in keys},
                         **compare_metric(name, base, new, rtol)})
    rows.sort(key=lambda row: STATUS_ORDER.index(row["status"]))
    return Comparison(run_name, base_name, str(scenario), rtol, keys, rows, notes)


def _label(result: RunResult) -> str:
    return str(result.path) if result.path is not None else result.name
