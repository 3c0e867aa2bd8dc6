"""Judged on what it did not see: for each experiment family in turn, fit the profile with that
family left out, then predict the family (``cowsim validate-profile --held-out``).

A family's points are then predicted from parameters fitted on the other families only; a
parameter that no other family informs keeps the starting profile's value (the fit's stages say
which families inform which parameters; within a stage, a parameter that moves no remaining
point by 1% is not fitted), and the report names it. Beside each family, the share within 1.5x
of the fit on every family, for comparison.
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import CowsimError
from .fit import fit_profile
from .validate import DEFAULT_STATISTIC, FAMILIES, Predictor, families

WITHIN = 1.5   # a held-out point is good within this factor either way
GOAL_SHARE = 0.9  # the goal: this share of all held-out points within WITHIN ...
LIMIT = 2.0    # ... and none beyond this factor


@dataclass
class HeldOut:
    points: pd.DataFrame    # per point: its family, measured, predicted by the fit without it, ratio
    families: pd.DataFrame  # per family: points, share within WITHIN, worst and median ratio, unfitted
    start: str
    statistic: str

    @property
    def share_within(self) -> float:
        return float(_within(self.points["ratio"]).mean())

    @property
    def beyond_limit(self) -> int:
        return int((_factor(self.points["ratio"]) > LIMIT).sum())

    @property
    def ok(self) -> bool:
        return self.share_within >= GOAL_SHARE and self.beyond_limit == 0


def _factor(ratio: pd.Series | np.ndarray) -> np.ndarray:
    """How far off, as a factor >= 1 either way (2 for half and for double)."""
    ratio = np.asarray(ratio, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ratio > 0, np.maximum(ratio, 1 / ratio), np.inf)


def _within(ratio) -> np.ndarray:
    return _factor(ratio) <= WITHIN


def held_out(table: pd.DataFrame, start: str = "ssd", statistic: str = DEFAULT_STATISTIC, progress=None,
             jobs: int = 1) -> HeldOut:
    """``table``: measured points (``validate.points``, with ``statistic``). One fit per family
    present and one on them all (to tell what only the held-out family informs), ``jobs`` at a
    time (in processes)."""
    table = table.assign(family=families(table))
    unknown = sorted(set(table["family"]) - set(FAMILIES))
    if unknown:
        raise CowsimError(f"measurements: experiments of no known family: {', '.join(unknown)}")
    present = [name for name in FAMILIES if name in set(table["family"])]
    if len(present) < 2:
        raise CowsimError(f"measurements: a held-out check needs at least two experiment families, got {len(present)}")
    fits = [None, *present]  # None: every family
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(_fit_without, table, name, str(start)) for name in fits]
            outcomes = []
            for name, future in zip(fits, futures):
                outcomes.append(future.result())
                if progress and name:
                    progress(f"held out: {name}")
    else:
        outcomes = []
        for name in fits:
            outcomes.append(_fit_without(table, name, str(start)))
            if progress and name:
                progress(f"held out: {name}")
    (in_sample, unfitted_by_all), outcomes = outcomes[0], outcomes[1:]
    rows = []
    for name, (left, unfitted) in zip(present, outcomes):
        ratio = left["ratio"].to_numpy()
        factor = _factor(ratio)
        own = in_sample[in_sample["family"] == name]["ratio"].to_numpy()
        rows.append({"family": name, "points": len(left), "within": float(_within(ratio).mean()),
                     "worst_ratio": float(ratio[np.argmax(factor)]), "median_ratio": float(np.median(ratio)),
                     "beyond_limit": int((factor > LIMIT).sum()), "in_sample_within": float(_within(own).mean()),
                     "unfitted": ", ".join(p for p in unfitted if p not in unfitted_by_all)})
    return HeldOut(pd.concat([left for left, _ in outcomes], ignore_index=True), pd.DataFrame(rows), str(start),
                   statistic)


def _fit_without(table: pd.DataFrame, name: str | None, start: str) -> tuple[pd.DataFrame, list[str]]:
    """The family's points (every point for None) predicted by a profile fitted on every other
    family, and the parameters that fit left at their starting values (nothing informed them)."""
    kept, left = (table, table) if name is None else (table[table["family"] != name], table[table["family"] == name])
    profile, outcomes = fit_profile(kept, f"without-{name}", "fitted without one family", "held-out check", start)
    with tempfile.TemporaryDirectory(prefix="cowsim-heldout-") as workdir:
        path = Path(workdir, "profile.yaml")
        path.write_text(yaml.safe_dump(profile.model_dump(mode="json")))
        predicted = Predictor(path).frame(left)
    unfitted = [parameter for outcome in outcomes for parameter in outcome.get("unused", [])]
    return left.assign(predicted_s=predicted, ratio=predicted / left["measured_s"].to_numpy()), unfitted


def format_held_out(result: HeldOut) -> str:
    lines = [f"each family predicted by a profile fitted without it (starting from {result.start}; "
             f"measured = the {result.statistic} of each point's repeats)", "",
             f"{'family':<21}{'points':>7}{'within ' + format(WITHIN, 'g') + 'x':>12}{'worst':>9}{'median':>9}"
             f"{'fitted with it':>16}  parameters only this family informs (kept from the start)"]
    for row in result.families.itertuples(index=False):
        lines.append(f"{row.family:<21}{row.points:>7}{row.within:>12.0%}{row.worst_ratio:>9.3g}"
                     f"{row.median_ratio:>9.3g}{row.in_sample_within:>16.0%}  {row.unfitted or '-'}")
    total = len(result.points)
    lines += ["", f"all: {total} held-out points, {result.share_within:.0%} within {WITHIN:g}x (goal "
                  f">= {GOAL_SHARE:.0%}), {result.beyond_limit} beyond {LIMIT:g}x (goal: none); ratio = "
                  "predicted / measured"]
    return "\n".join(lines)
