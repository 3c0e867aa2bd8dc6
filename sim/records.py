"""Flat records: one row per operation, built in columns and turned into a DataFrame in one call."""
from __future__ import annotations

import pandas as pd

from .engine import OpResult
from .plan import Plan

OP_COLUMNS = ("container", "worker", "op", "path", "bytes", "start_s", "latency_s", "lookup_s", "copy_up_s",
              "data_s", "fsync_s", "setup_s", "copy_ups", "copy_up_bytes", "cache_hit_bytes",
              "cache_miss_bytes", "dentry_hits", "dentry_misses", "error")


class OpRecords:
    """Columns of per-operation records (``*_s`` in seconds, ``*bytes`` in bytes)."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in OP_COLUMNS}

    def add(self, container, worker: int, op: str, path: str, nbytes: int, start: float, end: float,
            plan: Plan, result: OpResult) -> None:
        c = self.columns
        phase = result.phase_s
        c["container"].append(container)
        c["worker"].append(worker)
        c["op"].append(op)
        c["path"].append(path)
        c["bytes"].append(nbytes)
        c["start_s"].append(start)
        c["latency_s"].append(end - start)
        c["lookup_s"].append(phase[0])
        c["copy_up_s"].append(phase[1])
        c["data_s"].append(phase[2])
        c["fsync_s"].append(phase[3])
        c["setup_s"].append(phase[4])
        c["copy_ups"].append(plan.copy_ups)
        c["copy_up_bytes"].append(plan.copy_up_bytes)
        c["cache_hit_bytes"].append(result.hit_bytes)
        c["cache_miss_bytes"].append(result.miss_bytes)
        c["dentry_hits"].append(result.dentry_hits)
        c["dentry_misses"].append(result.dentry_misses)
        c["error"].append(plan.error)

    def __len__(self) -> int:
        return len(self.columns["op"])

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.columns)
        frame["container"] = frame["container"].astype(str)
        return frame
