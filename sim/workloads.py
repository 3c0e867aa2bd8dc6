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
from itertools import chain
from operator import length_hint
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


HALF = 0xFFFFFFFF  # the low 32 bits of a 64-bit output
GUIDE_BUCKETS = 2**16  # of MixState's Zipf guide; a power of two, so that a uniform's bucket is exact


class Draws:
    """The random draws of one stream, exactly as its NumPy generator ``rng`` (PCG64, as
    ``default_rng`` makes) would give them in any interleaving: ``random()`` is
    ``rng.random()`` (the bit generator's ``next_double``: an output's top 53 bits times
    2**-53) and ``integers(n)`` is ``rng.integers(n)`` (Lemire's method on 32-bit halves of
    outputs, as NumPy's C code), from the same outputs of the same bit generator in the same
    order.

    Cheaper than the generator's methods, which parse their arguments and take its lock on every
    call (what it saves: docs/performance.md). With ``exclusive`` (nothing else draws from
    ``rng`` while the stream runs: a closed loop), the outputs are fetched a batch at a time
    (``random_raw``) and their uniforms made by NumPy for the whole batch, then handed out by a
    list iterator: no call into NumPy per draw; :meth:`release` leaves the generator where
    single draws would have, the outputs fetched but not used given back. Otherwise (an open
    loop draws its arrival times from ``rng`` between operations) every draw calls the bit
    generator's C functions through ctypes.
    """

    FIRST_BATCH, LARGEST_BATCH = 64, 512  # outputs: doubling, so that a short stream fetches little

    def __init__(self, rng: np.random.Generator, exclusive: bool) -> None:
        bits = rng.bit_generator
        if not isinstance(bits, np.random.PCG64):
            raise TypeError(f"Draws follows PCG64's draws, not {type(bits).__name__}'s")
        self.bits = bits
        self.exclusive = exclusive
        self.random: Callable[[], float]
        self.next_half: Callable[[], int]
        if exclusive:
            state = bits.state
            # next_uint32 keeps an output's high half for its next call (has_uint32, uinteger)
            self.has_half, self.half = bool(state["has_uint32"]), int(state["uinteger"])
            self.raws = np.empty(0, dtype=np.uint64)  # the batch's outputs
            self.batch: Iterator[float] | None = None  # its uniforms, those not drawn yet
            self.random = chain.from_iterable(self._batches()).__next__
            self.next_half = self._next_half
        else:
            functions = bits.ctypes
            self.random = partial(functions.next_double, functions.state)
            self.next_half = partial(functions.next_uint32, functions.state)

    def _batches(self) -> Iterator[Iterator[float]]:
        size = self.FIRST_BATCH
        while True:
            self.raws = self.bits.random_raw(size)
            self.batch = iter(((self.raws >> np.uint64(11)) * 2.0**-53).tolist())  # next_double's, exactly
            yield self.batch
            size = min(2 * size, self.LARGEST_BATCH)

    def _next_half(self) -> int:
        """The bit generator's next_uint32 on the fetched outputs: an output's low half, then its high half."""
        if self.has_half:
            self.has_half = False
            return self.half
        self.random()  # steps past the output (fetching the next batch if need be)
        assert self.batch is not None
        raw = int(self.raws[len(self.raws) - 1 - length_hint(self.batch)])
        self.has_half, self.half = True, raw >> 32
        return raw & HALF

    def integers(self, n: int) -> int:
        """``rng.integers(n)``, for 1 <= n < 2**32 (a list's length): NumPy's
        buffered_bounded_lemire_uint32; n == 1 draws nothing."""
        if n == 1:
            return 0
        scaled = self.next_half() * n
        if scaled & HALF < n:
            threshold = (HALF - (n - 1)) % n
            while scaled & HALF < threshold:
                scaled = self.next_half() * n
        return scaled >> 32

    def release(self) -> None:
        """Leave the generator where single draws would have: give back the outputs fetched and not
        used, and set next_uint32's kept half. Draws after this go on from there."""
        if not self.exclusive:
            return
        unused = length_hint(self.batch) if self.batch is not None else 0
        bits = self.bits
        if unused:
            bits.advance(-unused)  # PCG64 advances modulo its period: back
        state = bits.state  # (advance forgets the kept half)
        state["has_uint32"], state["uinteger"] = int(self.has_half), self.half
        bits.state = state
        self.batch = None
        self.random = chain.from_iterable(self._batches()).__next__


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
        self.rank_cdf: list[float] | None = None
        self.rank_guide: list[int] | None = None
        if spec.file_choice == "zipf" and self.ranked:
            cdf = self._zipf_cdf(len(self.ranked))
            self.rank_cdf, self.rank_guide = cdf.tolist(), self._guide(cdf)
        # sequential: every stream walks the image's files in path order (depth first), from the start
        self.walk = sorted(image_files) if spec.file_choice == "sequential" else None

    def _zipf_cdf(self, count: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, count + 1) ** self.spec.zipf_s
        cdf = np.cumsum(weights / weights.sum())
        # Exactly 1.0 at the end (the sum may round either way), so that bisecting any draw in
        # [0, 1) gives a rank: the last one where the rounded sum fell short of the draw.
        cdf[-1] = 1.0
        return cdf

    @staticmethod
    def _guide(cdf: np.ndarray) -> list[int]:
        """Where the ranks of each bucket of draws begin: ``guide[k]`` is ``bisect_right(cdf, k /
        GUIDE_BUCKETS)``, so a draw ``u`` of bucket ``k = int(u * GUIDE_BUCKETS)`` has its rank
        between ``guide[k]`` and ``guide[k + 1]``: the same as bisecting the whole CDF, a
        bisection of a few ranks or none (the hot ranks fill whole buckets)."""
        # c <= k / GUIDE_BUCKETS exactly when ceil(c * GUIDE_BUCKETS) <= k (exact products: a power
        # of two), so guide[k] counts the CDF's values whose ceiling is at most k. (A rounded sum
        # may pass 1.0 just before the end: such values are above every draw, last bucket's.)
        ceilings = np.minimum(np.ceil(cdf * GUIDE_BUCKETS), GUIDE_BUCKETS).astype(np.int64)
        return np.cumsum(np.bincount(ceilings, minlength=GUIDE_BUCKETS + 1)).tolist()

    def rank(self, u: float) -> int:
        """The Zipf rank of draw ``u``: ``bisect_right(rank_cdf, u)``, through the guide (as
        MixStream._pick_image_file does inline)."""
        guide, cdf = self.rank_guide, self.rank_cdf
        assert guide is not None and cdf is not None
        bucket = int(u * GUIDE_BUCKETS)
        first, last = guide[bucket], guide[bucket + 1]
        return first if first == last else bisect_right(cdf, u, first, last)


class MixStream:
    """One stream of operations (a closed-loop worker, or a container's open-loop arrivals):
    its own random stream, operation budget and files, so that the sequence of operations does
    not depend on timing, and every driver sees the same operations for the same seed.
    ``exclusive``: nothing else draws from ``rng`` while the stream runs (see :class:`Draws`).

    Image files the stream deleted or renamed away are not picked again, so that errors come
    from the model, not from a workload that forgot what it did.
    """

    def __init__(self, state: MixState, cid: int, worker: int, rng: np.random.Generator, budget: int | None,
                 volume_files: list[str], volume_dirs: list[str], exclusive: bool = False):
        self.state = state
        self.cid = cid
        self.worker = worker
        self.rng = rng
        self.draws = Draws(rng, exclusive)
        self.budget = budget
        self.created: list[str] = []  # files the container created in its own layer
        self.volume_files = volume_files
        self.volume_dirs = volume_dirs
        self.gone: set[str] = set()  # image files deleted or renamed away
        self.counter = 0
        self.walked = 0  # files of the sequential walk taken so far
        spec = state.spec
        self.duration = spec.duration
        # What every draw reads, bound once
        self.op_names, self.op_cdf = state.op_names, state.op_cdf
        self.pool, self.walk = state.ranked, state.walk
        self.rank_cdf, self.rank_guide = state.rank_cdf or [], state.rank_guide
        # where an operation goes is drawn only when there are volumes
        self.volume_fraction = spec.volume_fraction if volume_dirs else None
        # reads, writes and appends (most operations): their fsync flag
        self.data_sync = {"read": False, "write": spec.fsync, "append": spec.fsync}
        self.request_size = spec.request_size

    def _pick_image_file(self) -> str | None:
        walk = self.walk
        if walk is not None:
            return self._next_in_walk(walk)
        pool = self.pool
        created = self.created
        draws = self.draws
        if created and (not pool or draws.random() < len(created) / (len(pool) + len(created))):
            return created[draws.integers(len(created))]
        rank_cdf, guide = self.rank_cdf, self.rank_guide
        gone = self.gone
        for _attempt in range(8):
            if not pool:
                return None
            if guide is not None:  # MixState.rank, inline
                u = draws.random()
                bucket = int(u * GUIDE_BUCKETS)
                first, last = guide[bucket], guide[bucket + 1]
                path = pool[first if first == last else bisect_right(rank_cdf, u, first, last)]
            else:
                path = pool[draws.integers(len(pool))]
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
            return self.created[self.draws.integers(len(self.created))]
        pool = self.pool
        for _attempt in range(8):
            if not pool:
                return None
            path = pool[self.draws.integers(len(pool))]
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

    def _end(self) -> None:
        """The stream is done: its generator as single draws would have left it."""
        self.draws.release()

    def next_op(self, now: float) -> Op | None:
        """The operation to start at ``now``; None when the stream is done: its duration over,
        its budget spent, or no file left to pick."""
        duration = self.duration
        if duration is not None and now >= duration:
            self._end()
            return None
        budget = self.budget
        if budget is not None:
            self.budget = budget = budget - 1
            if budget < 0:
                self._end()
                return None
        random = self.draws.random
        kind = self.op_names[bisect_right(self.op_cdf, random())]
        fraction = self.volume_fraction
        on_volume = fraction is not None and random() < fraction
        self.counter += 1
        sync = self.data_sync.get(kind)
        if sync is not None and not on_volume:  # a read, write or append of an image or own file
            path = self._pick_image_file()
            if path is None:
                self._end()
                return None
            # (the most common Op, built from positional arguments: a keyword makes the call a third dearer)
            return Op(kind, path, 0, self.request_size, "", sync)
        return self._other_op(kind, on_volume)

    def _other_op(self, kind: str, on_volume: bool) -> Op | None:
        """The operations of :meth:`next_op` other than reads, writes and appends of image files."""
        spec = self.state.spec
        path: str | None
        if kind == "create":
            dirs = self.volume_dirs if on_volume else self.state.dirs
            parent = dirs[self.draws.integers(len(dirs))]
            name = f"c{self.cid}w{self.worker}n{self.counter}"
            path = f"{parent}/{name}" if parent else name
            (self.volume_files if on_volume else self.created).append(path)
            return Op("create", path, 0, spec.create_size, sync=spec.fsync)
        if on_volume and self.volume_files:
            path = self.volume_files[self.draws.integers(len(self.volume_files))]
        elif kind in ("delete", "rename"):
            path = self._pick_for_removal()
        else:
            path = self._pick_image_file()
        if path is None:
            self._end()
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
        # Reads and writes address the file's first request_size bytes; appends grow it.
        return Op(kind, path, 0, self.request_size, "", self.data_sync[kind])


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
                # (a closed loop's stream is the only one drawing from its generator)
                stream = MixStream(state, cid, worker, np.random.default_rng(setup.rng.integers(2**63)),
                                   next(budgets), list(volume_files), volume_dirs, exclusive=spec.mode == "closed")
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
