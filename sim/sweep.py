"""Running a sweep's runs (points x replicates) on an executor, keeping each as it finishes.

A run is described by a spec, a plain dict (picklable, the same for every executor). A worker
simulates it and packs the outcome into a *part*: the bytes of a small Arrow IPC stream (the
run's operations as the table; its summary row, disk usage and status as JSON metadata). Arrow
IPC rather than parquet because thousands of parts are read back to build the tables: about 30
times faster to read for parts this small. The parent
process stores each part the moment it arrives, so whatever interrupts a sweep, every finished
run is kept, and the tables are put together from the parts at the end, in (point, replicate)
order: the same tables whatever executor ran them and in whatever order they finished.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from .errors import CowsimError

PART_KEY = b"cowsim.part"
EXECUTORS = ("local", "dask")


def run_one(spec: dict) -> bytes:
    """Simulate one run and pack it. A run that raises is packed as failed, with its error."""
    from .runner import simulate
    from .scenario import Scenario
    try:
        scenario = Scenario.model_validate(spec["scenario"])
        result = simulate(scenario, spec["replicate"])
    except Exception as error:  # one failing run must not stop the sweep: record it
        return pack(spec, failure=f"{type(error).__name__}: {error}", trace=traceback.format_exc())
    tag = {"point": spec["point"], "replicate": spec["replicate"], "driver": scenario.driver.name}
    ops = None
    if scenario.keep_ops:
        ops = result.ops_table
        for name, value in tag.items():
            ops = ops.append_column(name, pa.array([value] * ops.num_rows, pa.string() if name == "driver" else pa.int64()))
    return pack(spec, summary=result.summary, ops=ops, space=[{**row, **tag} for row in result.space_rows])


def pack(spec: dict, *, summary: dict | None = None, ops: pa.Table | None = None,
         space: list[dict] | None = None, failure: str = "", trace: str = "") -> bytes:
    table = ops if ops is not None else pa.table({})
    meta = {"point": spec["point"], "replicate": spec["replicate"], "keys": spec["keys"],
            "status": "failed" if failure else "ok", "failure": failure, "traceback": trace,
            "summary": summary or {}, "space": space or []}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), PART_KEY: json.dumps(meta, default=_plain).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def unpack(blob: bytes) -> tuple[dict, pa.Table]:
    table = pa.ipc.open_stream(blob).read_all()
    meta = json.loads(table.schema.metadata[PART_KEY])
    return meta, table.replace_schema_metadata(None)


def combine(parts: Iterable[bytes]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[dict]]:
    """Summary (one row per run), ops and space tables, and each run's status, from parts."""
    decoded = sorted((unpack(blob) for blob in parts), key=lambda mt: (mt[0]["point"], mt[0]["replicate"]))
    rows, spaces, tables, status = [], [], [], []
    for meta, table in decoded:
        rows.append({**meta["keys"], **meta["summary"], "status": meta["status"], "failure": meta["failure"]})
        spaces += meta["space"]
        if table.num_rows:
            tables.append(table)
        status.append({"point": meta["point"], "replicate": meta["replicate"], "status": meta["status"],
                       **({"failure": meta["failure"]} if meta["failure"] else {})})
    ops = pa.concat_tables(tables, promote_options="default").to_pandas() if tables else pd.DataFrame()
    return pd.DataFrame(rows), ops, pd.DataFrame(spaces), status


def part_key(spec: dict) -> tuple[int, int]:
    return spec["point"], spec["replicate"]


def part_status(blob: bytes) -> str:
    return json.loads(pa.ipc.open_stream(blob).schema.metadata[PART_KEY])["status"]


# -- executors ------------------------------------------------------------------------------------

class WorkerLost(CowsimError):
    exit_code = 1


def execute(specs: list[dict], executor: str = "local", jobs: int = 1,
            scheduler: Any = None) -> Iterator[tuple[tuple[int, int], bytes]]:
    """((point, replicate), part) of every spec, in the order they finish."""
    if executor == "dask":
        yield from _dask(specs, jobs, scheduler)
    elif executor != "local":
        raise CowsimError(f"unknown executor {executor!r}: use {' or '.join(EXECUTORS)}")
    elif jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            yield part_key(spec), run_one(spec)
    else:
        yield from _processes(specs, jobs)


def _worker_init() -> None:
    # Ctrl-C is the parent's to handle: it stops handing out runs and keeps what finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent that is killed takes its workers with it (Linux), instead of leaving them waiting.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _processes(specs: list[dict], jobs: int) -> Iterator[bytes]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(specs)), initializer=_worker_init)
    try:
        pending = {pool.submit(run_one, spec): spec for spec in specs}
        for future in as_completed(pending):
            spec = pending.pop(future)
            try:
                yield part_key(spec), future.result()
            except BrokenProcessPool:
                raise WorkerLost("a worker process died (killed or out of memory); the runs that finished "
                                 "are kept") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_batch(specs: list[dict]) -> list[bytes]:
    return [run_one(spec) for spec in specs]


def _dask(specs: list[dict], jobs: int, scheduler: Any) -> Iterator[tuple[tuple[int, int], bytes]]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise CowsimError("the dask executor needs dask.distributed: pip install 'cowsim[dask]'") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, dashboard_address=":0")
        scheduler = cluster
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as error:
        raise CowsimError(f"cannot reach the dask scheduler {scheduler}: {error}") from None
    try:
        # A task per run spends more time in the scheduler than in the simulator (runs take
        # milliseconds): hand out small batches, about twenty per worker thread, of at most 16 runs.
        threads = max(1, sum(client.nthreads().values()))
        size = max(1, min(16, len(specs) // (20 * threads)))
        batches = [specs[i:i + size] for i in range(0, len(specs), size)]
        futures = client.map(run_batch, batches, pure=False)
        by_key = {future.key: batch for future, batch in zip(futures, batches)}
        for future in as_completed(futures):
            batch = by_key.pop(future.key)
            try:
                blobs = future.result()
            except Exception as error:  # e.g. KilledWorker after dask's own retries
                blobs = [pack(spec, failure=f"{type(error).__name__}: {error}") for spec in batch]
            future.release()
            for spec, blob in zip(batch, blobs):
                yield part_key(spec), blob
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def progress_bar(total: int, initial: int, label: str, quiet: bool):
    from tqdm import tqdm
    # disable=None: tqdm stays quiet when stderr is not a terminal.
    return tqdm(total=total, initial=initial, desc=label, unit="run", file=sys.stderr,
                disable=True if quiet else None, dynamic_ncols=True, smoothing=0.05)
