"""Workloads: what the containers do. Each is a SimPy process per container (or per worker)
that draws its operations from its own random stream and hands them to the host.

``copyup_probe``: for chosen files, a first write (open for write, write, fsync, close) and a
second write of the same kind, so that only the first pays the copy-up.
``mix``: read, write, append, create, delete, stat, rename, truncate and chmod with given
probabilities, files picked uniformly or by Zipf rank, in a closed loop (workers per container)
or an open loop (Poisson arrivals), until an operation count or a simulated duration.
``trace``: the file operations of a real program (:mod:`sim.trace`), in recorded order, with the
recorded time between them.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import simpy

from .host import Host, Mount
from .image import DIR, FILE, Image, ancestors, parent_of
from .operation import Op
from .scenario import CopyupProbe, Mix, Trace
from .trace import ParsedTrace, Resolver, parse_trace


def copyup_probe(host: Host, cid: int, spec: CopyupProbe, targets: list[str]):
    for path in targets:
        for name in ("first_write", "second_write"):
            yield from host.run_op(cid, 0, Op("write", path, 0, spec.write_size, sync=spec.fsync), name)


def uniform_draws(rng: np.random.Generator):
    """A function returning what ``rng.random()`` would: the same C function (the bit generator's
    ``next_double``) on the same state, called through NumPy's ctypes interface to the bit
    generator, so draws interleave with ``rng``'s other methods as before. Cheaper, because
    ``random()`` parses its arguments and takes the generator's lock on every call, and a stream
    is never used from two threads (what it saves: docs/performance.md)."""
    bits = rng.bit_generator.ctypes
    return partial(bits.next_double, bits.state)


class MixState:
    """What every stream of a mix shares: the operation weights, the ranking of the image's
    files (Zipf rank 1 is hottest) and the directories new files go to."""

    def __init__(self, spec: Mix, image_files: list[str], rng: np.random.Generator):
        self.spec = spec
        names = list(spec.ops)
        weights = np.array([spec.ops[n] for n in names], dtype=float)
        self.op_names = names
        # Python lists: bisect on them is what np.searchsorted(side="right") does, without the
        # per-call cost of a NumPy call.
        self.op_cdf = np.cumsum(weights / weights.sum()).tolist()
        self.ranked = [image_files[i] for i in rng.permutation(len(image_files))] if image_files else []
        self.dirs = sorted({parent_of(p) for p in image_files}) or [""]
        self.rank_cdf = self._zipf_cdf(len(self.ranked)) if spec.file_choice == "zipf" and self.ranked else None
        # sequential: every stream walks the image's files in path order (depth first), from the start
        self.walk = sorted(image_files) if spec.file_choice == "sequential" else None

    def _zipf_cdf(self, count: int) -> list[float]:
        weights = 1.0 / np.arange(1, count + 1) ** self.spec.zipf_s
        cdf = np.cumsum(weights / weights.sum()).tolist()
        # Exactly 1.0 at the end (the sum may round either way), so that bisecting any draw in
        # [0, 1) gives a rank: the last one where the rounded sum fell short of the draw.
        cdf[-1] = 1.0
        return cdf


class MixStream:
    """One stream of operations (a closed-loop worker, or a container's open-loop arrivals):
    its own random stream, operation budget and files, so that the sequence of operations does
    not depend on timing, and every driver sees the same operations for the same seed.

    Image files the stream deleted or renamed away are not picked again, so that errors come
    from the model, not from a workload that forgot what it did.
    """

    def __init__(self, state: MixState, cid: int, worker: int, rng: np.random.Generator, budget: int | None,
                 volume_files: list[str], volume_dirs: list[str]):
        self.state = state
        self.cid = cid
        self.worker = worker
        self.rng = rng
        self.random = uniform_draws(rng)  # rng.random()
        self.budget = budget
        self.created: list[str] = []  # files the container created in its own layer
        self.volume_files = volume_files
        self.volume_dirs = volume_dirs
        self.gone: set[str] = set()  # image files deleted or renamed away
        self.counter = 0
        self.walked = 0  # files of the sequential walk taken so far
        self.duration = state.spec.duration
        # What every draw reads, bound once
        self.op_names, self.op_cdf = state.op_names, state.op_cdf
        self.pool, self.rank_cdf = state.ranked, state.rank_cdf
        self.request_size, self.fsync = state.spec.request_size, state.spec.fsync

    def _pick_image_file(self) -> str | None:
        walk = self.state.walk
        if walk is not None:
            return self._next_in_walk(walk)
        pool = self.pool
        created = self.created
        rng = self.rng
        random = self.random
        if created and (not pool or random() < len(created) / (len(pool) + len(created))):
            return created[int(rng.integers(len(created)))]
        rank_cdf = self.rank_cdf
        gone = self.gone
        for _attempt in range(8):
            if not pool:
                return None
            if rank_cdf is not None:
                path = pool[bisect_right(rank_cdf, random())]
            else:
                path = pool[int(rng.integers(len(pool)))]
            if path not in gone:
                return path
        return path  # the hottest files are all gone: let the model answer ENOENT

    def _next_in_walk(self, walk: list[str]) -> str | None:
        """The next image file of the walk not deleted or renamed away, wrapping around."""
        for _attempt in range(len(walk)):
            path = walk[self.walked % len(walk)]
            self.walked += 1
            if path not in self.gone:
                return path
        return None

    def _pick_for_removal(self) -> str | None:
        """Deletes and renames take the stream's own new files first, else any image file
        uniformly: applications rarely delete the files everyone reads most."""
        if self.created:
            return self.created[int(self.rng.integers(len(self.created)))]
        pool = self.state.ranked
        for _attempt in range(8):
            if not pool:
                return None
            path = pool[int(self.rng.integers(len(pool)))]
            if path not in self.gone:
                return path
        return path

    def _forget(self, path: str, replacement: str | None = None) -> None:
        for pool in (self.created, self.volume_files):
            if path in pool:
                if replacement is None:
                    pool.remove(path)
                else:
                    pool[pool.index(path)] = replacement
                return
        self.gone.add(path)
        if replacement is not None:
            self.created.append(replacement)

    def next_op(self, now: float) -> Op | None:
        """The operation to start at ``now``; None when the stream is done: its duration over,
        its budget spent, or no file left to pick."""
        duration = self.duration
        if duration is not None and now >= duration:
            return None
        if self.budget is not None:
            self.budget -= 1
            if self.budget < 0:
                return None
        kind = self.op_names[bisect_right(self.op_cdf, self.random())]
        # Where the operation goes is drawn only when there are volumes.
        on_volume = bool(self.volume_dirs) and self.random() < self.state.spec.volume_fraction
        self.counter += 1
        state = self.state
        spec = state.spec
        rng = self.rng
        path: str | None
        if kind == "create":
            dirs = self.volume_dirs if on_volume else state.dirs
            parent = dirs[int(rng.integers(len(dirs)))]
            name = f"c{self.cid}w{self.worker}n{self.counter}"
            path = f"{parent}/{name}" if parent else name
            (self.volume_files if on_volume else self.created).append(path)
            return Op("create", path, 0, spec.create_size, sync=spec.fsync)
        if on_volume and self.volume_files:
            path = self.volume_files[int(rng.integers(len(self.volume_files)))]
        elif kind in ("delete", "rename"):
            path = self._pick_for_removal()
        else:
            path = self._pick_image_file()
        if path is None:
            return None
        if kind == "delete":
            self._forget(path)
            return Op("unlink", path)
        if kind == "rename":
            target = f"{path}.r{self.counter}"
            self._forget(path, target)
            return Op("rename", path, target=target)
        if kind in ("stat", "chmod"):
            return Op(kind, path)
        if kind == "truncate":
            return Op("truncate", path, nbytes=0)
        # Reads and writes address the file's first request_size bytes; appends grow it. (The most
        # common Op, built from positional arguments: a keyword makes the call a third dearer.)
        return Op(kind, path, 0, self.request_size, "", self.fsync and kind != "read")


def mix_worker(host: Host, stream: MixStream):
    """Closed loop: the process body that runs one operation after another, with an optional
    think time between; each drawn when the previous one has ended (after the think time)."""
    ops = _drawn(stream, host.env)
    think = stream.state.spec.think_time
    if not think:  # the engine's own generator runs them all: no generator of ours to resume
        return host.run_ops(stream.cid, stream.worker, ops)
    return _thinking(host, stream.cid, stream.worker, ops, think)


def _thinking(host: Host, cid: int, worker: int, ops: Iterator[Op], think: float):
    for op in ops:
        yield from host.run_op(cid, worker, op)
        yield host.env.timeout(think)


def _drawn(stream: MixStream, env: simpy.Environment):
    """The stream's operations, each drawn when asked for (at the clock's time then)."""
    next_op = stream.next_op
    while (op := next_op(env._now)) is not None:
        yield op


def mix_arrivals(host: Host, stream: MixStream):
    """Open loop: Poisson arrivals, each operation its own process, however many are in flight."""
    env = host.env
    rate = stream.state.spec.arrival_rate
    in_flight = []
    while True:
        yield env.timeout(float(stream.rng.exponential(1.0 / rate)))
        op = stream.next_op(env.now)
        if op is None:
            break
        # its own process, planned when SimPy first runs it (as the driver's state then is)
        in_flight.append(env.process(host.run_op(stream.cid, stream.worker, op)))
    yield env.all_of(in_flight)


def split_budget(total: int | None, streams: int) -> list[int | None]:
    """Operations per stream: ``total`` shared out as evenly as possible, the first ones get the remainder."""
    if total is None:
        return [None] * streams
    base, extra = divmod(total, streams)
    return [base + (1 if i < extra else 0) for i in range(streams)]


def trace_replay(host: Host, cid: int, trace: ParsedTrace, spec: Trace, image: Image):
    """One container replays the trace: each operation after the recorded pause since the
    previous one ended (scaled by ``think_scale``), so the program's own time is kept and only
    its file operations take simulated time. Directories the program wrote into but the image
    lacks are made first (``mkdir_parent``), so that a trace from another tree still runs."""
    env = host.env
    resolver = Resolver(image.symlinks)
    if spec.start_interval:
        yield env.timeout(cid * spec.start_interval)
    previous_end = None
    for traced in trace.ops:
        if previous_end is not None:
            pause = (traced.start_s - previous_end) * spec.think_scale
            if pause > 0:
                yield env.timeout(pause)
        previous_end = traced.end_s
        recorded = traced.op
        path = resolver.resolve(recorded.path, traced.follow)
        kind = recorded.kind
        if kind == "open_create":
            found = host.stat(cid, path)
            kind = "create" if found is None else ("write" if traced.writable and found.kind == FILE else "stat")
        target = resolver.resolve(recorded.target, False) if kind == "rename" else ""
        if kind in ("create", "mkdir", "rename"):
            for parent in ancestors(target or path):
                found = host.stat(cid, parent)
                if found is not None and found.kind != DIR:
                    break
                if found is None:
                    yield from host.run_op(cid, 0, Op("mkdir", parent), "mkdir_parent")
        op = Op(kind, path, recorded.offset, recorded.nbytes, target, recorded.sync)
        yield from host.run_op(cid, 0, op, traced.label)
        if traced.label == "symlink":
            resolver.created(path, recorded.target)
        elif kind in ("create", "unlink"):
            resolver.created(path, None)
        elif kind == "rename":
            resolver.moved(path, target)


# -- the kinds of workload, found by their scenario class --------------------------------------
@dataclass
class Setup:
    """What a workload's processes start from: the host with its containers made, the images
    (by name, each with the files a probe or a mix may pick in it), the image each container
    runs, the volumes each container mounts and the workload's random stream."""

    host: Host
    images: dict[str, tuple[Image, list[str]]]
    container_images: list[str]  # by container id
    mounts: list[Mount]
    rng: np.random.Generator

    @property
    def containers(self) -> int:
        return len(self.container_images)

    def image(self, cid: int) -> Image:
        return self.images[self.container_images[cid]][0]

    def candidates(self, cid: int) -> list[str]:
        return self.images[self.container_images[cid]][1]


class Workload:
    """A kind of workload: the SimPy processes its containers run, and what it adds to a run's
    summary. ``measures`` name the means the summary takes of the workload's own operations:
    column -> (operation label, record column)."""

    measures: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def processes(self, setup: Setup) -> list:
        raise NotImplementedError

    def summary(self, containers: int) -> dict:
        return {}


WORKLOADS: dict[type, type[Workload]] = {}


def register(spec_class: type) -> Callable[[type[Workload]], type[Workload]]:
    """Make a Workload class the one that runs scenarios whose workload is ``spec_class``."""
    def add(workload: type[Workload]) -> type[Workload]:
        WORKLOADS[spec_class] = workload
        return workload
    return add


def workload_for(spec: Any) -> Workload:
    return WORKLOADS[type(spec)](spec)


def measured_columns() -> list[str]:
    """Every workload's measures, in registration order: summary columns every run has (a
    workload that does not measure one leaves it empty), so tables of any workload line up."""
    return list(dict.fromkeys(name for workload in WORKLOADS.values() for name in workload.measures))


@register(CopyupProbe)
class ProbeWorkload(Workload):
    measures = {"first_write_s": ("first_write", "latency_s"), "second_write_s": ("second_write", "latency_s"),
                "lookup_s": ("first_write", "lookup_s")}

    def processes(self, setup: Setup) -> list:
        env, out = setup.host.env, []
        for cid in range(setup.containers):
            candidates = setup.candidates(cid)
            if self.spec.files > len(candidates):  # a synthetic image whose layers deleted some files
                raise ValueError(f"workload.files: {self.spec.files} files asked, image "
                                 f"{setup.container_images[cid]} holds {len(candidates)}")
            container_rng = np.random.default_rng(setup.rng.integers(2**63))
            picks = container_rng.choice(len(candidates), size=self.spec.files, replace=False)
            targets = [candidates[i] for i in sorted(picks)]
            out.append(env.process(copyup_probe(setup.host, cid, self.spec, targets)))
        return out


@register(Mix)
class MixWorkload(Workload):
    def processes(self, setup: Setup) -> list:
        spec, host = self.spec, setup.host
        # one ranking of files per image the containers run, drawn in the order the images were laid
        used = set(setup.container_images)
        states = {name: MixState(spec, candidates, setup.rng) for name, (_, candidates) in setup.images.items()
                  if name in used}
        per_container = spec.workers if spec.mode == "closed" else 1
        budgets = iter(split_budget(spec.operations, setup.containers * per_container))
        volume_dirs = [m.path for m in setup.mounts]
        volume_files = sorted(f"{m.path}/{p}" for m in setup.mounts for p in host.volumes[m.volume].files)
        out = []
        for cid in range(setup.containers):
            for worker in range(per_container):
                # each stream changes its own list of volume files as it creates and deletes
                state = states[setup.container_images[cid]]
                stream = MixStream(state, cid, worker, np.random.default_rng(setup.rng.integers(2**63)),
                                   next(budgets), list(volume_files), volume_dirs)
                body = mix_worker(host, stream) if spec.mode == "closed" else mix_arrivals(host, stream)
                out.append(host.env.process(body))
        return out


@register(Trace)
class TraceWorkload(Workload):
    def __init__(self, spec: Trace) -> None:
        super().__init__(spec)
        self.trace = parse_trace(spec.path, spec.cwd)

    def processes(self, setup: Setup) -> list:
        return [setup.host.env.process(trace_replay(setup.host, cid, self.trace, self.spec, setup.image(cid)))
                for cid in range(setup.containers)]

    def summary(self, containers: int) -> dict:
        # Every syscall line is replayed, bookkeeping or unusable (see `cowsim trace inspect`).
        trace = self.trace
        return {"trace_syscalls": trace.syscalls, "trace_replayed": sum(trace.replayed.values()),
                "trace_unusable": sum(trace.unusable.values()), "trace_recorded_s": trace.recorded_s,
                "trace_recorded_failures": trace.recorded_failures * containers}
