"""Fitting a profile to measurements by least squares.

For one sequential operation the engine's time is linear in every latency and cost of the
profile and in every inverse bandwidth (no queueing: one request at a time). So each parameter's
column of the design matrix is read off the simulator itself: predict every point with the
parameter at zero and at one unit; the difference is its coefficient. The fit is then a bounded
linear least squares on relative errors (``scipy.optimize.lsq_linear``, residuals weighted by
1/measured), in stages: the kernel overlay points fix the disk and the kernel's CPU costs; the
other drivers' points then fit only their own costs on top.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import lsq_linear

from ..profile import Profile, load_profile
from .validate import Predictor, families

# parameter -> the profile fields it sets (tied fields move together) and whether it is a rate
# (fitted as its inverse, seconds per byte).
PARAMETERS = {
    # A fsync's write request and its flush always come together in the engine: only their sum
    # is observable, so the per-request write latency is tied to the read latency.
    "request_latency": ((("disk", "read_latency"), ("disk", "write_latency")), False),
    "read_bandwidth": ((("disk", "read_bandwidth"),), True),
    "write_bandwidth": ((("disk", "write_bandwidth"),), True),
    "fsync_latency": ((("disk", "fsync_latency"),), False),
    "syscall": ((("costs", "syscall"),), False),
    "layer_probe": ((("costs", "layer_probe"),), False),
    "copy_up_setup": ((("costs", "copy_up_setup"),), False),
    "dir_copy_up": ((("costs", "dir_copy_up"),), False),
    "clone_base": ((("costs", "clone_base"),), False),
    "clone_per_gib": ((("costs", "clone_per_gib"),), False),
    "fuse_request": ((("costs", "fuse_request"),), False),
    "fuse_layer_probe": ((("costs", "fuse_layer_probe"),), False),
    "fuse_dir_entry": ((("costs", "fuse_dir_entry"),), False),
    "fuse_entry_layer_check": ((("costs", "fuse_entry_layer_check"),), False),
    "btree_lookup": ((("costs", "btree_lookup"),), False),
    "layer_create": ((("costs", "layer_create"),), False),
    "btrfs_snapshot": ((("costs", "btrfs_snapshot"),), False),
}
FASTEST = 1e-12  # s/byte: the lower bound of an inverse bandwidth (1 TB/s)
# Every cost adds to a point's time, so none can take more than the whole of a point it is part
# of: a parameter the points hardly move (one layer probe in a millisecond) is bounded by
# this many times the smallest measured time over its coefficient, instead of running away.
WHOLE_POINT = 2.0


@dataclass
class Stage:
    """Parameters fitted together, and the experiment families (``validate.FAMILIES``) that
    inform them: a family left out of the fit (held out) is simply not among the points."""

    name: str
    families: tuple[str, ...]
    parameters: tuple[str, ...]
    # integer cost fields the engine multiplies by fitted latencies (not linear): each candidate
    # is tried with a full linear fit, the best weighted residual wins (one field after another)
    scanned: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # the families the scan of those integers fits (all when empty): each candidate is a whole
    # linear fit, and a simulation of eight containers costs as much as dozens of probes
    scanned_on: tuple[str, ...] = ()

    def selects(self, table: pd.DataFrame, among: tuple[str, ...] = ()) -> pd.Series:
        return families(table).isin(among or self.families)


STAGES = [
    # Concurrent copy-ups and reads move the same disk, page cache and kernel costs as one at a
    # time; the engine shares the device among them (no parameter of their own). The cold
    # metadata reads are scanned on one operation at a time, then everything is fitted at once.
    Stage("kernel overlayfs on the host filesystem",
          ("overlay_file_size", "overlay_layers", "overlay_dir_depth", "overlay_dir_entries", "concurrent_copy_up",
           "concurrent_read"),
          ("request_latency", "read_bandwidth", "write_bandwidth", "fsync_latency", "syscall", "layer_probe",
           "copy_up_setup", "dir_copy_up"),
          scanned=(("lookup_cold_reads", (0, 1, 2, 4, 6, 8, 12, 16, 24, 32)),
                   ("copy_up_cold_reads", (0, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128))),
          scanned_on=("overlay_file_size", "overlay_layers", "overlay_dir_depth", "overlay_dir_entries")),
    Stage("overlayfs on xfs with reflink", ("reflink",), ("clone_base", "clone_per_gib")),
    # fuse_bandwidth is not fitted: the probes write 1 byte, so a data rate would only stand in
    # for the per-request cost (and copy-up data does not cross FUSE in the model)
    Stage("fuse-overlayfs", ("fuse_file_size", "fuse_layers", "fuse_dir_entries"),
          ("fuse_request", "fuse_layer_probe", "fuse_dir_entry", "fuse_entry_layer_check")),
    Stage("container creation", ("overlay_create", "btrfs_create"), ("layer_create", "btrfs_snapshot")),
    # btrfs on a loop device: the disk and kernel costs are the host's (fitted above); the walks
    # fit the CPU of a B-tree lookup only
    Stage("btrfs walks", ("btrfs_dir_depth",), ("btree_lookup",)),
]


def _with(data: dict, values: dict[str, float]) -> dict:
    """A copy of the profile mapping with parameters set (rates given as seconds per byte)."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for name, value in values.items():
        fields, rate = PARAMETERS[name]
        for section, field in fields:
            data[section][field] = 1.0 / max(value, FASTEST) if rate else float(value)
    return data


def _current(data: dict, name: str) -> float:
    fields, rate = PARAMETERS[name]
    section, field = fields[0]
    value = float(data[section][field])
    return 1.0 / value if rate else value


class Fitter:
    def __init__(self, start: Profile, workdir: Path):
        self.data = start.model_dump(mode="json")
        self.workdir = workdir
        self.count = 0

    def _predict(self, table: pd.DataFrame, data: dict) -> np.ndarray:
        self.count += 1
        path = self.workdir / f"p{self.count}.yaml"
        path.write_text(yaml.safe_dump(data))
        return Predictor(path).frame(table)

    def stage(self, stage: Stage, table: pd.DataFrame) -> dict:
        """Fit one stage's parameters on its points; returns what it found (and the residuals)."""
        chosen = table[stage.selects(table)]
        if chosen.empty:
            return {"stage": stage.name, "points": 0, "parameters": {}, "unused": list(stage.parameters)}
        scanned_on = table[stage.selects(table, stage.scanned_on)]
        if not stage.scanned or scanned_on.empty:
            return self._linear(stage, chosen)
        for field, candidates in stage.scanned:  # one field at a time, the others at their best
            start, tried = self.data, []
            for count in sorted(candidates):
                self.data = {**start, "costs": {**start["costs"], field: count}}
                tried.append((self._linear(stage, scanned_on), self.data))
                # past the valley: two candidates in a row half as good again as the best
                best = min(outcome["weighted_sse"] for outcome, _ in tried)
                if len(tried) > 2 and all(o["weighted_sse"] > 1.5 * best for o, _ in tried[-2:]):
                    break
            # More reads at a lower latency fit nearly as well (a valley, not a point): take the
            # fewest reads whose residual is within 2% of the best one.
            least = min(outcome["weighted_sse"] for outcome, _ in tried)
            outcome, self.data = next(pair for pair in tried if pair[0]["weighted_sse"] <= 1.02 * least)
        if len(scanned_on) < len(chosen):
            outcome = self._linear(stage, chosen)
        outcome["scanned"] = {field: self.data["costs"][field] for field, _ in stage.scanned}
        return outcome

    def _linear(self, stage: Stage, chosen: pd.DataFrame) -> dict:
        names = stage.parameters
        zero = _with(self.data, {name: 0.0 for name in names})
        base = self._predict(chosen, zero)
        unit = {name: (1e-9 if PARAMETERS[name][1] else 1e-3) for name in names}
        columns = [(self._predict(chosen, _with(zero, {name: unit[name]})) - base) / unit[name] for name in names]
        design = np.column_stack(columns)
        measured = chosen["measured_s"].to_numpy()
        weight = 1.0 / measured
        lower = [FASTEST if PARAMETERS[n][1] else 0.0 for n in names]
        values = {name: _current(self.data, name) for name in names}
        used = np.abs(design).sum(axis=0) > 0
        if used.any():
            upper = np.array([_largest(design[:, index], measured, lower[index]) for index in np.flatnonzero(used)])
            solution = lsq_linear(design[:, used] * weight[:, None], (measured - base) * weight,
                                  bounds=(np.array(lower)[used], upper))
            for name, value in zip(np.array(names)[used], solution.x):
                values[name] = float(value)
        self.data = _with(self.data, values)
        fitted = base + design @ np.array([values[n] for n in names])
        relative = fitted / measured - 1
        return {"stage": stage.name, "points": len(chosen), "parameters": values,
                "unused": [n for n, u in zip(names, used) if not u],
                "median_abs_error": float(np.median(np.abs(relative))), "weighted_sse": float(relative @ relative)}


def _largest(column: np.ndarray, measured: np.ndarray, lower: float) -> float:
    """The largest value a parameter may take: WHOLE_POINT times the measured time of the point
    it would fill first."""
    touched = (column > 0) & (measured > 0)
    if not touched.any():
        return np.inf
    return max(float(np.min(WHOLE_POINT * measured[touched] / column[touched])), 2 * lower)


def fit_profile(table: pd.DataFrame, name: str, description: str, source: str,
                start: str | Path = "ssd") -> tuple[Profile, list[dict]]:
    """A profile fitted to the measured points (``validate.points``) and each stage's outcome."""
    with tempfile.TemporaryDirectory(prefix="cowsim-fit-") as workdir:
        fitter = Fitter(load_profile(start), Path(workdir))
        outcomes = [fitter.stage(stage, table) for stage in STAGES]
        data = fitter.data
    data.update(name=name, description=description, source=source)
    return Profile.model_validate(data), outcomes


def profile_yaml(profile: Profile, outcomes: list[dict]) -> str:
    """The profile in human units, with what each stage fitted as comments."""
    from ..units import format_duration

    data = profile.model_dump(mode="json")
    for section, model in (("disk", profile.disk), ("costs", profile.costs)):
        for field, value in data[section].items():
            unit = (type(model).model_fields[field].description or "").rpartition("[")[2]
            if unit == "bytes/s]":
                data[section][field] = f"{value / 1e6:.4g}MB/s"
            elif unit == "s]":
                data[section][field] = f"{value * 1e6:.6g}us"
    lines = ["# Fitted by `cowsim calibrate`: bounded least squares on relative error, stage by stage."]
    for outcome in outcomes:
        fitted = ", ".join(f"{k}={format_duration(v) if not PARAMETERS[k][1] else f'{1 / v / 1e6:.4g}MB/s'}"
                           for k, v in outcome["parameters"].items() if k not in outcome.get("unused", []))
        fitted += "".join(f", {k}={v}" for k, v in outcome.get("scanned", {}).items())
        lines.append(f"# {outcome['stage']}: {outcome['points']} points"
                     + (f", median |error| {outcome['median_abs_error']:.0%}; {fitted}" if outcome["points"] else
                        " (not measured: parameters keep their defaults)"))
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False, width=120)
