"""The engine's shortcuts change how fast a run goes, never what it measures."""
import gc

import pandas as pd
import pytest

from sim import engine
from sim.runner import simulate
from sim.scenario import Scenario

MIX = {"name": "shortcuts", "seed": 9, "containers": {"count": 4},
       "image": {"layers": 3, "files_per_layer": 80, "dir_depth": 2},
       "workload": {"ops": {"read": .5, "write": .2, "append": .1, "create": .1, "delete": .05, "stat": .05},
                    "workers": 2, "operations": 600}}
OPEN = {**MIX, "workload": {**MIX["workload"], "mode": "open", "arrival_rate": 2000, "operations": None,
                            "duration": 0.2}}


@pytest.mark.parametrize("spec", [MIX, OPEN], ids=["closed", "open"])
def test_skipping_events_changes_no_record(spec, monkeypatch):
    scenario = Scenario.model_validate(spec)
    skipped = []
    original = engine.Environment.skip_ahead

    def counting(self, delay):
        done = original(self, delay)
        skipped.append(done)
        return done

    monkeypatch.setattr(engine.Environment, "skip_ahead", counting)
    fast = simulate(scenario)
    assert any(skipped) and not all(skipped)  # the shortcut was taken, and not always
    monkeypatch.setattr(engine.Environment, "skip_ahead", lambda self, delay: False)
    slow = simulate(scenario)
    pd.testing.assert_frame_equal(fast.ops, slow.ops, check_exact=True)
    assert fast.summary == slow.summary


def test_collector_thresholds_restored_after_a_run():
    before = gc.get_threshold()
    simulate(Scenario.model_validate(MIX))
    assert gc.get_threshold() == before
