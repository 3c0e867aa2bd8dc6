"""Where an operation of the throughput scenario spends its CPU time, by component of the model.

    python -m benchmarks.speed --breakdown               # 10,000 and 40,000 operations
    python -m benchmarks.speed --breakdown --operations 20000

Two runs of ``scenarios/bench/throughput.yaml`` (records kept in memory, as a notebook's
``simulate``), of N/4 and N operations, each in this process under :mod:`cProfile`, and the
same two without it. Per operation is the difference of the two runs over the difference of
their operations: building the image and the 64 containers, the same in both, cancels out. The
profiler's self time of each function is put in a component (see :data:`COMPONENTS`) by the
file that defines it, by its class (:data:`CLASSES`), and by its name
in sim/drivers (:data:`LOOKUP_WORDS`); a built-in function's (``bisect_right``, a NumPy call)
goes to the components of its callers, in proportion to what each caller spent in it, except
the ordered dicts' moves and evictions, which are the LRU's wherever they are called. The
shares are then applied to the per-operation CPU time measured without the profiler, whose
overhead (a few hundred nanoseconds per call) weighs small functions more than large ones: read
the shares to a few per cent. The profiler's clock is wall time (a Python CPU-time clock would
cost more than most calls); on a busy machine the time lost to other processes falls on
functions in proportion to their own time, and the unprofiled figure is CPU time. The
collector's time is not a function: it shows in whichever function allocated when it ran.
"""
from __future__ import annotations

import cProfile
import gc
import pstats
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent.parent / "scenarios" / "bench" / "throughput.yaml"
US = 1e6
# (component, what it holds, how a function's file names it): the first that matches wins.
# Components without a file are found by class or name (below).
COMPONENTS = [
    ("path lookup", "sim/fsview.py, sim/image.py, and the drivers' functions named for lookups, probes, "
     "walks, stat, paths or parents", ("sim/fsview", "sim/image")),
    ("driver plans", "the rest of sim/drivers/*: what each operation does", ("sim/drivers/",)),
    ("plans", "sim/plan.py: plan objects and steps", ("sim/plan",)),
    ("LRU", "dentry and page caches: their classes, and every OrderedDict move or eviction", ()),
    ("disk", "sim/engine.py's Disk and Transfer: the disk's sharing, alarms, requests", ()),
    ("cores and locks", "sim/engine.py's Cores, Locks, Semaphore", ()),
    ("engine step loop", "the rest of sim/engine.py: Engine.execute's loop over a plan's steps", ("sim/engine",)),
    ("host", "sim/host.py: routing, planning and recording an operation", ("sim/host",)),
    ("drawing operations", "sim/workloads.py, sim/operation.py, their random draws",
     ("sim/workloads", "sim/operation")),
    ("records", "sim/records.py and Arrow", ("sim/records", "pyarrow")),
    ("SimPy", "simpy's event loop, events and processes, and sim/engine.py's Environment", ("simpy/",)),
    ("other", "anything else", ("",)),
]
# Classes of the model and their component, in whichever file of sim/ they are (today all in
# sim/engine.py, where a class not named here is the step loop's).
CLASSES = {"LRU": "LRU", "PageCache": "LRU", "Disk": "disk", "Transfer": "disk", "Cores": "cores and locks",
                  "Locks": "cores and locks", "Semaphore": "cores and locks", "Environment": "SimPy"}
LOOKUP_WORDS = ("lookup", "probe", "resolve", "walk", "stat", "path", "parent")  # in a driver function's name
LRU_BUILTINS = ("move_to_end", "popitem")


def scenario(operations: int) -> dict:
    data = yaml.safe_load(BENCH.read_text())
    data["workload"]["operations"] = operations
    return data


def _simulate(operations: int, profiler: cProfile.Profile | None = None) -> tuple[float, int]:
    """CPU seconds of one in-process run, and the operations it executed."""
    from sim.runner import simulate
    from sim.scenario import Scenario
    point = Scenario.model_validate(scenario(operations))
    gc.collect()
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    result = simulate(point)
    if profiler is not None:
        profiler.disable()
    summary = result.summary
    return time.process_time() - started, int(summary.get("operations_executed", summary.get("events", 0)))


def _class_spans(path: str) -> list[tuple[int, int, str]]:
    """Line spans of the classes of ``path`` that CLASSES names, and their components: cProfile
    names a method without its class."""
    import ast
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError):
        return []
    return [(node.lineno, node.end_lineno or node.lineno, CLASSES[node.name]) for node in tree.body
            if isinstance(node, ast.ClassDef) and node.name in CLASSES]


def _component(function: tuple[str, int, str], spans: dict[str, list[tuple[int, int, str]]]) -> str | None:
    """The component of a Python function by its file; None for a built-in."""
    filename, line, name = function
    if filename == "~":
        lru = any(name.startswith(f"<method '{method}' of 'collections.OrderedDict'") for method in LRU_BUILTINS)
        return "LRU" if lru else None
    filename = filename.replace("\\", "/")
    if "/sim/" in filename and "/sim/drivers/" not in filename:
        if filename not in spans:
            spans[filename] = _class_spans(filename)
        owner = next((component for start, end, component in spans[filename] if start <= line <= end), None)
        if owner is not None:
            return owner
    if "sim/drivers/" in filename and any(word in name for word in LOOKUP_WORDS):
        return "path lookup"
    return next(component for component, _what, markers in COMPONENTS if any(m in filename for m in markers))


def self_times(stats: pstats.Stats) -> tuple[dict[str, float], int]:
    """Self time by component (built-ins shared among their callers' components), and the
    number of calls of Python functions (frames)."""
    spans: dict[str, list[tuple[int, int, str]]] = {}
    times = {component: 0.0 for component, _what, _markers in COMPONENTS}
    frames = 0
    raw = stats.stats  # type: ignore[attr-defined]  # {function: (cc, nc, tt, ct, callers)}
    owners = {function: _component(function, spans) for function in raw}
    for function, (_cc, calls, own, _cumulative, callers) in raw.items():
        owner = owners[function]
        if owner is not None:
            times[owner] += own
            frames += calls if function[0] != "~" else 0
            continue
        shares: dict[str, float] = {}
        for caller, edge in callers.items():
            share_owner = owners.get(caller) or "other"
            shares[share_owner] = shares.get(share_owner, 0.0) + edge[2]
        total = sum(shares.values())
        for share_owner, share in shares.items():
            times[share_owner] += own * share / total if total else 0.0
        if not total:
            times["other"] += own
    return times, frames


def breakdown(operations: int = 40_000) -> dict:
    """Per-operation CPU time by component: measured at ``operations`` and a quarter of it."""
    small = max(operations // 4, 1)
    plain = {n: min(_simulate(n)[0] for _ in range(2)) for n in (small, operations)}
    profiled = {}
    executed = {}
    for n in (small, operations):
        profiler = cProfile.Profile()  # its own clock: a Python timer (process_time) costs more than most calls
        _, executed[n] = _simulate(n, profiler)
        profiled[n] = self_times(pstats.Stats(profiler))
    ops = executed[operations] - executed[small]
    per_operation_us = US * (plain[operations] - plain[small]) / ops
    (big_times, big_frames), (small_times, small_frames) = profiled[operations], profiled[small]
    difference = {c: big_times[c] - small_times[c] for c in big_times}
    total = sum(difference.values())
    rows = [{"component": component, "what": what, "share": difference[component] / total,
             "us_per_operation": per_operation_us * difference[component] / total}
            for component, what, _markers in COMPONENTS]
    return {"operations": operations, "small": small, "us_per_operation": per_operation_us,
            "profiled_us_per_operation": US * total / ops, "frames_per_operation": (big_frames - small_frames) / ops,
            "components": rows}


def table(figures: dict) -> str:
    lines = [f"throughput scenario, per operation between {figures['small']:,} and {figures['operations']:,} "
             f"operations: {figures['us_per_operation']:.1f} us CPU without the profiler "
             f"({figures['profiled_us_per_operation']:.1f} us under it), "
             f"{figures['frames_per_operation']:.0f} Python calls per operation",
             f"{'component':<20} {'share':>6} {'us/op':>6}  what"]
    for row in sorted(figures["components"], key=lambda r: -r["share"]):
        lines.append(f"{row['component']:<20} {100 * row['share']:5.1f}% {row['us_per_operation']:6.2f}  {row['what']}")
    return "\n".join(lines)
