"""How the disk shares its bandwidth: makespan and mean latency of 1..64 concurrent transfers on
each built-in profile, and 1/2/4/8 concurrent overlay2 copy-ups of one image file beside what
the real overlayfs on ext4 takes on this machine kind (issue 13).

    python -m benchmarks.device_sharing              # writes docs/device-sharing.png
    python -m benchmarks.device_sharing -o FILE.png

The helpers (:func:`serve`, :func:`settled_host`, :func:`at_once`) are what tests/test_device.py
checks the device with.
"""
from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.figure_command import figure_command
from sim.drivers import get_driver
from sim.operation import Op
from sim.engine import Engine
from sim.host import Host
from sim.image import probe_image
from sim.profile import Profile, load_profile

MiB = 2**20
COUNTS = (1, 2, 4, 8, 16, 32, 64)
PROFILES = ("nvme", "ssd", "hdd", "host-calibrated")
# 1, 2, 4, 8 simultaneous 16 MiB copy-ups on overlayfs over ext4 on this machine kind, as
# multiples of one (issue 13, "Why")
MEASURED_COPY_UPS = {1: 1.0, 2: 1.6, 4: 2.9, 8: 6.1}


def serve(engine: Engine, jobs: list[tuple[float, int, bool, int]]) -> list[tuple[float, float]]:
    """(issue, end) of each request given as (issue time, bytes, is a write, requests), each
    issued and waited for by a process of its own."""
    env, disk = engine.env, engine.disk
    done: list = [None] * len(jobs)

    def client(index, issue, nbytes, write, requests):
        yield env.timeout(issue)
        transfer = (disk.write if write else disk.read)(env.now, nbytes, requests)
        finish = disk.finish_time(transfer, env.now)
        if finish > env.now:
            yield disk.wait(transfer, finish)
        done[index] = (issue, env.now)

    for index, job in enumerate(jobs):
        env.process(client(index, *job))
    env.run()
    return done


def settled_host(driver: str, profile: str | Profile, containers: int, file_size: int) -> tuple[Host, str]:
    """A host with the probe image and ``containers`` containers, its disk idle, caches dropped;
    and the probe's target file."""
    engine = Engine(profile if isinstance(profile, Profile) else load_profile(profile))
    host = Host(get_driver(driver)(None, engine.profile), engine)
    image, target = probe_image(file_size=file_size)

    def setup():
        yield from host.prepare_image(image)
        for cid in range(containers):
            yield from host.create_container(cid, image)
        yield from host.settle()

    engine.env.process(setup())
    engine.env.run()
    engine.drop_caches()
    return host, target


def at_once(host: Host, ops: list[tuple[int, float, Op]]) -> list[tuple[float, float]]:
    """(start, end) of each (container, delay, operation), all started now."""
    env = host.env
    spans: list = [None] * len(ops)

    def body(index, cid, delay, op):
        yield env.timeout(delay)
        start = env.now
        yield from host.run_op(cid, 0, op)
        spans[index] = (start, env.now)

    for index, (cid, delay, op) in enumerate(ops):
        env.process(body(index, cid, delay, op))
    env.run()
    return spans


def makespan(spans) -> float:
    return max(end for _, end in spans) - min(start for start, _ in spans)


def mean_latency(spans) -> float:
    return sum(end - start for start, end in spans) / len(spans)


def transfers(profile: str, count: int, nbytes: int = 16 * MiB) -> tuple[float, float]:
    """Makespan and mean latency of ``count`` reads of ``nbytes`` issued together, as multiples of one."""
    def run(n):
        spans = serve(Engine(load_profile(profile)), [(0.0, nbytes, False, -(-nbytes // MiB))] * n)
        return makespan(spans), mean_latency(spans)

    alone, _ = run(1)
    span, mean = run(count)
    return span / alone, mean / alone


def copy_ups(profile: str, count: int, cache: str, file_size: int = 16 * MiB) -> tuple[float, float]:
    """Makespan and mean latency of ``count`` containers' first writes of one image file at once
    (overlay2), as multiples of one container's."""
    from sim.runner import simulate
    from sim.scenario import Scenario

    def run(n):
        scenario = Scenario.model_validate({
            "name": "copy_ups", "profile": profile, "cache": cache, "image": {"kind": "probe", "file_size": file_size},
            "containers": {"count": n}, "workload": {"kind": "copyup_probe", "write_size": 4096}})
        ops = simulate(scenario).ops
        first = ops[ops["op"] == "first_write"]
        spans = list(zip(first["start_s"], first["start_s"] + first["latency_s"]))
        return makespan(spans), mean_latency(spans)

    alone, _ = run(1)
    span, mean = run(count)
    return span / alone, mean / alone


def figure(path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.4))
    left, right = fig.subplots(1, 2)
    colours = dict(zip(PROFILES, ("#1f77b4", "#2ca02c", "#d62728", "#ff7f0e")))
    for profile in PROFILES:
        rows = [transfers(profile, n) for n in COUNTS]
        left.plot(COUNTS, [span for span, _ in rows], "-o", color=colours[profile], label=f"{profile}: makespan")
        left.plot(COUNTS, [mean for _, mean in rows], ":", color=colours[profile], label=f"{profile}: mean latency")
    left.plot(COUNTS, COUNTS, color="#999", linewidth=0.8, label="n x one (fair share)")
    left.set(xscale="log", yscale="log", xlabel="concurrent 16 MiB reads", ylabel="x one read alone",
             title="Transfers share the disk's bandwidth\n(mean latency dotted, under the makespan but for hdd)")
    left.set_xticks(COUNTS, [str(n) for n in COUNTS])
    left.legend(fontsize=7)
    counts = sorted(MEASURED_COPY_UPS)
    right.plot(counts, [MEASURED_COPY_UPS[n] for n in counts], "k--s", label="real overlayfs on ext4 (makespan)")
    for profile, cache, marker in (("host-calibrated", "warm", "o"), ("host-calibrated", "cold", "v"),
                                   ("ssd", "cold", "^")):
        rows = [copy_ups(profile, n, cache) for n in counts]
        right.plot(counts, [span for span, _ in rows], marker=marker, color=colours[profile],
                   label=f"cowsim overlay2, {profile}, {cache}: makespan")
        right.plot(counts, [mean for _, mean in rows], ":", color=colours[profile],
                   label=f"cowsim overlay2, {profile}, {cache}: mean latency")
    right.set(xlabel="containers copying up a 16 MiB file at once", ylabel="x one container alone",
              title="Concurrent 16 MiB copy-ups")
    right.set_xticks(counts)
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    return figure_command("device_sharing", __doc__, "device-sharing.png", figure, argv)


if __name__ == "__main__":
    sys.exit(main())
