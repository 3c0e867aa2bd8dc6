"""Golden tables: each driver's figures on fixed inputs, pinned exactly.

Regenerate (only when a change of the model's numbers is intended, and say why in the commit):
    python -m tests.golden_tables
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import sim
from sim.drivers import REGISTRY

HERE = Path(__file__).parent / "golden"
PROBE_GRID = [(size, layers, depth, cache) for size in (4096, 2**20, 64 * 2**20) for layers in (1, 16)
              for depth in (1, 8) for cache in ("cold", "warm")]
MIX = {"name": "golden-mix", "seed": 2024, "profile": "ssd", "containers": {"count": 3},
       "image": {"layers": 4, "files_per_layer": 120, "dir_depth": 3},
       "workload": {"ops": {"read": .4, "write": .2, "append": .1, "create": .1, "delete": .05, "stat": .1,
                            "rename": .03, "chmod": .02}, "workers": 2, "operations": 600}}
MIX_COLUMNS = ["ops", "errors", "copy_ups", "copy_up_bytes", "latency_mean_s", "latency_p99_s", "throughput_ops_s",
               "disk_read_bytes", "disk_write_bytes", "fsyncs", "containers_size_bytes", "real_bytes"]


def probe_table(driver: str) -> pd.DataFrame:
    rows = [sim.probe(driver, file_size=size, layers=layers, dir_depth=depth, cache=cache, profile="ssd")
            for size, layers, depth, cache in PROBE_GRID]
    return pd.DataFrame(rows).drop(columns=["driver"])


def mix_table() -> pd.DataFrame:
    spec = {**MIX, "sweep": {"driver.name": sorted(REGISTRY)}}  # the rows in the order the table was written
    return sim.run_scenario(spec).summary[["driver", *MIX_COLUMNS]]


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for driver in REGISTRY:
        probe_table(driver).to_csv(HERE / f"probe_{driver}.csv", index=False, float_format="%.9g")
    mix_table().to_csv(HERE / "mix.csv", index=False, float_format="%.9g")


if __name__ == "__main__":
    main()
