"""Simulator speed: simulated operations and sweep points per second on the standard scenarios,
beside a bare SimPy loop doing as many disk events (request a Resource, timeout, release),
measured in the same process, and the ratio of the two.

    python -m benchmarks.speed                       # the table
    python -m benchmarks.speed --json speed.json     # also save the figures
    python -m benchmarks.speed --compare old.json new.json   # two commits side by side

Times are the CPU time of this process (``time.process_time``), best of ``--repeat``: the
simulator runs in one process, and CPU time is far less disturbed than wall time by whatever
else runs on the machine. The ratio to the bare loop is what to compare between commits
measured on different machines: it divides out the speed of the machine and of the interpreter.
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


def bare_simpy(events: int, workers: int = 8, capacity: int = 32, service_s: float = 1e-4) -> float:
    """CPU seconds of a SimPy loop in which ``workers`` processes share ``events`` disk requests."""
    env = simpy.Environment()
    disk = simpy.Resource(env, capacity=capacity)

    def worker(count: int):
        for _ in range(count):
            with disk.request() as request:
                yield request
                yield env.timeout(service_s)

    share, extra = divmod(events, workers)
    started = time.process_time()
    for index in range(workers):
        env.process(worker(share + (index < extra)))
    env.run()
    return time.process_time() - started


def measure(source: str | Path | dict, repeat: int = 3) -> dict:
    """Best-of-``repeat`` CPU time of one scenario and of a bare SimPy loop with as many disk events."""
    data, origin = load_scenario(source)
    times, bare_times = [], []
    for _ in range(repeat):
        started = time.process_time()
        result = run_scenario(data)
        times.append(time.process_time() - started)
        disk_events = int(result.summary["disk_requests"].sum())
        bare_times.append(bare_simpy(disk_events))
    cpu, bare = min(times), min(bare_times)
    operations = int(result.summary["events"].sum())
    points = int(result.manifest["points"])
    return {"scenario": result.name, "source": origin, "points": points, "runs": len(result.summary),
            "operations": operations, "disk_events": disk_events, "cpu_s": cpu, "ops_per_s": operations / cpu,
            "points_per_s": points / cpu, "bare_cpu_s": bare, "bare_events_per_s": disk_events / bare,
            "sim_events_per_s": disk_events / cpu, "slowdown_vs_bare": cpu / bare}


def table(rows: list[dict]) -> str:
    header = ["scenario", "points", "operations", "CPU time", "ops/s", "points/s", "disk events",
              "bare SimPy events/s", "cowsim disk events/s", "x slower than bare"]
    cells = [[row["scenario"], str(row["points"]), f"{row['operations']:,}", f"{row['cpu_s']:.3f} s",
              f"{row['ops_per_s']:,.0f}", f"{row['points_per_s']:,.1f}", f"{row['disk_events']:,}",
              f"{row['bare_events_per_s']:,.0f}", f"{row['sim_events_per_s']:,.0f}", f"{row['slowdown_vs_bare']:.1f}"]
             for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [header, *cells])


def totals(rows: list[dict]) -> dict:
    cpu, bare = sum(r["cpu_s"] for r in rows), sum(r["bare_cpu_s"] for r in rows)
    events = sum(r["disk_events"] for r in rows)
    return {"scenario": "all", "points": sum(r["points"] for r in rows),
            "operations": sum(r["operations"] for r in rows),
            "disk_events": events, "cpu_s": cpu, "ops_per_s": sum(r["operations"] for r in rows) / cpu,
            "points_per_s": sum(r["points"] for r in rows) / cpu, "bare_cpu_s": bare,
            "bare_events_per_s": events / bare, "sim_events_per_s": events / cpu, "slowdown_vs_bare": cpu / bare}


def compare_files(old: Path, new: Path) -> str:
    """Per scenario: new/old of ops/s, and of the slowdown against the bare loop (machine-neutral)."""
    before = {row["scenario"]: row for row in json.loads(old.read_text())["scenarios"]}
    after = {row["scenario"]: row for row in json.loads(new.read_text())["scenarios"]}
    lines = [f"{'scenario':<32} {'ops/s old':>12} {'ops/s new':>12} {'new/old':>8} {'vs bare old':>12} "
             f"{'vs bare new':>12} {'speed-up':>9}"]
    for name in [n for n in after if n in before]:
        a, b = before[name], after[name]
        lines.append(f"{name:<32} {a['ops_per_s']:>12,.0f} {b['ops_per_s']:>12,.0f} "
                     f"{b['ops_per_s'] / a['ops_per_s']:>8.2f} "
                     f"{a['slowdown_vs_bare']:>12.1f} {b['slowdown_vs_bare']:>12.1f} "
                     f"{a['slowdown_vs_bare'] / b['slowdown_vs_bare']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"scenario files (default: {SCENARIOS}/*.yaml)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the best counts (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two --json files")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare_files(*args.compare))
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
