"""Simulating one point of a scenario: build the image, the host and the containers, run the
workload, and reduce the records to one summary row. Pure: the same point and seed always give
the same tables, in any process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .drivers import get_driver
from .engine import Engine
from .host import Host, Mount
from .image import Image, probe_image, synthetic_image
from .profile import load_profile
from .scenario import CopyupProbe, FileImage, Mix, ProbeImage, Scenario, SyntheticImage
from .workloads import MixState, MixStream, copyup_probe, mix_arrivals, mix_worker, split_budget

# Named random streams. Seeds depend on the replicate and the component only, not on the point,
# so every driver of a sweep sees the same image and the same workload (common random numbers).
STREAMS = {"image": 0, "workload": 1, "disk": 2}
SETUP_OPS = ("prepare_image", "create_container", "remove_container")


def stream(seed: int, replicate: int, component: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(replicate, STREAMS[component])))


@dataclass
class PointResult:
    summary: dict
    ops: pd.DataFrame
    space: pd.DataFrame


def build_image(spec, rng: np.random.Generator) -> tuple[Image, list[str]]:
    """The image and the files a copy-up probe targets in it."""
    if isinstance(spec, ProbeImage):
        image, target = probe_image(file_size=spec.file_size, layers=spec.layers, dir_depth=spec.dir_depth)
        return image, [target]
    if isinstance(spec, SyntheticImage):
        image = synthetic_image(rng, layers=spec.layers, files_per_layer=spec.files_per_layer,
                                distribution=spec.size_distribution, size=spec.file_size, sigma=spec.sigma,
                                table=spec.size_table, dir_depth=spec.dir_depth, fanout=spec.fanout,
                                overwrite_fraction=spec.overwrite_fraction, delete_fraction=spec.delete_fraction)
        return image, image.files
    if isinstance(spec, FileImage):
        from .imagefile import load_image  # real images (docker save / OCI)
        image = load_image(spec.path)
        return image, image.files
    raise TypeError(f"unknown image spec {spec!r}")


def simulate(scenario: Scenario, replicate: int = 0) -> PointResult:
    """Run one point (a scenario without sweep) for one replicate."""
    profile = load_profile(scenario.profile)
    engine = Engine(profile, rng=stream(scenario.seed, replicate, "disk"))
    driver = get_driver(scenario.driver.name)(scenario.driver.options, profile)
    image, candidates = build_image(scenario.image, stream(scenario.seed, replicate, "image"))
    host = Host(driver, engine)
    workload_rng = stream(scenario.seed, replicate, "workload")
    workload = scenario.workload
    count = scenario.containers.count
    mounts = [Mount(v.name, v.mount, v.kind) for v in scenario.containers.volumes]
    env = engine.env
    measured_from = [0.0]
    space_before_removal: list[dict] = []

    def run():
        yield from host.prepare_image(image)
        for cid in range(count):
            yield from host.create_container(cid, image, mounts)
        if scenario.cache == "warm":
            yield from warm_up(host, candidates)
        else:
            engine.drop_caches()
        measured_from[0] = env.now
        processes = []
        if isinstance(workload, CopyupProbe):
            for cid in range(count):
                container_rng = np.random.default_rng(workload_rng.integers(2**63))
                picks = container_rng.choice(len(candidates), size=min(workload.files, len(candidates)), replace=False)
                targets = [candidates[i] for i in sorted(picks)]
                processes.append(env.process(copyup_probe(host, cid, workload, targets)))
        elif isinstance(workload, Mix):
            state = MixState(workload, candidates, workload_rng)
            per_container = workload.workers if workload.mode == "closed" else 1
            budgets = iter(split_budget(workload.operations, count * per_container))
            volume_dirs = [m.path for m in mounts]
            for cid in range(count):
                for worker in range(per_container):
                    volume_files = sorted(f"{m.path}/{p}" for m in mounts for p in host.volumes[m.volume].files)
                    stream = MixStream(state, cid, worker, np.random.default_rng(workload_rng.integers(2**63)),
                                       next(budgets), volume_files, volume_dirs)
                    body = mix_worker(host, stream) if workload.mode == "closed" else mix_arrivals(host, stream)
                    processes.append(env.process(body))
        yield env.all_of(processes)
        if scenario.containers.remove_at_end:
            space_before_removal.extend(host.space())
            for cid in range(count):
                yield from host.remove_container(cid)

    env.process(run())
    env.run()
    space = pd.DataFrame(space_before_removal or host.space())
    ops = host.records.frame()
    summary = summarize(ops, engine, host, measured_from[0], space)
    return PointResult(summary, ops, space)


def warm_up(host: Host, paths: list[str]):
    """Read every candidate file once in each container, then forget what that cost."""
    from .drivers import Op
    for cid in list(host.containers):
        for path in paths:
            yield from host.engine.execute(host.plan(cid, Op("read", path, 0, 2**62)), _Discard())
    host.engine.disk.reset_counters()


class _Discard:
    """An OpResult nobody reads (warm-up)."""

    def __init__(self):
        self.phase_s = [0.0] * 5
        self.hit_bytes = self.miss_bytes = self.dentry_hits = self.dentry_misses = 0


def _quantile(series: pd.Series, q: float) -> float:
    return float(series.quantile(q)) if len(series) else math.nan


def summarize(ops: pd.DataFrame, engine: Engine, host: Host, measured_from: float, space: pd.DataFrame) -> dict:
    work = ops[~ops["op"].isin(SETUP_OPS)]
    setup = ops[ops["op"].isin(SETUP_OPS)]
    copied = work[work["copy_ups"] > 0]
    end = float((work["start_s"] + work["latency_s"]).max()) if len(work) else measured_from
    elapsed = end - measured_from
    hits, misses = work["cache_hit_bytes"].sum(), work["cache_miss_bytes"].sum()
    d_hits, d_misses = work["dentry_hits"].sum(), work["dentry_misses"].sum()
    total = space[space["kind"] == "total"].iloc[0]
    row = {
        "ops": int(len(work)),
        "errors": int((work["error"] != "").sum()),
        "copy_ups": int(work["copy_ups"].sum()),
        "copy_up_bytes": int(work["copy_up_bytes"].sum()),
        "copy_up_p50_s": _quantile(copied["copy_up_s"], 0.5),
        "copy_up_p99_s": _quantile(copied["copy_up_s"], 0.99),
        "latency_mean_s": float(work["latency_s"].mean()) if len(work) else math.nan,
        "latency_p50_s": _quantile(work["latency_s"], 0.5),
        "latency_p95_s": _quantile(work["latency_s"], 0.95),
        "latency_p99_s": _quantile(work["latency_s"], 0.99),
        "throughput_ops_s": len(work) / elapsed if elapsed > 0 else math.nan,
        "sim_time_s": float(engine.env.now),
        "setup_s": float(setup["latency_s"].sum()),
        "disk_read_bytes": int(engine.disk.bytes_read),
        "disk_write_bytes": int(engine.disk.bytes_written),
        "disk_requests": int(engine.disk.requests),
        "fsyncs": int(engine.disk.fsyncs),
        "page_cache_hit_ratio": float(hits / (hits + misses)) if hits + misses else math.nan,
        "dentry_hit_ratio": float(d_hits / (d_hits + d_misses)) if d_hits + d_misses else math.nan,
        "events": int(engine.operations),
        "containers_size_bytes": int(total["size_bytes"]),
        "docker_total_bytes": int(total["virtual_bytes"]),
        "real_bytes": int(total["real_bytes"]),
    }
    for name in ("first_write", "second_write"):
        rows = work[work["op"] == name]
        row[f"{name}_s"] = float(rows["latency_s"].mean()) if len(rows) else math.nan
    firsts = work[work["op"] == "first_write"]
    row["lookup_s"] = float(firsts["lookup_s"].mean()) if len(firsts) else math.nan
    return row
