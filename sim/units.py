"""Human units parsed in one place: sizes, durations and rates.

Inside the simulator everything is seconds and bytes (rates in bytes per second).
Scenario files and the command line use human units: ``64MiB``, ``1.5GB``, ``2ms``, ``500MB/s``.
"""
from __future__ import annotations

import math
import re

SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
TIME_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0,
    "min": 60.0, "h": 3600.0,
}
# The largest file (or request) a scenario may name: the page cache is filled block by block, so a
# 1 TiB file already takes about 8 s to simulate, and time grows with the size.
MAX_FILE_SIZE = 2**40
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(r"^\s*" + _NUMBER + r"\s*([A-Za-zµ/]*)\s*$")


class UnitError(ValueError):
    """A value that cannot be read in the expected unit."""


def _split(text: str, kind: str) -> tuple[float, str]:
    match = _PATTERN.match(text)
    if not match:
        raise UnitError(f"cannot read {text!r} as a {kind}")
    return float(match.group(1)), match.group(2)


def _finite(value: float | int, text: object, kind: str) -> float:
    try:
        value = float(value)
    except OverflowError:  # an int beyond a float's range
        value = math.inf
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite {kind}")
    return value


def parse_size(value: object) -> int:
    """Bytes from ``4096``, ``64MiB``, ``1.5GB`` (decimal) or ``4k`` (binary)."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a size")
    if isinstance(value, int):
        return value  # exact: the schema's bounds say how large a size may be
    if isinstance(value, float):
        return int(_finite(value, value, "size"))
    number, unit = _split(str(value), "size (e.g. 4096, 64KiB, 1.5GB)")
    factor = SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise UnitError(f"unknown size unit {unit!r} in {value!r} (use B, KiB, MiB, GiB, KB, MB, GB)")
    return int(round(_finite(number * factor, value, "size")))


def parse_duration(value: object) -> float:
    """Seconds from ``0.002``, ``2ms``, ``150us`` or ``1.5s``."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return _finite(value, value, "duration")
    number, unit = _split(str(value), "duration (e.g. 2ms, 150us, 1.5s)")
    factor = TIME_UNITS.get(unit.lower() if unit != "µs" else unit)
    if factor is None:
        raise UnitError(f"unknown time unit {unit!r} in {value!r} (use ns, us, ms, s, min, h)")
    return _finite(number * factor, value, "duration")


def parse_rate(value: object) -> float:
    """Bytes per second from ``500MB/s``, ``2GiB/s`` or a plain number."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a rate")
    if isinstance(value, (int, float)):
        return _finite(value, value, "rate")
    text = str(value).strip()
    if not text.lower().endswith("/s"):
        if re.fullmatch(_NUMBER, text):
            return _finite(float(text), value, "rate")
        raise UnitError(f"cannot read {value!r} as a rate (e.g. 500MB/s, 2GiB/s)")
    return float(parse_size(text[:-2]))


def format_size(nbytes: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``0.0021`` -> ``2.1 ms``."""
    value = float(seconds)
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


# Annotated types for pydantic models: every field written in human units is parsed here.
from typing import Annotated  # noqa: E402

from pydantic import BeforeValidator  # noqa: E402


def _pydantic(parser):
    def convert(value):
        try:
            return parser(value)
        except UnitError as error:
            raise ValueError(str(error)) from None
    return BeforeValidator(convert)


Size = Annotated[int, _pydantic(parse_size)]
Duration = Annotated[float, _pydantic(parse_duration)]
Rate = Annotated[float, _pydantic(parse_rate)]
