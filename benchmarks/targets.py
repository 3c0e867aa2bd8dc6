"""The speed and scale targets of issues 7 and 16, each measured and printed with its figure.

    python -m benchmarks.targets                 # every target, full size (tens of minutes)
    python -m benchmarks.targets --quick         # the same code at small sizes (a minute or two)
    python -m benchmarks.targets throughput memory --json targets.json
    python -m benchmarks.targets --against ../before   # this tree against another commit's checkout

- against (issue 16): ``scenarios/bench/throughput.yaml`` at 200,000 operations end to end,
  measured alternately in this tree and in another commit's checkout (best of two each, CPU
  time), and the ratio of operations per CPU second, with PASS or FAIL against the issue's
  >= 2x over 76ad731; the copy-up points of a file-size sweep beside it.
- throughput: ``scenarios/bench/throughput.yaml`` end to end (validation, simulation, writing
  the run folder), simulated operations per second of wall time on one core, beside the rate of
  the bare SimPy loop of :func:`benchmarks.speed.bare_simpy` measured in the same process (one
  request/timeout/release cycle per operation), and their ratio (issue 7's targets, >= 100,000
  ops/s and a ratio >= 1.5, were withdrawn by issue 16: less than one SimPy cycle per operation).
- sweep: ``scenarios/copyup_sweep.yaml``, 8 drivers x 7 file sizes x 8 layer depths x 7
  directory depths x 3 replicates = 9,408 runs, on 2 worker processes (target: <= 60 s).
- memory: a 10,000,000-operation run of the throughput scenario with its records streamed to
  parquet, peak resident memory of the process (target: < 1 GiB): the point alone through
  :func:`sim.runner.simulate`, the whole run through :func:`sim.api.run_scenario` (what
  ``cowsim run -o DIR --no-report`` does: run folder, ops.parquet, summary), and the same
  without a run folder (as a notebook calls it: its operations in a temporary folder).
- scale: 1,000 containers over a 100,000-file image; then time and peak memory as operations,
  containers and image files double, each from a base point with the other two fixed
  (figure: ``docs/scale.png``).

Every measurement of time or memory runs in a fresh child process, so that one does not inherit
another's heap; figures are wall time unless stated (CPU time is printed too: the machine may
be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scenarios" / "bench"
TARGETS = ("throughput", "sweep", "memory", "scale")
GIB = 2**30
TARGET_SPEEDUP = 2.0  # issue 16: >= 2x the operations per CPU second of 76ad731


def scenario(name: str, **changes) -> dict:
    """A benchmark scenario with dotted fields changed (``workload.operations=...``)."""
    from sim.scenario import set_dotted
    data = yaml.safe_load((BENCH / f"{name}.yaml").read_text())
    for dotted, value in changes.items():
        set_dotted(data, dotted, value)
    return data


# -- one measurement in a child process ------------------------------------------------------------

def child(kind: str, data: dict, source: Path | None = None, **options) -> dict:
    """Run ``kind`` on scenario ``data`` in a fresh interpreter; its figures as a dict.
    ``source``: a checkout of another commit whose ``sim`` is measured instead of this one."""
    request = json.dumps({"kind": kind, "data": data, "options": options})
    if source is None:
        command, env = [sys.executable, "-m", "benchmarks.targets", "--child"], None
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--child"]
        env = {**os.environ, "PYTHONPATH": str(Path(source).resolve())}
    done = subprocess.run(command, input=request, text=True, capture_output=True, cwd=source or ROOT, env=env)
    if done.returncode:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main() -> None:
    request = json.loads(sys.stdin.read())
    kind, data, options = request["kind"], request["data"], request["options"]
    measures: dict[str, Callable[..., dict]] = {"throughput": _throughput, "sweep": _sweep, "simulate": _simulate,
                                                "run": _run, "api": _api, "points": _points, "idle": _idle}
    figures = measures[kind](data, **options)
    figures["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(figures))


def _throughput(data: dict, bare_events: int) -> dict:
    """End to end through the API, writing the run folder; then the bare SimPy loop, same process."""
    from benchmarks.speed import bare_simpy
    from sim.api import run_scenario
    with tempfile.TemporaryDirectory() as scratch:
        wall, cpu = time.perf_counter(), time.process_time()
        result = run_scenario(data, out=Path(scratch) / "run")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    operations = int(result.summary["ops"].sum())
    bare_cpu = time.process_time()
    bare_wall = bare_simpy(bare_events)
    bare_cpu = time.process_time() - bare_cpu
    return {"operations": operations, "wall_s": wall, "cpu_s": cpu, "ops_per_s": operations / wall,
            "ops_per_cpu_s": operations / cpu, "bare_events": bare_events, "bare_wall_s": bare_wall,
            "bare_per_s": bare_events / bare_wall, "bare_per_cpu_s": bare_events / bare_cpu}


def _sweep(data: dict, jobs: int) -> dict:
    """The sweep through the API on ``jobs`` worker processes, writing its run folder. Besides
    the wall time, the CPU seconds of the parent and of the workers: on a shared machine, what
    the sweep would take on ``jobs`` idle cores is about their sum over ``jobs``."""
    import multiprocessing
    from sim.api import run_scenario
    with tempfile.TemporaryDirectory() as scratch:
        wall, cpu = time.perf_counter(), time.process_time()
        result = run_scenario(data, out=Path(scratch) / "run", jobs=jobs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for worker in multiprocessing.active_children():  # reap the pool so that its CPU time is counted
        worker.join(timeout=30)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = children.ru_utime + children.ru_stime
    return {"runs": len(result.summary), "jobs": jobs, "wall_s": wall, "parent_cpu_s": cpu,
            "workers_cpu_s": workers_cpu, "idle_cores_estimate_s": (cpu + workers_cpu) / jobs,
            "runs_per_s": len(result.summary) / wall}


def _points(data: dict) -> dict:
    """Every point x replicate of a sweep through :func:`sim.runner.simulate`, one after another."""
    from sim.api import validate
    from sim.runner import simulate
    points = validate(data)
    wall, cpu = time.perf_counter(), time.process_time()
    runs = 0
    for _values, point in points:
        for replicate in range(point.replicates):
            simulate(point, replicate)
            runs += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"runs": runs, "wall_s": wall, "cpu_s": cpu, "ms_per_run": 1000 * wall / runs,
            "cpu_ms_per_run": 1000 * cpu / runs}


def _idle(data: dict) -> dict:
    """Nothing but the imports: the floor of every child's peak memory."""
    import sim.api  # noqa: F401
    import sim.runner  # noqa: F401
    return {}


def _simulate(data: dict, stream_ops: bool) -> dict:
    """One point through :func:`sim.runner.simulate`; records streamed to parquet or kept in memory."""
    from sim.runner import simulate
    from sim.scenario import Scenario
    point = Scenario.model_validate(data)
    with tempfile.TemporaryDirectory() as scratch:
        ops_path = Path(scratch) / "ops.parquet" if stream_ops else None
        wall, cpu = time.perf_counter(), time.process_time()
        result = simulate(point, 0, ops_path=ops_path)
        written = ops_path.stat().st_size if ops_path else 0
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"operations": result.summary["ops"], "wall_s": wall, "cpu_s": cpu,
            "ops_per_s": result.summary["ops"] / wall, "ops_parquet_bytes": written,
            "real_bytes": result.summary["real_bytes"],
            "containers_size_bytes": result.summary["containers_size_bytes"]}


def _run(data: dict) -> dict:
    """The scenario through the API into a run folder, as ``cowsim run -o DIR --no-report``."""
    import pyarrow.parquet as pq
    from sim.api import run_scenario
    with tempfile.TemporaryDirectory() as scratch:
        wall, cpu = time.perf_counter(), time.process_time()
        result = run_scenario(data, out=Path(scratch) / "run")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        ops = Path(scratch) / "run" / "ops.parquet"
        written, records = ops.stat().st_size, pq.read_metadata(ops).num_rows
        operations = int(result.summary["ops"].sum())
    return {"operations": operations, "records": records, "wall_s": wall, "cpu_s": cpu,
            "ops_per_s": operations / wall, "ops_parquet_bytes": written}


def _api(data: dict) -> dict:
    """The scenario through the Python API without a run folder (``sim.run_scenario(data)``), as
    a notebook calls it; its temporary files go to a private folder, checked empty once the
    result is gone."""
    import gc
    from sim.api import run_scenario
    with tempfile.TemporaryDirectory(prefix="cowsim-bench-") as private:
        tempfile.tempdir = private  # where the API's temporary folders go
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            result = run_scenario(data)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            operations, records = int(result.summary["ops"].sum()), result.operations
            written = sum(f.stat().st_size for f in Path(private).rglob("*") if f.is_file())
            del result
            gc.collect()
            left = sorted(str(path) for path in Path(private).iterdir())
        finally:
            tempfile.tempdir = None
    return {"operations": operations, "records": records, "wall_s": wall, "cpu_s": cpu,
            "ops_per_s": operations / wall, "ops_parquet_bytes": written, "temporaries_left": left}


# -- the targets -----------------------------------------------------------------------------------

def throughput(quick: bool) -> dict:
    operations = 100_000 if quick else 1_000_000
    row = child("throughput", scenario("throughput", **{"workload.operations": operations}),
                bare_events=operations)
    row["ratio"] = row["ops_per_s"] / row["bare_per_s"]
    row["ratio_cpu"] = row["ops_per_cpu_s"] / row["bare_per_cpu_s"]
    print(f"throughput: {row['operations']:,} ops in {row['wall_s']:.1f} s wall ({row['cpu_s']:.1f} s CPU): "
          f"{row['ops_per_s']:,.0f} ops/s; bare SimPy loop {row['bare_per_s']:,.0f} request/timeout/release "
          f"cycles/s; ratio {row['ratio']:.2f} (by CPU time {row['ratio_cpu']:.2f}); issue 7's targets (100,000 "
          f"ops/s, ratio 1.5) withdrawn by issue 16, whose target is --against 76ad731")
    return row


def sweep(quick: bool) -> dict:
    data = yaml.safe_load((ROOT / "scenarios" / "copyup_sweep.yaml").read_text())
    if quick:
        data["sweep"] = {"driver.name": data["sweep"]["driver.name"], "image.file_size": ["4KiB", "1GiB"],
                         "image.layers": [1, 125], "image.dir_depth": [0, 32]}
    row = child("sweep", data, jobs=2)
    print(f"sweep: {row['runs']:,} runs in {row['wall_s']:.1f} s wall on {row['jobs']} worker processes "
          f"({row['runs_per_s']:,.0f} runs/s; target 9,408 runs in <= 60 s); CPU: parent {row['parent_cpu_s']:.1f} s, "
          f"workers {row['workers_cpu_s']:.1f} s, i.e. about {row['idle_cores_estimate_s']:.1f} s on "
          f"{row['jobs']} idle cores")
    return row


def memory(quick: bool) -> dict:
    operations = 1_000_000 if quick else 10_000_000
    data = scenario("throughput", **{"workload.operations": operations})
    measured: list[tuple[str, str, dict[str, Any]]] = [("streamed", "simulate", {"stream_ops": True}),
                                                       ("run folder", "run", {}), ("API, no folder", "api", {})]
    if quick:
        measured.append(("in memory", "simulate", {"stream_ops": False}))
    rows = {}
    for label, kind, options in measured:
        row = rows[label] = child(kind, data, **options)
        print(f"memory ({label}): {row['operations']:,} ops, peak RSS {row['peak_rss_bytes'] / GIB:.2f} GiB "
              f"(target < 1 GiB), {row['wall_s']:.0f} s wall, ops.parquet {row['ops_parquet_bytes'] / 2**20:.0f} MiB"
              + (f"; temporary files left behind: {', '.join(row['temporaries_left'])}"
                 if row.get("temporaries_left") else ""))
    return rows


SCALE_BASE = {"containers": 125, "files": 12_500, "operations": 50_000}


def scale_point(containers: int, files: int, operations: int) -> dict:
    data = scenario("scale", **{"containers.count": containers, "image.files_per_layer": files // 10,
                                "workload.operations": operations})
    row = child("simulate", data, stream_ops=True)
    row.update(containers=containers, files=files)
    return row


def scale(quick: bool) -> dict:
    big = (100, 10_000, 20_000) if quick else (1_000, 100_000, 200_000)
    top = scale_point(*big)
    print(f"scale: {big[0]:,} containers over a {big[1]:,}-file image, {top['operations']:,} ops: "
          f"{top['wall_s']:.1f} s wall, peak RSS {top['peak_rss_bytes'] / 2**20:.0f} MiB")
    factors = (1, 2) if quick else (1, 2, 4, 8)
    base = {k: (v // 8 if quick else v) for k, v in SCALE_BASE.items()}
    curves: dict[str, list] = {}
    for axis in ("operations", "containers", "files"):
        curves[axis] = []
        for factor in factors:
            point = dict(base, **{axis: base[axis] * factor})
            row = scale_point(point["containers"], point["files"], point["operations"])
            row["factor"] = factor
            curves[axis].append(row)
            print(f"  x{factor} {axis:<10}: {row['wall_s']:6.2f} s wall, {row['cpu_s']:6.2f} s CPU, "
                  f"peak RSS {row['peak_rss_bytes'] / 2**20:6.0f} MiB")
        first, last = curves[axis][0], curves[axis][-1]
        print(f"  {axis}: x{factors[-1]} costs x{last['cpu_s'] / first['cpu_s']:.2f} CPU time, "
              f"x{last['peak_rss_bytes'] / first['peak_rss_bytes']:.2f} peak memory")
    idle = child("idle", {})["peak_rss_bytes"]
    print(f"  (an interpreter that only imports cowsim peaks at {idle / 2**20:.0f} MiB)")
    return {"top": top, "base": base, "curves": curves, "idle_rss_bytes": idle}


def plot_scale(figures: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, rows in figures["curves"].items():
        factors = [r["factor"] for r in rows]
        left.plot(factors, [r["cpu_s"] for r in rows], marker="o", label=f"{axis} x factor")
        right.plot(factors, [r["peak_rss_bytes"] / 2**20 for r in rows], marker="o", label=f"{axis} x factor")
    if "idle_rss_bytes" in figures:
        right.axhline(figures["idle_rss_bytes"] / 2**20, color="k", ls=":", label="imports alone")
        right.legend(fontsize=8)
    operations = figures["curves"]["operations"]
    factors = [r["factor"] for r in operations]
    left.plot(factors, [operations[0]["cpu_s"] * f for f in factors], "k:", label="proportional to operations")
    base = figures["base"]
    for ax, label in ((left, "CPU time [s]"), (right, "peak resident memory [MiB]")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(factors, [f"x{f}" for f in factors])
        ax.set_xlabel(f"factor over the base ({base['containers']} containers, {base['files']:,} files, "
                      f"{base['operations']:,} ops)", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    left.set_yscale("log", base=2)
    left.legend(fontsize=8)
    right.set_ylim(bottom=0)
    fig.suptitle("cowsim cost as operations, containers and image files double (overlay2, ssd)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def against(source: Path, quick: bool, repeat: int = 2, operations: int | None = None) -> dict:
    """Before/after in one run: the same throughput and copy-up points, measured alternately
    under ``source`` (another commit's checkout) and this tree; best of ``repeat`` each."""
    operations = operations or (50_000 if quick else 200_000)
    mix = scenario("throughput", **{"workload.operations": operations})
    probes = yaml.safe_load((ROOT / "scenarios" / "copyup_file_size.yaml").read_text())
    probes["sweep"].update({"image.layers": [1, 16, 125], "image.dir_depth": [1, 8]})
    rows: dict[str, dict[str, list]] = {"before": {"mix": [], "points": []}, "after": {"mix": [], "points": []}}
    for _ in range(repeat):
        for label, tree in (("before", source), ("after", None)):
            rows[label]["mix"].append(child("throughput", mix, tree, bare_events=operations))
            rows[label]["points"].append(child("points", probes, tree))
    best = {label: {"mix": min(r["mix"], key=lambda x: x["cpu_s"]),
                    "points": min(r["points"], key=lambda x: x["cpu_s"])} for label, r in rows.items()}
    b, a = best["before"], best["after"]
    speedup = a["mix"]["ops_per_cpu_s"] / b["mix"]["ops_per_cpu_s"]
    figures = {"source": str(source), "operations": operations, "runs": a["points"]["runs"], "best": best,
               "mix_speedup_cpu": speedup, "mix_speedup_wall": b["mix"]["wall_s"] / a["mix"]["wall_s"],
               "points_speedup_cpu": b["points"]["cpu_s"] / a["points"]["cpu_s"],
               "points_speedup_wall": b["points"]["wall_s"] / a["points"]["wall_s"],
               "target_speedup": TARGET_SPEEDUP, "target_met": speedup >= TARGET_SPEEDUP}
    print(f"against {source}, alternately, best of {repeat} each (CPU time of fresh child processes):\n"
          f"  throughput scenario (scenarios/bench/throughput.yaml, {operations:,} ops, end to end; before: "
          f"{source}, after: {ROOT}):\n"
          f"    before:    {b['mix']['ops_per_cpu_s']:>9,.0f} ops per CPU second ({b['mix']['cpu_s']:.1f} s)\n"
          f"    after:     {a['mix']['ops_per_cpu_s']:>9,.0f} ops per CPU second ({a['mix']['cpu_s']:.1f} s)\n"
          f"    ratio x{speedup:.2f} ops per CPU second (wall x{figures['mix_speedup_wall']:.2f}); "
          f"issue 16's target >= x{TARGET_SPEEDUP:.0f}: {'PASS' if figures['target_met'] else 'FAIL'}\n"
          f"  copy-up points ({a['points']['runs']} runs): {b['points']['cpu_ms_per_run']:.2f} -> "
          f"{a['points']['cpu_ms_per_run']:.2f} CPU ms per run, x{figures['points_speedup_cpu']:.2f} "
          f"(wall x{figures['points_speedup_wall']:.2f})")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.targets", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to measure: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the code, not the targets")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "scale.png", help="where the scale figure goes")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT",
                        help="before/after: also measure another commit's checkout (git worktree add DIR REV)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main()
        return 0
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r}: use {', '.join(TARGETS)}")
    from sim.results import environment
    figures = {"environment": environment(), "quick": args.quick}
    if args.against:
        figures["against"] = against(args.against, args.quick)
    for target in args.targets or ([] if args.against else TARGETS):
        figures[target] = globals()[target](args.quick)
    if "scale" in figures:
        plot_scale(figures["scale"], args.figure)
        print(f"scale figure: {args.figure}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
