"""The command line of a benchmark that draws one figure into docs/ (``-o`` to put it elsewhere)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def figure_command(module: str, doc: str, default: str, draw: Callable[[Path], object],
                   argv: list[str] | None = None) -> int:
    """``python -m benchmarks.<module> [-o PATH]``: draw the figure (``docs/<default>`` unless told)."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / default)
    args = parser.parse_args(argv)
    draw(args.output)
    print(f"figure: {args.output}")
    return 0
