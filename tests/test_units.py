import math

import pytest

from sim.units import UnitError, format_duration, format_size, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), (4096, 4096), ("64MiB", 64 * 2**20), ("1.5GB", 1_500_000_000), ("4k", 4096),
    ("1 KiB", 1024), ("2TiB", 2 * 2**40), ("0", 0), ("10B", 10),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, expected",
                         [("2ms", 2e-3), ("150us", 150e-6), ("1.5s", 1.5), (0.25, 0.25), ("3min", 180)])
def test_durations(text, expected):
    assert math.isclose(parse_duration(text), expected)


@pytest.mark.parametrize("text, expected", [("500MB/s", 5e8), ("2GiB/s", 2 * 2**30), ("1000", 1000.0)])
def test_rates(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("parser, text", [(parse_size, "5XB"), (parse_size, "MiB"), (parse_size, True),
                                          (parse_duration, "2 parsecs"), (parse_rate, "5MB"), (parse_size, "nan")])
def test_bad_units(parser, text):
    with pytest.raises(UnitError):
        parser(text)


def test_formatting():
    assert format_size(1536) == "1.5 KiB"
    assert format_duration(0.0021) == "2.1 ms"
