"""Simulator speed: CPU time per operation on the standard scenarios, beside a bare SimPy loop
doing one request/timeout/release cycle per operation, measured in the same process.

    python -m benchmarks.speed                       # the table
    python -m benchmarks.speed --json speed.json     # also save the figures
    python -m benchmarks.speed --compare old.json new.json   # two commits side by side
    python -m benchmarks.speed --breakdown           # where an operation's CPU time goes, by component

What each number counts:

- an *operation* is one the engine executed: every operation of the workload, plus the run's
  setup (image preparation, each container's creation and removal, warm-up reads); the summary's
  ``operations_executed`` column. The summary's ``ops`` (the workload's measured operations) is
  shown beside it: for the mixed workloads the two differ by the setup, for the copy-up probes
  (two measured writes per run) setup is most of the work.
- a *bare cycle* is one iteration of :func:`bare_simpy`: a process requests a ``simpy.Resource``,
  waits a timeout and releases it (three SimPy events). The loop runs as many cycles as the
  scenario executed operations, so ``cycles per operation`` (cowsim's CPU microseconds per
  operation over the bare loop's per cycle) compares like with like: how many bare SimPy cycles
  of CPU one simulated operation costs. (Before issue 16 the loop was sized by the disk
  requests and compared with plans executed: per request, not per operation.)

Times are the CPU time of this process (``time.process_time``), best of ``--repeat``: the
simulator runs in one process, and CPU time is far less disturbed than wall time by whatever
else runs on the machine. Cycles per operation is what to compare between commits measured on
different machines: it divides out the speed of the machine and of the interpreter.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import simpy

from sim.api import load_scenario, run_scenario
from sim.results import environment

SCENARIOS = Path(__file__).parent / "scenarios"
US = 1e6


def bare_simpy(cycles: int, workers: int = 8, capacity: int = 32, service_s: float = 1e-4) -> float:
    """CPU seconds of a SimPy loop in which ``workers`` processes share ``cycles`` iterations of
    request a Resource, wait a timeout, release."""
    env = simpy.Environment()
    disk = simpy.Resource(env, capacity=capacity)

    def worker(count: int):
        for _ in range(count):
            with disk.request() as request:
                yield request
                yield env.timeout(service_s)

    share, extra = divmod(cycles, workers)
    started = time.process_time()
    for index in range(workers):
        env.process(worker(share + (index < extra)))
    env.run()
    return time.process_time() - started


def measure(source: str | Path | dict, repeat: int = 3) -> dict:
    """Best-of-``repeat`` CPU time of one scenario, and of a bare SimPy loop of one cycle per
    operation the scenario executed."""
    data, origin = load_scenario(source)
    times, bare_times = [], []
    for _ in range(repeat):
        started = time.process_time()
        result = run_scenario(data)
        times.append(time.process_time() - started)
        summary = result.summary.rename(columns={"events": "operations_executed"})  # its name before issue 16
        operations = int(summary["operations_executed"].sum())
        bare_times.append(bare_simpy(operations))
    return figures_of(result.name, origin, int(result.manifest["points"]), len(summary), operations,
               int(summary["ops"].sum()), int(summary["disk_requests"].sum()), min(times), min(bare_times))


def figures_of(scenario: str, source: str, points: int, runs: int, operations: int, measured_ops: int,
        disk_requests: int, cpu: float, bare: float) -> dict:
    """The figures of one scenario (or of all: their sums) from its counts and CPU times."""
    us_per_operation, bare_us_per_cycle = US * cpu / operations, US * bare / operations
    return {"scenario": scenario, "source": source, "points": points, "runs": runs, "operations": operations,
            "measured_ops": measured_ops, "disk_requests": disk_requests,
            "disk_requests_per_operation": disk_requests / operations, "cpu_s": cpu,
            "us_per_operation": us_per_operation, "ops_per_s": operations / cpu, "points_per_s": points / cpu,
            "bare_cpu_s": bare, "bare_us_per_cycle": bare_us_per_cycle,
            "cycles_per_operation": us_per_operation / bare_us_per_cycle}


def table(rows: list[dict]) -> str:
    header = ["scenario", "points", "measured ops", "operations", "CPU time", "us/operation", "operations/s",
              "points/s", "disk requests/operation", "bare SimPy us/cycle", "cycles/operation"]
    cells = [[row["scenario"], str(row["points"]), f"{row['measured_ops']:,}", f"{row['operations']:,}",
              f"{row['cpu_s']:.3f} s", f"{row['us_per_operation']:.1f}", f"{row['ops_per_s']:,.0f}",
              f"{row['points_per_s']:,.1f}", f"{row['disk_requests_per_operation']:.2f}",
              f"{row['bare_us_per_cycle']:.2f}", f"{row['cycles_per_operation']:.1f}"]
             for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [header, *cells])


def totals(rows: list[dict]) -> dict:
    def total(key: str):
        return sum(r[key] for r in rows)
    return figures_of("all", "", total("points"), total("runs"), total("operations"), total("measured_ops"),
               total("disk_requests"), total("cpu_s"), total("bare_cpu_s"))


def compare_files(old: Path, new: Path) -> str:
    """Per scenario: new/old of operations per CPU second, and of bare cycles per operation
    (machine-neutral: old/new above 1 is a speed-up)."""
    before = {row["scenario"]: row for row in json.loads(old.read_text())["scenarios"]}
    after = {row["scenario"]: row for row in json.loads(new.read_text())["scenarios"]}
    lines = [f"{'scenario':<32} {'ops/s old':>12} {'ops/s new':>12} {'new/old':>8} {'cycles/op old':>14} "
             f"{'cycles/op new':>14} {'speed-up':>9}"]
    for name in [n for n in after if n in before]:
        a, b = before[name], after[name]
        lines.append(f"{name:<32} {a['ops_per_s']:>12,.0f} {b['ops_per_s']:>12,.0f} "
                     f"{b['ops_per_s'] / a['ops_per_s']:>8.2f} "
                     f"{a['cycles_per_operation']:>14.1f} {b['cycles_per_operation']:>14.1f} "
                     f"{a['cycles_per_operation'] / b['cycles_per_operation']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"scenario files (default: {SCENARIOS}/*.yaml)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the best counts (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two --json files")
    parser.add_argument("--breakdown", action="store_true",
                        help="the throughput scenario's CPU time per operation by component, and the flat loop's floor")
    parser.add_argument("--operations", type=int, default=40_000, help="with --breakdown: operations of the "
                        "larger run (default 40,000)")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare_files(*args.compare))
        return 0
    if args.breakdown:
        from benchmarks import breakdown, floor
        figures = {"breakdown": breakdown.breakdown(args.operations)}
        figures["floor"] = floor.measure(args.operations, args.repeat, since=figures["breakdown"]["small"])
        print(breakdown.table(figures["breakdown"]))
        print(f"floor (benchmarks.floor: the same mechanism work in one flat loop, per operation between "
              f"{figures['breakdown']['small']:,} and {args.operations:,} operations): "
              f"{figures['floor']['us_per_operation']:.2f} us")
        if args.json:
            args.json.write_text(json.dumps({"environment": environment(), **figures}, indent=1) + "\n")
        return 0
    paths = [Path(p) for p in args.scenarios] or sorted(SCENARIOS.glob("*.yaml"))
    rows = [measure(path, args.repeat) for path in paths]
    rows.append(totals(rows))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "repeat": args.repeat, "scenarios": rows},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
