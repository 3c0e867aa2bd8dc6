"""Per-operation records: each operation's texts kept in a list and its numbers packed as bytes
(int64 and float64, as the columns hold them), turned into columns a batch at a time.

A batch either stays in memory (``frame()`` gives the whole table) or, when the records have a
``path``, is written to that parquet file as one row group and dropped, so a run of any length
holds at most one batch of rows. Either way every batch is folded into :class:`OpTotals`, all
that a run's summary needs, so the summary never needs the rows.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .plan import Plan

OP_COLUMNS = ("container", "worker", "op", "path", "bytes", "start_s", "latency_s", "lookup_s", "copy_up_s",
              "data_s", "fsync_s", "setup_s", "copy_ups", "copy_up_bytes", "cache_hit_bytes",
              "cache_miss_bytes", "dentry_hits", "dentry_misses", "error")
# The order in which OpRecords.add keeps an operation's values: its texts, then its numbers.
_STRING = ("container", "op", "path", "error")
_INT = ("worker", "bytes", "copy_ups", "copy_up_bytes", "cache_hit_bytes", "cache_miss_bytes", "dentry_hits",
        "dentry_misses")
_FLOAT = ("start_s", "latency_s", "lookup_s", "copy_up_s", "data_s", "fsync_s", "setup_s")
OP_SCHEMA = pa.schema([(name, pa.string() if name in _STRING else pa.float64() if name in _FLOAT else pa.int64())
                       for name in OP_COLUMNS])
_PACKED = struct.Struct("<" + "q" * len(_INT) + "d" * len(_FLOAT))  # one operation's numbers
_PACKED_ROW = np.dtype([(name, "<i8") for name in _INT] + [(name, "<f8") for name in _FLOAT])
# Setup operations: not the workload's (a node's start-up adds its pulls, layer stages and starts).
SETUP_OPS = ("prepare_image", "create_container", "settle", "remove_container", "remove_image", "pull", "download",
             "decompress", "create_layer", "extract_layer", "start_container", "first_read", "startup")
SETUP_VALUES = pa.array(SETUP_OPS)
BATCH_ROWS = 1 << 16


class OpTotals:
    """What a run's summary needs from its records, folded in a batch at a time: exact integer
    counts of the workload's operations (setup excluded), the latest end time, and the float
    columns whose means and exact quantiles the summary reports, kept as float64 arrays
    (8 bytes per operation, no strings).

    ``measures`` adds values the workload asks for: name -> (operation label, record column),
    e.g. ``{"first_write_s": ("first_write", "latency_s")}``: that column of the operations with
    that label."""

    COUNTS = ("ops", "errors", "copy_ups", "copy_up_bytes", "cache_hit_bytes", "cache_miss_bytes",
              "dentry_hits", "dentry_misses")
    VALUES = ("latency_s", "copied_copy_up_s", "setup_latency_s")

    def __init__(self, measures: dict[str, tuple[str, str]] | None = None) -> None:
        self.counts = dict.fromkeys(self.COUNTS, 0)
        self.end: float | None = None
        self.measures = dict(measures or {})
        self._values: dict[str, list[np.ndarray]] = {name: [] for name in (*self.VALUES, *self.measures)}

    def fold(self, batch: pa.RecordBatch) -> None:
        column = batch.column
        setup = pc.is_in(column("op"), value_set=SETUP_VALUES).to_numpy(zero_copy_only=False)
        work = ~setup
        latency = column("latency_s").to_numpy()
        values = self._values
        values["setup_latency_s"].append(latency[setup])
        if not work.any():
            return
        counts = self.counts
        counts["ops"] += int(work.sum())
        counts["errors"] += int((pc.not_equal(column("error"), "").to_numpy(zero_copy_only=False) & work).sum())
        for name in self.COUNTS[2:]:
            counts[name] += int(column(name).to_numpy()[work].sum())
        end = float((column("start_s").to_numpy()[work] + latency[work]).max())
        self.end = end if self.end is None else max(self.end, end)
        copy_ups = column("copy_ups").to_numpy()
        values["latency_s"].append(latency[work])
        values["copied_copy_up_s"].append(column("copy_up_s").to_numpy()[work & (copy_ups > 0)])
        labels: dict[str, np.ndarray] = {}
        for name, (label, source) in self.measures.items():
            if label not in labels:
                labels[label] = pc.equal(column("op"), label).to_numpy(zero_copy_only=False)
            values[name].append(column(source).to_numpy()[labels[label]])

    def values(self, name: str) -> np.ndarray:
        """Every folded value of one float column, in record order."""
        parts = self._values[name]
        return np.concatenate(parts) if parts else np.empty(0)


class OpRecords:
    """Per-operation records (``*_s`` in seconds, ``*bytes`` in bytes).

    Batches are Arrow record batches, kept in memory or, with ``path``, written to that parquet
    file (call :meth:`close` at the end). ``keep=False`` keeps only the totals. ``progress``, if
    given, is called with the number of records of each batch as it is made (a progress bar).
    ``measures``: what the totals keep besides (see :class:`OpTotals`).
    """

    def __init__(self, path: str | Path | None = None, *, keep: bool = True, batch_rows: int | None = None,
                 progress: Callable[[int], object] | None = None,
                 measures: dict[str, tuple[str, str]] | None = None) -> None:
        self.progress = progress
        self.batch_rows = batch_rows or BATCH_ROWS
        self.flush_at = len(_STRING) * self.batch_rows  # pending strings of a whole batch
        self.keep = keep
        self.path = Path(path) if path is not None else None
        self.totals = OpTotals(measures)
        self.count = 0
        self._batches: list[pa.RecordBatch] = []  # kept in memory when there is no path
        self._writer: pq.ParquetWriter | None = None
        self._start_batch()

    def _start_batch(self) -> None:
        # Packing the numbers as each operation ends costs less than converting a batch of Python
        # values to Arrow, and leaves no tuple per row alive for the garbage collector to walk.
        self._strings: list[str] = []
        self._numbers = bytearray()

    def add(self, container: str, worker: int, op: str, path: str, nbytes: int, start: float, end: float,
            plan: Plan, phase_s: list[float], hit_bytes: int, miss_bytes: int, dentry_hits: int,
            dentry_misses: int) -> None:
        """One operation's row: its columns, its plan's copy-ups and error, and what executing it
        measured (``phase_s``: seconds per phase, in ``sim.plan.PHASES`` order)."""
        strings = self._strings
        strings.extend((container, op, path, plan.error))
        self._numbers += _PACKED.pack(worker, nbytes, plan.copy_ups, plan.copy_up_bytes, hit_bytes, miss_bytes,
                                      dentry_hits, dentry_misses, start, end - start,
                                      phase_s[0], phase_s[1], phase_s[2], phase_s[3], phase_s[4])
        if len(strings) >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        """Turn the pending rows into a batch: fold it into the totals, then keep or write it."""
        strings = self._strings
        if not strings:
            return
        rows = len(strings) // len(_STRING)
        columns = {name: pa.array(strings[i::len(_STRING)], pa.string()) for i, name in enumerate(_STRING)}
        numbers = np.frombuffer(self._numbers, dtype=_PACKED_ROW)
        columns.update((name, pa.array(numbers[name])) for name in _INT + _FLOAT)
        batch = pa.RecordBatch.from_arrays([columns[name] for name in OP_COLUMNS], schema=OP_SCHEMA)
        self.count += rows
        self._start_batch()
        self.totals.fold(batch)
        if self.progress is not None:
            self.progress(batch.num_rows)
        if not self.keep:
            return
        if self.path is None:
            self._batches.append(batch)
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, OP_SCHEMA)
        self._writer.write_batch(batch)

    def close(self) -> None:
        """Flush the last rows; a streamed table's file is complete once this returns."""
        self.flush()
        if self.path is not None and self.keep:
            if self._writer is None:  # no operation at all: still leave a valid, empty table
                self.path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(OP_SCHEMA.empty_table(), self.path)
            else:
                self._writer.close()
                self._writer = None

    def __len__(self) -> int:
        return self.count + len(self._strings) // len(_STRING)

    def table(self) -> pa.Table:
        """Every operation so far as an Arrow table (streamed records are read back from their file)."""
        if self.path is not None:
            self.close()
            return pq.read_table(self.path)
        self.flush()
        return pa.Table.from_batches(self._batches, schema=OP_SCHEMA)

    def frame(self) -> pd.DataFrame:
        return self.table().to_pandas()
