"""Running a sweep's runs (points x replicates) on an executor, keeping each as it finishes.

A run is described by a spec, a plain dict (picklable, the same for every executor). A worker
simulates it and packs the outcome into a *part*: the bytes of a small Arrow IPC stream (its
summary row, disk usage and status as JSON metadata; the run's operations as the table). Arrow
IPC rather than parquet because thousands of parts are read back to build the tables: about 30
times faster to read for parts this small. The parent process stores each part the moment it
arrives, so whatever interrupts a sweep, every finished run is kept, and the tables are put
together from the parts at the end, in (point, replicate) order: the same tables whatever
executor ran them and in whatever order they finished.

A run that may record more operations than one batch does not send them back: when its spec
names an ``ops_path`` (local executors, which share the run folder's file system), its records
stream to that parquet file a batch at a time, written under a temporary name and renamed once
complete, and the part only names the file. The ops table is then put together a run at a time
(:func:`ops_tables`), so neither a worker nor the parent ever holds a whole run's rows.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CowsimError
from .results import write_atomically

PART_KEY = b"cowsim.part"
EXECUTORS = ("local", "dask")
TAGS = (("point", pa.int64()), ("replicate", pa.int64()), ("driver", pa.string()))  # added to every run's ops
# Runs that record at most this many operations send them inside their part even when they could
# stream them to a file: writing and reading back a parquet file per run costs as much as a
# whole copy-up probe run (docs/performance.md).
INLINE_ROWS = 1 << 16


def run_one(spec: dict, progress_for: Callable[[dict, Any], Callable[[int], object]] | None = None) -> bytes:
    """Simulate one run and pack it. A run that raises is packed as failed, with its error.
    ``progress_for(spec, scenario)``, if given, is asked for a callback that counts the records of
    a long run (one that records more than a batch) as they are made."""
    from .runner import simulate
    from .scenario import Scenario
    final = Path(spec["ops_path"]) if spec.get("ops_path") else None
    try:
        scenario = Scenario.model_validate(spec["scenario"])
        long = not _fits_inline(scenario)
        progress = progress_for(spec, scenario) if progress_for is not None and long else None
        streamed = final is not None and scenario.keep_ops and long
        if streamed:
            result = write_atomically(final, lambda path: simulate(scenario, spec["replicate"], path, progress))
        else:
            result = simulate(scenario, spec["replicate"], progress=progress)
    except Exception as error:  # one failing run must not stop the sweep: record it
        return pack(spec, failure=f"{type(error).__name__}: {error}", trace=traceback.format_exc())
    tag = {"point": spec["point"], "replicate": spec["replicate"], "driver": scenario.driver.name}
    space = [{**row, **tag} for row in result.space_rows]
    df = [{**row, **tag} for row in result.df_rows]
    if streamed:
        rows = pq.read_metadata(final).num_rows
        return pack(spec, summary=result.summary, space=space, df=df, ops_file=final.name, ops_rows=rows)
    ops = tagged(result.ops_table, tag) if scenario.keep_ops else None
    return pack(spec, summary=result.summary, ops=ops, space=space, df=df)


def expected_records(scenario) -> int | None:
    """At most how many records a run makes, where the scenario bounds them (a mix by its
    operations, a copy-up probe by its files); None for a trace or a mix run for a duration."""
    from .scenario import CopyupProbe, Mix
    count = scenario.containers.count
    workload = scenario.workload
    if isinstance(workload, Mix) and workload.operations is not None:
        work = workload.operations
    elif isinstance(workload, CopyupProbe):
        work = 2 * workload.files * count
    else:
        return None
    # plus each image's prepare_image (and remove_image), settle, and each container's create and remove_container
    images = max(1, len(scenario.images))
    removed = images if scenario.prune_images_at_end else len(scenario.remove_images_at_end)
    return work + 2 * count + images + removed + scenario.settle


def _fits_inline(scenario) -> bool:
    """Whether the scenario bounds its records to INLINE_ROWS."""
    expected = expected_records(scenario)
    return expected is not None and expected <= INLINE_ROWS


def tagged(ops: pa.Table | pa.RecordBatch, tag: dict) -> pa.Table:
    """A run's operations with the columns that say which run they belong to."""
    ops = pa.Table.from_batches([ops]) if isinstance(ops, pa.RecordBatch) else ops
    for name, kind in TAGS:
        ops = ops.append_column(name, pa.array([tag[name]] * ops.num_rows, kind))
    return ops


def pack(spec: dict, *, summary: dict | None = None, ops: pa.Table | None = None,
         space: list[dict] | None = None, df: list[dict] | None = None, failure: str = "", trace: str = "",
         ops_file: str = "", ops_rows: int | None = None) -> bytes:
    table = ops if ops is not None else pa.table({})
    meta = {"point": spec["point"], "replicate": spec["replicate"], "keys": spec["keys"],
            "status": "failed" if failure else "ok", "failure": failure, "traceback": trace,
            "summary": summary or {}, "space": space or [], "df": df or [], "ops_file": ops_file,
            "ops_rows": table.num_rows if ops_rows is None else ops_rows}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           PART_KEY: json.dumps(meta, default=_plain).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def part_meta(blob: bytes | Path) -> dict:
    """A part's metadata, without reading its table."""
    return json.loads(_open(blob).schema.metadata[PART_KEY])


def _open(blob: bytes | Path) -> pa.ipc.RecordBatchStreamReader:
    return pa.ipc.open_stream(pa.OSFile(str(blob)) if isinstance(blob, Path) else blob)  # copies: no mapping held


def combine(metas: Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Summary (one row per run) and space tables, and each run's status, from the parts'
    metadata in (point, replicate) order. The ops table is :func:`ops_tables`'s."""
    rows, spaces, status = [], [], []
    for meta in metas:
        rows.append({**meta["keys"], **meta["summary"], "status": meta["status"], "failure": meta["failure"]})
        spaces += meta["space"]
        status.append({"point": meta["point"], "replicate": meta["replicate"], "status": meta["status"],
                       **({"failure": meta["failure"]} if meta["failure"] else {})})
    return pd.DataFrame(rows), pd.DataFrame(spaces), status


def combine_df(metas: Iterable[dict]) -> pd.DataFrame:
    """The system df table (``Host.system_df`` per run) from the parts' metadata, in order (a part
    written before the table existed has none)."""
    return pd.DataFrame([row for meta in metas for row in meta.get("df", [])])


def ops_tables(parts: Iterable[tuple[bytes | Path, dict]], folder: Path | None = None,
               batch_rows: int = INLINE_ROWS) -> Iterator[pa.Table]:
    """The ops of every (part, its metadata) in turn, in (point, replicate) order, with their
    run's tags, at most ``batch_rows`` rows at a time: a part's own table, or the batches of the
    file in ``folder`` that it names."""
    for part, meta in parts:
        if not meta.get("ops_file"):
            table = _open(part).read_all().replace_schema_metadata(None)
            if table.num_rows:
                yield table
            continue
        tag = {"point": meta["point"], "replicate": meta["replicate"], "driver": meta["keys"]["driver"]}
        with pq.ParquetFile(folder / meta["ops_file"], pre_buffer=False) as ops:  # see RunResult.read_ops
            for batch in ops.iter_batches(batch_size=batch_rows, use_threads=False):
                yield tagged(batch, tag)


def part_ok(meta: dict, folder: Path) -> bool:
    """Whether a stored part (its metadata) can be trusted on resume: its run succeeded and the
    ops file it names (if any) is there, whole, with as many rows as the run recorded."""
    if meta["status"] != "ok":
        return False
    if not meta.get("ops_file"):
        return True
    try:
        return pq.read_metadata(folder / meta["ops_file"]).num_rows == meta["ops_rows"]
    except (OSError, pa.ArrowException):
        return False


def part_key(spec: dict) -> tuple[int, int]:
    return spec["point"], spec["replicate"]


# -- executors ------------------------------------------------------------------------------------

class WorkerLost(CowsimError):
    exit_code = 1


def execute(specs: list[dict], executor: str = "local", jobs: int = 1, scheduler: Any = None,
            progress_for: Callable[[dict, Any], Callable[[int], object]] | None = None,
            ) -> Iterator[tuple[tuple[int, int], bytes]]:
    """((point, replicate), part) of every spec, in the order they finish. Runs simulated in this
    process report their records to ``progress_for`` (see :func:`run_one`); workers' do not."""
    if executor == "dask":
        yield from _dask(specs, jobs, scheduler)
    elif executor != "local":
        raise CowsimError(f"unknown executor {executor!r}: use {' or '.join(EXECUTORS)}")
    elif jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            yield part_key(spec), run_one(spec, progress_for)
    else:
        yield from _processes(specs, jobs)


def _worker_init() -> None:
    # Ctrl-C is the parent's to handle: it stops handing out runs and keeps what finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM kills a worker (the parent's handler, inherited through fork, would raise instead).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
    finished = False
    try:
        pending = {pool.submit(run_one, spec): spec for spec in specs}
        for future in as_completed(pending):
            spec = pending.pop(future)
            try:
                yield part_key(spec), future.result()
            except BrokenProcessPool:
                raise WorkerLost("a worker process died (killed or out of memory); the runs that finished "
                                 "are kept") from None
        finished = True
    finally:
        if not finished:
            # Interrupted (Ctrl-C, SIGTERM, a lost worker): stop the runs under way now rather
            # than wait for them. The executor has no public way to do so before Python 3.14.
            for process in list((pool._processes or {}).values()):
                process.terminate()
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


def progress_bar(total: int | None, initial: int, label: str, quiet: bool, unit: str = "run", position: int = 0):
    from tqdm import tqdm
    # disable=None: tqdm stays quiet when stderr is not a terminal.
    return tqdm(total=total, initial=initial, desc=label, unit=unit, file=sys.stderr, position=position,
                leave=position == 0, disable=True if quiet else None, dynamic_ncols=True, smoothing=0.05,
                unit_scale=unit == "op")


class RecordsProgress:
    """A second bar, in operations, under the bar of runs: one long run in this process can take
    minutes, and the bar of runs would not move meanwhile. :meth:`bar_for` is ``run_one``'s
    ``progress_for``; each long run gets its own bar, closed when the next starts or at the end."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def bar_for(self, spec: dict, scenario: Any) -> Callable[[int], object]:
        self.close()
        label = f"point {spec['point']} replicate {spec['replicate']}"
        self.bar = progress_bar(expected_records(scenario), 0, label, self.quiet, unit="op", position=1)
        return self.bar.update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
