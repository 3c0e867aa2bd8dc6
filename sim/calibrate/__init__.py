"""Calibration against the real kernel: measure (``measure``), fit (``fit``), validate (``validate``).

``calibrate`` measures on this host (root only), saves the raw measurements as CSV next to the
profile, fits the profile and writes it; ``validate_profile`` holds any profile against any
measurements CSV.
"""
from __future__ import annotations

import datetime as dt
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CowsimError
from .measure import host_description, measure
from .realfs import Skip
from .validate import DEFAULT_STATISTIC, DEFAULT_THRESHOLD, STATISTICS, Validation, format_report, plot, points, read_measurements, validate_profile


@dataclass
class Calibrated:
    profile_path: Path
    measurements_path: Path
    skipped: list[str] = field(default_factory=list)
    outcomes: list[dict] = field(default_factory=list)


def calibrate(out: str | Path, *, quick: bool = False, measurements: str | Path | None = None,
              workdir: str | Path | None = None, statistic: str = DEFAULT_STATISTIC, progress=print) -> Calibrated:
    """Measure (or read ``measurements``), fit and write the profile ``out`` and its CSV.

    Neither file may exist already: finished results are never overwritten."""
    from .fit import fit_profile, profile_yaml

    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise CowsimError(f"{out}: the profile must be a .yaml file")
    csv_path = out.with_suffix(".csv")
    for path in (out, csv_path) if measurements is None else (out,):
        if path.exists():
            raise CowsimError(f"{path}: exists already; choose another name (results are never overwritten)")
    host = host_description()
    skipped: list[str] = []
    if measurements is None:
        try:
            recorder = measure(quick=quick, workdir=workdir, progress=progress)
        except Skip as reason:
            raise CowsimError(f"cannot calibrate here: {reason}") from None
        frame, skipped = recorder.frame(), recorder.skipped
        if frame.empty:
            raise CowsimError("nothing could be measured: " + "; ".join(skipped))
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv_path, index=False)
        command = "cowsim calibrate " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["calibrate"] else "sim.calibrate.calibrate()"
        source = (f"measured by `{command}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; kernel "
                  f"{host['kernel']} ({host['machine']}, {host['cpus']} CPUs); host filesystem {host['host_fs']}; "
                  f"raw measurements {csv_path.name}" + (" (--quick)" if quick else ""))
    else:
        csv_path = Path(measurements)
        frame = read_measurements(csv_path)
        source = (f"fitted by `cowsim calibrate --from-csv {csv_path.name}` on "
                  f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (kernel {host['kernel']}, host filesystem "
                  f"{host['host_fs']}) to measurements taken earlier by `cowsim calibrate`")
    table = points(frame, statistic)
    source += f"; each point is the {statistic} of its repeats"
    profile, outcomes = fit_profile(table, out.stem, f"Calibrated on a real kernel ({host['kernel']}).", source)
    # The CPUs are a fact of the host, not a fit (its FUSE daemons and kernel work share them).
    profile = profile.model_copy(update={"cores": host["cpus"] or profile.cores})
    text = profile_yaml(profile, outcomes)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "x") as handle:  # never overwrite
        handle.write(text)
    return Calibrated(out, csv_path, skipped, outcomes)


__all__ = ["calibrate", "validate_profile", "Validation", "format_report", "plot", "DEFAULT_THRESHOLD",
           "DEFAULT_STATISTIC", "STATISTICS", "Calibrated"]
