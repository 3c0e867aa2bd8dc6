"""CI's regression gate: every standard scenario in benchmarks/scenarios/ must still give the
numbers of its committed baseline in benchmarks/baselines/.

When a change of the simulator moves numbers on purpose, refresh the baselines in the same
commit (`cowsim baseline refresh`) and say why in the commit message.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim import baseline as baselines
from sim.cli import main

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "benchmarks" / "scenarios"
BASELINES = REPO / "benchmarks" / "baselines"
REFRESH = "numbers moved from the committed baseline; if intended, run `cowsim baseline refresh` and commit " \
          "the baselines with the reason in the message"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS.glob("*.yaml")), ids=lambda path: path.stem)
def test_committed_baseline_still_matches(scenario):
    comparison = baselines.check_scenario(scenario, BASELINES)
    if comparison.differences:
        pytest.fail(f"{REFRESH}\n\n{comparison.markdown(unchanged=False)}", pytrace=False)


def test_every_standard_scenario_has_a_baseline_and_no_baseline_is_orphaned():
    scenarios = {path.stem for path in SCENARIOS.glob("*.yaml")}
    assert len(scenarios) >= 5
    assert scenarios == {path.name for path in BASELINES.iterdir() if path.is_dir()}


def test_a_tampered_baseline_fails_the_check(tmp_path):
    """The gate can fail: nudge one committed number by 1% and the check exits 1 naming it."""
    name = "regression_copyup_layers"
    (tmp_path / "scenarios").mkdir()
    shutil.copy(SCENARIOS / f"{name}.yaml", tmp_path / "scenarios")
    shutil.copytree(BASELINES / name, tmp_path / "baselines" / name)
    summary_path = tmp_path / "baselines" / name / "summary.json"
    rows = json.loads(summary_path.read_text())
    rows[3]["first_write_s"] *= 0.99  # the committed number was 1% faster: the simulator looks slower
    summary_path.write_text(json.dumps(rows))
    runner = CliRunner()
    result = runner.invoke(main, ["baseline", "check", "--scenarios", tmp_path / "scenarios",
                                  "--root", tmp_path / "baselines"])
    assert result.exit_code == 1, result.output
    point = f"driver.name={rows[3]['driver.name']} image.layers={rows[3]['image.layers']} replicate=0"
    assert f"| {point} | first_write_s " in result.output
    assert "1 regression, 0 improvement, 0 changed" in result.output

    # refresh restores the simulator's numbers, and then the check passes again
    refreshed = runner.invoke(main, ["baseline", "refresh", "--scenarios", tmp_path / "scenarios",
                                     "--root", tmp_path / "baselines"])
    assert refreshed.exit_code == 0 and refreshed.output.split() == ["updated", str(tmp_path / "baselines" / name)]
    refreshed_summary = (tmp_path / "baselines" / name / "summary.json").read_text()
    assert refreshed_summary == (BASELINES / name / "summary.json").read_text()
    again = runner.invoke(main, ["baseline", "check", "--scenarios", tmp_path / "scenarios",
                                 "--root", tmp_path / "baselines"])
    assert again.exit_code == 0, again.output
