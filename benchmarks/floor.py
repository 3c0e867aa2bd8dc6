"""The floor: what the mechanism work of one operation of the throughput scenario costs when
written as one flat Python loop, with no engine, plans, drivers, generators or SimPy.

    python -m benchmarks.floor                      # 200,000 operations, best of 3
    python -m benchmarks.floor --operations 50000 --repeat 1

Per operation, on the throughput scenario's own image (``scenarios/bench/throughput.yaml``:
19,127 files of 10 layers, 64 containers), operation mix, Zipf file choice, request size, page
cache block and disk figures (the ssd profile):

1. draw the operation: its kind (a uniform draw bisected into the mix's CDF) and its file (a
   Zipf rank bisected, or one of the container's own new files; a create names a new file in a
   random directory of the image);
2. look the path up: first among the container's own changes (a dict per container), then in
   the image's path table (one dict for all containers: path -> inode, size, component ids);
3. LRU touches: one dentry per path component (keyed by container and component; a miss also
   touches one probe dentry per image layer and the upper directory), then the request's
   page-cache block (keyed by inode and block) unless it is a stat; an exact LRU (an
   OrderedDict: move to the end on a hit, insert and evict the oldest on a miss);
4. disk service time: a page-cache miss of a read, or a first write's copy-up of the whole
   file, is served by one queue (start at the later of now and the disk's free time, latency
   plus bytes over bandwidth);
5. append the operation's record (a tuple) to a list.

The model does more than this (each layer's probes on a dentry miss, locks, the cores, the
disk's processor sharing, whiteouts and directories of the upper layer, latencies per phase,
its records' columns); the floor says what the same *kind* of work costs the interpreter
without the architecture around it. Time is CPU time of this process (``time.process_time``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from bisect import bisect_right
from collections import OrderedDict
from pathlib import Path
from random import Random

import numpy as np

US = 1e6
BENCH = Path(__file__).resolve().parent.parent / "scenarios" / "bench" / "throughput.yaml"


def setup(operations: int) -> dict:
    """The throughput scenario's image as a path table, and its mix, cache and disk figures."""
    import yaml

    from sim.profile import load_profile
    from sim.runner import build_image
    from sim.scenario import Mix, Scenario
    data = yaml.safe_load(BENCH.read_text())
    data["workload"]["operations"] = operations
    scenario = Scenario.model_validate(data)
    image, files = build_image(scenario.image, scenario.seed, 0)
    profile = load_profile(scenario.profile)
    component_ids: dict[str, int] = {}
    table = {}
    for inode, path in enumerate(files):
        parts = path.split("/")
        components = tuple(component_ids.setdefault("/".join(parts[:i + 1]), len(component_ids))
                           for i in range(len(parts)))
        table[path] = (inode, image.merged[path][1], components)
    dirs = sorted({path.rsplit("/", 1)[0] for path in files})
    dir_components = {d: tuple(component_ids[p] for p in ("/".join(d.split("/")[:i + 1])
                                                          for i in range(d.count("/") + 1))) for d in dirs}
    mix = scenario.workload
    assert isinstance(mix, Mix)
    weights = np.array(list(mix.ops.values()), dtype=np.float64)
    zipf = 1.0 / np.arange(1, len(files) + 1) ** mix.zipf_s
    rank_cdf = np.cumsum(zipf / zipf.sum()).tolist()
    rank_cdf[-1] = 1.0
    ranked = [files[i] for i in np.random.default_rng(scenario.seed).permutation(len(files))]
    return {"table": table, "ranked": ranked, "rank_cdf": rank_cdf, "dirs": dirs, "dir_components": dir_components,
            "kinds": list(mix.ops), "op_cdf": np.cumsum(weights / weights.sum()).tolist(),
            "containers": scenario.containers.count, "request": mix.request_size, "block": profile.cache_block,
            "pages": profile.page_cache // profile.cache_block, "dentries": profile.dentry_cache,
            "read_s": (profile.disk.read_latency, profile.disk.read_bandwidth),
            "write_s": (profile.disk.write_latency, profile.disk.write_bandwidth),
            "layers": len(image.layers), "next_component": len(component_ids), "next_inode": len(files)}


def flat_loop(world: dict, operations: int, seed: int = 7) -> dict:
    """Run ``operations`` operations in one loop; CPU seconds and what the loop did."""
    table, ranked, rank_cdf, dirs = world["table"], world["ranked"], world["rank_cdf"], world["dirs"]
    dir_components, kinds, op_cdf = world["dir_components"], world["kinds"], world["op_cdf"]
    containers, request, block = world["containers"], world["request"], world["block"]
    page_capacity, dentry_capacity = world["pages"], world["dentries"]
    (read_latency, read_bandwidth), (write_latency, write_bandwidth) = world["read_s"], world["write_s"]
    next_component, next_inode = world["next_component"], world["next_inode"]
    probes = world["layers"] + 1
    random = Random(seed).random
    uppers: list[dict] = [{} for _ in range(containers)]  # each container's own changes: path -> entry
    created: list[list[str]] = [[] for _ in range(containers)]
    dentries: OrderedDict = OrderedDict()
    pages: OrderedDict = OrderedDict()
    records = []
    pool = len(ranked)
    now = disk_free = 0.0
    touches = disk_waits = dentry_hits = page_hits = pages_asked = lookups = 0
    started = time.process_time()
    for index in range(operations):
        cid = index % containers
        kind = kinds[bisect_right(op_cdf, random())]
        upper = uppers[cid]
        own = created[cid]
        if kind == "create":
            parent = dirs[int(random() * len(dirs))]
            path = f"{parent}/c{cid}n{index}"
            entry = upper[path] = (next_inode, 0, (*dir_components[parent], next_component))
            next_inode += 1
            next_component += 1
            own.append(path)
        else:
            if own and random() < len(own) / (pool + len(own)):
                path = own[int(random() * len(own))]
            else:
                path = ranked[bisect_right(rank_cdf, random())]
            entry = upper.get(path) or table[path]
        inode, size, components = entry
        start = end = now
        base = cid << 40
        for component in components:  # one dentry per component
            key = base | component
            if key in dentries:
                dentries.move_to_end(key)
                dentry_hits += 1
            else:  # a miss probes each layer (and the upper directory): a dentry each
                for probe in range(probes):
                    probe_key = key | (probe + 1) << 32
                    if probe_key in dentries:
                        dentries.move_to_end(probe_key)
                    else:
                        dentries[probe_key] = None
                touches += probes
                dentries[key] = None
                while len(dentries) > dentry_capacity:
                    dentries.popitem(last=False)
        touches += len(components)
        lookups += len(components)
        service = 0.0
        if kind != "stat":
            offset = size if kind == "append" else 0
            key = inode << 24 | offset // block  # the request's page-cache block
            touches += 1
            pages_asked += 1
            if key in pages:
                pages.move_to_end(key)
                page_hits += 1
            else:
                pages[key] = None
                if len(pages) > page_capacity:
                    pages.popitem(last=False)
                if kind == "read":
                    service += read_latency + block / read_bandwidth
            if kind in ("write", "append") and path not in upper:  # first write: copy the file up
                service += read_latency + size / read_bandwidth + write_latency + size / write_bandwidth
                upper[path] = (next_inode, size + (request if kind == "append" else 0), components)
                next_inode += 1
        if service:
            disk_waits += 1
            start = disk_free if disk_free > now else now
            end = disk_free = start + service
        records.append((cid, kind, path, request, now, end))
        now += 1e-6
    cpu = time.process_time() - started
    return {"operations": operations, "cpu_s": cpu, "us_per_operation": US * cpu / operations,
            "lru_touches_per_operation": touches / operations, "disk_waits_share": disk_waits / operations,
            "dentry_hit_ratio": dentry_hits / lookups, "page_cache_hit_ratio": page_hits / pages_asked,
            "records": len(records)}


def measure(operations: int = 200_000, repeat: int = 3, since: int = 0) -> dict:
    """Best of ``repeat`` flat loops over the same scenario (each from empty caches). With
    ``since``, per operation is between ``since`` and ``operations`` operations (the difference
    of two loops' CPU times over that of their operations), as :mod:`benchmarks.breakdown`
    measures the model: the first operations, with emptier caches, cost more."""
    world = setup(operations)
    best = min((flat_loop(world, operations) for _ in range(repeat)), key=lambda run: run["cpu_s"])
    if since:
        first = min(flat_loop(world, since)["cpu_s"] for _ in range(repeat))
        best["since"] = since
        best["us_per_operation"] = US * (best["cpu_s"] - first) / (operations - since)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=200_000, help="operations per loop (default 200,000)")
    parser.add_argument("--repeat", type=int, default=3, help="loops; the best counts (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    row = measure(args.operations, args.repeat)
    print(f"floor: {row['us_per_operation']:.2f} us CPU per operation in one flat Python loop "
          f"({row['operations']:,} operations of the throughput scenario, best of {args.repeat}; "
          f"{row['lru_touches_per_operation']:.2f} LRU touches per operation, dentry hit ratio "
          f"{row['dentry_hit_ratio']:.2f}, page-cache hit ratio {row['page_cache_hit_ratio']:.2f}, "
          f"{100 * row['disk_waits_share']:.0f} % of operations wait for the disk)")
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
