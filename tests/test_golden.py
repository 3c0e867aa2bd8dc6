"""Each driver's figures on fixed inputs must not move unless the model is meant to change."""
import pandas as pd
import pytest

from sim.drivers import REGISTRY

from .golden_tables import HERE, mix_table, probe_table

REGENERATE = "numbers moved: if intended, run `python -m tests.golden_tables` and say why in the commit"


@pytest.mark.parametrize("driver", list(REGISTRY))
def test_probe_golden_table(driver):
    expected = pd.read_csv(HERE / f"probe_{driver}.csv")
    pd.testing.assert_frame_equal(probe_table(driver), expected, check_dtype=False, rtol=1e-7, obj=REGENERATE)


def test_mix_golden_table():
    expected = pd.read_csv(HERE / "mix.csv")
    pd.testing.assert_frame_equal(mix_table(), expected, check_dtype=False, rtol=1e-7, obj=REGENERATE)
