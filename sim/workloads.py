"""Workloads: what the containers do. Each is a SimPy process per container (or per worker)
that draws its operations from its own random stream and hands them to the host.

``copyup_probe``: for chosen files, a first write (open for write, write, fsync, close) and a
second write of the same kind, so that only the first pays the copy-up.
``mix``: read, write, append, create, delete, stat, rename, truncate and chmod with given
probabilities, files picked uniformly or by Zipf rank, in a closed loop (workers per container)
or an open loop (Poisson arrivals), until an operation count or a simulated duration.
"""
from __future__ import annotations

import numpy as np

from .drivers import Op
from .host import Host
from .image import parent_of
from .scenario import CopyupProbe, Mix


def copyup_probe(host: Host, cid: int, spec: CopyupProbe, targets: list[str]):
    for path in targets:
        for name in ("first_write", "second_write"):
            yield from host.run_op(cid, 0, Op("write", path, 0, spec.write_size, sync=spec.fsync), name)


class MixState:
    """Shared across a run: how many operations are left, and each container's file pools."""

    def __init__(self, host: Host, spec: Mix, image_files: list[str], rng: np.random.Generator):
        self.host = host
        self.spec = spec
        self.remaining = spec.operations if spec.operations is not None else -1
        self.deadline = spec.duration
        names = list(spec.ops)
        weights = np.array([spec.ops[n] for n in names], dtype=float)
        self.op_names = names
        self.op_cdf = np.cumsum(weights / weights.sum())
        # One ranking of the image's files for every container and driver: Zipf rank 1 is hottest.
        self.ranked = [image_files[i] for i in rng.permutation(len(image_files))] if image_files else []
        self.dirs = sorted({parent_of(p) for p in image_files}) or [""]
        self.rank_cdf = self._zipf_cdf(len(self.ranked)) if spec.file_choice == "zipf" and self.ranked else None

    def _zipf_cdf(self, count: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, count + 1) ** self.spec.zipf_s
        return np.cumsum(weights / weights.sum())

    def take(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            return False
        if self.remaining == 0:
            return False
        if self.remaining > 0:
            self.remaining -= 1
        return True


class ContainerMix:
    """One container's side of a mix: its random stream, created files and volume files."""

    def __init__(self, state: MixState, cid: int, rng: np.random.Generator, volume_files: list[str],
                 volume_dirs: list[str]):
        self.state = state
        self.cid = cid
        self.rng = rng
        self.created: list[str] = []
        self.volume_files = volume_files
        self.volume_dirs = volume_dirs
        self.deleted: set[str] = set()
        self.counter = 0

    def _pick_image_file(self) -> str | None:
        state = self.state
        pool = state.ranked
        if not pool and not self.created:
            return None
        if self.created and (not pool or self.rng.random() < len(self.created) / (len(pool) + len(self.created))):
            return self.created[int(self.rng.integers(len(self.created)))]
        if state.rank_cdf is not None:
            index = int(np.searchsorted(state.rank_cdf, self.rng.random(), side="right"))
            return pool[min(index, len(pool) - 1)]
        return pool[int(self.rng.integers(len(pool)))]

    def _on_volume(self) -> bool:
        return bool(self.volume_dirs) and self.rng.random() < self.state.spec.volume_fraction

    def next_op(self) -> Op | None:
        spec = self.state.spec
        kind = self.state.op_names[int(np.searchsorted(self.state.op_cdf, self.rng.random(), side="right"))]
        on_volume = self._on_volume()
        self.counter += 1
        if kind == "create":
            dirs = self.volume_dirs if on_volume else self.state.dirs
            parent = dirs[int(self.rng.integers(len(dirs)))]
            name = f"c{self.cid}n{self.counter}"
            path = f"{parent}/{name}" if parent else name
            (self.volume_files if on_volume else self.created).append(path)
            return Op("create", path, 0, spec.create_size, sync=spec.fsync)
        if on_volume and self.volume_files:
            path = self.volume_files[int(self.rng.integers(len(self.volume_files)))]
        else:
            path = self._pick_image_file()
        if path is None:
            return None
        if kind == "delete":
            for pool in (self.created, self.volume_files):
                if path in pool:
                    pool.remove(path)
            return Op("unlink", path)
        if kind == "rename":
            target = f"{path}.r{self.counter}"
            for pool in (self.created, self.volume_files):
                if path in pool:
                    pool[pool.index(path)] = target
            return Op("rename", path, target=target)
        if kind == "stat":
            return Op("stat", path)
        if kind == "chmod":
            return Op("chmod", path)
        if kind == "truncate":
            return Op("truncate", path, nbytes=0)
        # Reads and writes address the file's first request_size bytes; appends grow it.
        return Op(kind, path, 0, spec.request_size, sync=spec.fsync and kind != "read")


def mix_worker(host: Host, container: ContainerMix, worker: int):
    state = container.state
    env = host.env
    think = state.spec.think_time
    while state.take(env.now):
        op = container.next_op()
        if op is None:
            return
        yield from host.run_op(container.cid, worker, op)
        if think:
            yield env.timeout(think)


def mix_arrivals(host: Host, container: ContainerMix):
    state = container.state
    env = host.env
    rate = state.spec.arrival_rate
    while True:
        yield env.timeout(float(container.rng.exponential(1.0 / rate)))
        if not state.take(env.now):
            return
        op = container.next_op()
        if op is None:
            return
        env.process(host.run_op(container.cid, 0, op))
