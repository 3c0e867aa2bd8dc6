"""Simulating one point of a scenario: build the image, the host and the containers, run the
workload, and reduce the records to one summary row. Pure: the same point and seed always give
the same tables, in any process.
"""
from __future__ import annotations

import gc
import math
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field as dataclass_field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .drivers import get_driver
from .engine import Engine
from .host import Host, Mount
from .image import Image, Layer, probe_image, synthetic_image
from .logs import ContainerLogs
from .profile import load_profile
from .pull import Startup
from .records import OP_SCHEMA, OpRecords, OpTotals
from .scenario import NAMED_IMAGES, FileImage, NamedSynthetic, ProbeImage, Scenario, SyntheticImage, bases_first
from .workloads import Setup, Workload, measured_columns, workload_for

# Named random streams. Seeds depend on the replicate and the component only, not on the point,
# so every driver of a sweep sees the same image and the same workload (common random numbers).
STREAMS = {"image": 0, "workload": 1, "disk": 2}


def stream(seed: int, replicate: int, component: str, *names: str) -> np.random.Generator:
    """The random stream of a component; ``names`` (an image's) make a stream of its own, the
    same whatever else the scenario holds."""
    key = (replicate, STREAMS[component], *(zlib.crc32(name.encode()) for name in names))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class PointResult:
    """One run's tables. The DataFrames are made on first use: a sweep can pass the Arrow table
    and the rows on without paying for pandas per run."""

    summary: dict
    ops_table: pa.Table  # empty when the operations were not kept, or streamed to ``ops_path``
    space_rows: list[dict]
    ops_path: Path | None = None  # the parquet file the operations were streamed to
    df_rows: list[dict] = dataclass_field(default_factory=list)  # Host.system_df, with ``when``

    @cached_property
    def ops(self) -> pd.DataFrame:
        return self.ops_table.to_pandas()

    @cached_property
    def space(self) -> pd.DataFrame:
        return pd.DataFrame(self.space_rows)


def build_image(spec, seed: int, replicate: int) -> tuple[Image, list[str]]:
    """The image and the files a copy-up probe targets in it.

    Images never change once built, so the points and replicates of a sweep that ask for the
    same one share it: probe and synthetic images are remembered per process.
    """
    if isinstance(spec, ProbeImage):
        image, target = _probe_image(spec.file_size, spec.layers, spec.dir_depth, spec.dir_entries)
        return image, [target]
    if isinstance(spec, SyntheticImage):
        image = _synthetic_image(spec.model_dump_json(), seed, replicate)
        return image, image.files
    if isinstance(spec, FileImage):
        image = file_image(spec.path)
        return image, image.files
    raise TypeError(f"unknown image spec {spec!r}")


def build_images(scenario: Scenario, replicate: int) -> dict[str, tuple[Image, list[str]]]:
    """Every image on the node by name, bases first, each with the files a probe or a mix may
    pick in it. With ``image:``, the one image under its own name (as :func:`build_image`)."""
    if not scenario.images:
        image, candidates = build_image(scenario.image, scenario.seed, replicate)
        return {image.name: (image, candidates)}
    # (a real image's file is read again when it changes: its modification time is in the key)
    changed = tuple(Path(spec.path).stat().st_mtime_ns if Path(spec.path).exists() else 0
                    for spec in scenario.images if isinstance(spec, FileImage))
    return _named_images(NAMED_IMAGES.dump_json(scenario.images).decode(), scenario.seed, replicate, changed)


@lru_cache(maxsize=2)  # the images of the current point and the last (a sweep over drivers shares them)
def _named_images(specs_json: str, seed: int, replicate: int,
                  _changed: tuple[int, ...] = ()) -> dict[str, tuple[Image, list[str]]]:
    built: dict[str, tuple[Image, list[str]]] = {}
    stored: dict[str, Layer] = {}  # chain ID -> the layer, held once: images share what they have in common
    for spec in bases_first(NAMED_IMAGES.validate_json(specs_json)):
        name = spec.name
        if isinstance(spec, SyntheticImage):
            base = built[spec.base][0] if isinstance(spec, NamedSynthetic) and spec.base else None
            image = generated(spec, stream(seed, replicate, "image", name), name=name, base=base)
            candidates = image.files
        else:
            found, candidates = build_image(spec, seed, replicate)
            image = Image(name, found.layers, found.config_history, found.image_id)
        layers = [stored.setdefault(chain, layer) for chain, layer in zip(image.chain_ids, image.layers)]
        if any(mine is not kept for mine, kept in zip(image.layers, layers)):
            image = Image(name, layers, image.config_history, image.image_id)
        built[name] = (image, candidates)
    return built


@lru_cache(maxsize=1024)  # a few KiB each: a whole copy-up sweep's images
def _probe_image(file_size: int, layers: int, dir_depth: int, dir_entries: int) -> tuple[Image, str]:
    return probe_image(file_size=file_size, layers=layers, dir_depth=dir_depth, dir_entries=dir_entries)


def file_image(path: str | Path) -> Image:
    """A real image (docker save, OCI layout or listing), read once per process and again only
    when the file changes."""
    path = Path(path)
    return _file_image(str(path), path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=16)  # a node's real images (each read once per process)
def _file_image(path: str, _mtime_ns: int) -> Image:
    from .imagefile import load_image
    return load_image(path)


@lru_cache(maxsize=2)  # up to hundreds of MiB each: the image of the current point and the last
def _synthetic_image(spec_json: str, seed: int, replicate: int) -> Image:
    return generated(SyntheticImage.model_validate_json(spec_json), stream(seed, replicate, "image"))


def generated(spec: SyntheticImage, rng: np.random.Generator, **named) -> Image:
    """The synthetic image ``spec`` describes, drawn from ``rng`` (``named``: its name and base)."""
    return synthetic_image(rng, layers=spec.layers, files_per_layer=spec.files_per_layer,
                           distribution=spec.size_distribution, size=spec.file_size, sigma=spec.sigma,
                           table=spec.size_table, dir_depth=spec.dir_depth, fanout=spec.fanout,
                           overwrite_fraction=spec.overwrite_fraction, delete_fraction=spec.delete_fraction, **named)


def simulate(scenario: Scenario, replicate: int = 0, ops_path: str | Path | None = None,
             progress: Callable[[int], object] | None = None) -> PointResult:
    """Run one point (a scenario without sweep) for one replicate.

    With ``ops_path`` (and ``keep_ops``), the per-operation records are written to that parquet
    file a batch at a time instead of being held in memory. ``progress`` is called with the
    number of operations recorded, a batch (65,536) at a time.
    """
    profile = load_profile(scenario.profile)
    engine = Engine(profile, rng=stream(scenario.seed, replicate, "disk"))
    driver = get_driver(scenario.driver.name)(scenario.driver.options, profile)
    images = build_images(scenario, replicate)
    ops_path = Path(ops_path) if ops_path is not None and scenario.keep_ops else None
    workload = workload_for(scenario.workload)
    records = OpRecords(ops_path, keep=scenario.keep_ops, progress=progress, measures=workload.measures)
    host = Host(driver, engine, records)
    logging = scenario.containers.logging
    if logging.enabled:
        host.logs = ContainerLogs(logging, host)
    mounts = [Mount(v.name, v.mount.lstrip("/"), v.kind) for v in scenario.containers.volumes]  # image-relative
    container_images = scenario.containers.image_names(next(iter(images)))
    setup = Setup(host, images, container_images, mounts, stream(scenario.seed, replicate, "workload"))
    run = PointRun(scenario, setup, workload)
    main = engine.env.process(run.process())
    with fewer_collections():
        # The log writer's last wake-up may lie past the end of the run: stop at the end.
        engine.env.run(until=main if host.logs is not None else None)
    if main.is_alive:  # a process waits for an event that will never come: a bug, not a result
        raise RuntimeError(f"simulation stalled at t={engine.env.now} s with operations still waiting")
    host.records.close()
    end_space = host.space()
    space = run.space_before_removal or end_space
    summary = summarize(host.records.totals, engine, run.measured_from, space)
    summary.update(workload.summary(scenario.containers.count))
    if run.startup is not None:  # only then: the summary of a scenario without a node block is as before
        summary.update(run.startup.summary())
    if host.logs is not None:
        summary.update(host.logs.summary())
    ops = host.records.table() if scenario.keep_ops and ops_path is None else OP_SCHEMA.empty_table()
    df = run.df_before_removal + [{"when": "end", **row} for row in host.system_df(end_space)]
    return PointResult(summary, ops, space, ops_path, df)


class PointRun:
    """The life of one run in simulated time: image, containers, caches, the workload, and
    removal; it notes when the measured part began and the space before removal."""

    def __init__(self, scenario: Scenario, setup: Setup, workload: Workload) -> None:
        self.scenario, self.setup, self.workload = scenario, setup, workload
        self.measured_from = 0.0
        self.space_before_removal: list[dict] = []
        self.df_before_removal: list[dict] = []  # system df when the workload ended, if anything is removed
        self.startup = Startup(setup.host, scenario.node, scenario.settle) if scenario.node.starts_containers else None

    def process(self):
        scenario, setup = self.scenario, self.setup
        host, engine = setup.host, setup.host.engine
        if self.startup is not None:
            yield from self.startup.run([image for image, _ in setup.images.values()],
                                        [(cid, setup.image(cid)) for cid in range(setup.containers)], setup.mounts)
        else:
            for image, _ in setup.images.values():
                yield from host.prepare_image(image)
            for cid in range(setup.containers):
                yield from host.create_container(cid, setup.image(cid), setup.mounts)
        if scenario.settle:
            yield from host.settle()
        if scenario.cache == "warm":
            yield from warm_up(host, setup)
        else:
            engine.drop_caches()
        self.measured_from = host.env.now
        if host.logs is not None:
            host.env.process(host.logs.run())
        yield host.env.all_of(self.workload.processes(setup))
        if host.logs is not None:
            yield from host.logs.stop()
        removing = scenario.containers.remove_at_end or scenario.remove_images_at_end or scenario.prune_images_at_end
        if removing:
            before = host.space()
            self.df_before_removal = [{"when": "workload end", **row} for row in host.system_df(before)]
        if scenario.containers.remove_at_end:
            self.space_before_removal.extend(before)
            for cid in range(setup.containers):
                yield from host.remove_container(cid)
        for name in scenario.remove_images_at_end:
            if name in host.images:  # a node that pulled on demand holds only what its containers ran
                yield from host.remove_image(name)
        if scenario.prune_images_at_end:
            for name in host.unused_images():
                yield from host.remove_image(name)


@contextmanager
def fewer_collections():
    """Python's cyclic garbage collector, made to run less often while simulating.

    A run allocates millions of small containers (steps, cache keys, records) that are not
    garbage, and with the default thresholds (700, 10, 10) the collector walks them again and
    again (what that costs: docs/performance.md). Restored after. Not gc.freeze() after setup
    (tried, issue 16): setup leaves under 100,000 tracked objects (the image tables are arrays);
    the survivors the collector walks are the workload's own. In the 1,000-container scale run a
    freeze saved one full collection (0.45 s) and cost 0.2 s more in generation 1, net about 1 %
    of 18 s, below the noise; in the throughput run no full collection falls in the workload.
    """
    before = gc.get_threshold()
    gc.set_threshold(50_000, 20, 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def warm_up(host: Host, setup: Setup):
    """Read every candidate file of its image once in each container, then forget what that cost."""
    from .operation import Op
    for cid in list(host.containers):
        for path in setup.candidates(cid):
            yield from host.engine.execute(host.plan(cid, Op("read", path, 0, 2**62)))  # not recorded
    host.engine.disk.reset_counters()


def _quantile(values: np.ndarray, q: float) -> float:
    # What pandas' Series.quantile computes (numpy's linear method), without building a Series.
    return float(np.quantile(values, q)) if len(values) else math.nan


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def summarize(totals: OpTotals, engine: Engine, measured_from: float, space: list[dict]) -> dict:
    """The run's summary row, from the records' totals (never from the rows themselves)."""
    counts = totals.counts
    latency = totals.values("latency_s")
    copied = totals.values("copied_copy_up_s")
    end = totals.end if totals.end is not None else measured_from
    elapsed = end - measured_from
    hits, misses = counts["cache_hit_bytes"], counts["cache_miss_bytes"]
    d_hits, d_misses = counts["dentry_hits"], counts["dentry_misses"]
    total = next(row for row in space if row["kind"] == "total")
    row = {
        "ops": counts["ops"],
        "errors": counts["errors"],
        "copy_ups": counts["copy_ups"],
        "copy_up_bytes": counts["copy_up_bytes"],
        "copy_up_p50_s": _quantile(copied, 0.5),
        "copy_up_p99_s": _quantile(copied, 0.99),
        "latency_mean_s": _mean(latency),
        "latency_p50_s": _quantile(latency, 0.5),
        "latency_p95_s": _quantile(latency, 0.95),
        "latency_p99_s": _quantile(latency, 0.99),
        "throughput_ops_s": counts["ops"] / elapsed if elapsed > 0 else math.nan,
        "makespan_s": float(elapsed),
        "sim_time_s": float(engine.env.now),
        "setup_s": float(totals.values("setup_latency_s").sum()),
        "disk_read_bytes": int(engine.disk.bytes_read),
        "disk_write_bytes": int(engine.disk.bytes_written),
        "disk_requests": int(engine.disk.requests),
        "fsyncs": int(engine.disk.fsyncs),
        "page_cache_hit_ratio": float(hits / (hits + misses)) if hits + misses else math.nan,
        "dentry_hit_ratio": float(d_hits / (d_hits + d_misses)) if d_hits + d_misses else math.nan,
        "operations_executed": int(engine.operations),
        "containers_size_bytes": int(total["size_bytes"]),
        "docker_total_bytes": int(total["virtual_bytes"]),
        "real_bytes": int(total["real_bytes"]),
    }
    for name in measured_columns():
        row[name] = _mean(totals.values(name)) if name in totals.measures else math.nan
    return row
