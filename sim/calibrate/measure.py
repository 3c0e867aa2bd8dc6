"""The measurements ``cowsim calibrate`` takes on the real kernel.

Every experiment rebuilds on disk the very image ``sim.probe`` simulates (``probe_image``), so a
measured row and its prediction describe the same files, layers and directories. Times are wall
clock around the system calls (``time.perf_counter``); each configuration is repeated and the
fit and the validation use the median.

Rows: experiment, sweep, driver, fs, options, file_size, layers, dir_depth, dir_entries,
concurrency, cache, repeat, seconds. ``experiment`` is ``lookup`` (stat of the file),
``first_write`` / ``second_write`` (open for write, write 1 byte, fsync, close), ``copy_up``
(first minus second write), ``read`` (the whole file), ``create`` (a container's layers: overlay
mkdir+mount, two btrfs snapshots, two full copies) or ``first_write_makespan`` /
``read_makespan`` (``concurrency`` containers doing the same first write or read at once: from the
first start to the last end; their ``first_write`` / ``read`` row is the mean of the containers'
latencies). ``dir_entries``: the
names each layer holds in the target's directory.
"""
from __future__ import annotations

import contextlib
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..image import Image, probe_image
from .realfs import Sandbox, Skip, btrfs_snapshot, btrfs_subvolume, drop_caches, is_root, materialize, require

KIB, MIB = 2**10, 2**20
COLUMNS = ["experiment", "sweep", "driver", "fs", "options", "file_size", "layers", "dir_depth", "dir_entries",
           "concurrency", "cache", "repeat", "seconds"]
# Columns a measurements file written before they existed may lack, and what its images had:
# one name per layer beside the target (``probe_image``), one container at a time.
OPTIONAL_COLUMNS = {"dir_entries": 1, "concurrency": 1}


@dataclass
class Plan:
    """What to measure: the sweeps and how often each point is repeated."""

    repeats: int
    sizes: list[int]
    layer_counts: list[int]
    dir_depths: list[int]
    image_sizes: list[int]
    clone_sizes: list[int]
    fuse_sizes: list[int]
    fuse_layer_counts: list[int]
    concurrency: list[int]          # containers doing the same thing at once
    concurrent_copy_size: int       # the file each of them copies up
    concurrent_read_size: int       # the cold file each of them reads whole
    dir_entries: list[int]          # names per layer in the target's directory
    entries_layer_counts: list[int]
    btrfs_depths: list[int]
    layers_dir_depth: int = 3
    depth_layers: int = 2
    small_file: int = 4 * KIB
    warm_lookups: int = 50  # a warm stat is a few microseconds: time many, keep the median


FULL = Plan(repeats=11, sizes=[4 * KIB, 64 * KIB, MIB, 8 * MIB, 32 * MIB, 128 * MIB],
            layer_counts=[1, 2, 5, 10, 20, 50, 100], dir_depths=[1, 2, 4, 8, 16, 32],
            image_sizes=[MIB, 32 * MIB, 256 * MIB], clone_sizes=[4 * KIB, MIB, 32 * MIB, 256 * MIB],
            fuse_sizes=[4 * KIB, MIB, 32 * MIB], fuse_layer_counts=[1, 5, 20, 50],
            concurrency=[1, 2, 4, 8], concurrent_copy_size=16 * MIB, concurrent_read_size=256 * MIB,
            dir_entries=[1, 10, 100, 1000], entries_layer_counts=[1, 5, 20],
            btrfs_depths=[1, 2, 4, 8, 16, 32, 64])
QUICK = Plan(repeats=3, sizes=[4 * KIB, MIB, 16 * MIB], layer_counts=[1, 10, 50], dir_depths=[1, 4, 16],
             image_sizes=[MIB, 16 * MIB], clone_sizes=[4 * KIB, 16 * MIB], fuse_sizes=[4 * KIB, 16 * MIB],
             fuse_layer_counts=[1, 10], concurrency=[1, 4], concurrent_copy_size=4 * MIB,
             concurrent_read_size=16 * MIB, dir_entries=[1, 100], entries_layer_counts=[1, 5],
             btrfs_depths=[1, 16])


@dataclass
class Recorder:
    rows: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, experiment, sweep, driver, fs, options, file_size, layers, dir_depth, cache, repeat, seconds,
            dir_entries=OPTIONAL_COLUMNS["dir_entries"], concurrency=OPTIONAL_COLUMNS["concurrency"]):
        self.rows.append(dict(zip(COLUMNS, (experiment, sweep, driver, fs, options, file_size, layers, dir_depth,
                                            dir_entries, concurrency, cache, repeat, seconds))))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


def host_description() -> dict:
    """Kernel, host filesystem and CPU: what the profile's numbers belong to."""
    fs = "unknown"
    try:
        best = ""
        for line in Path("/proc/self/mounts").read_text().splitlines():
            device, point, fstype = line.split()[:3]
            if str(Path.cwd()).startswith(point) and len(point) > len(best) and "tmp" not in fstype:
                best, fs = point, f"{fstype} on {device}"
    except OSError:
        pass
    return {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(), "host_fs": fs}


# -- timing -----------------------------------------------------------------------------------
# Paths are resolved from a descriptor of the container's root, as a containerised process
# resolves them: the host path down to the mount point is no part of the container's lookups
# (and the open descriptor keeps those host dentries cached through the cache drops).
def timed_write(root: int, target: str) -> float:
    """open for write, write 1 byte, fsync, close: what ``copyup_probe`` simulates."""
    start = time.perf_counter()
    fd = os.open(target, os.O_WRONLY, dir_fd=root)
    try:
        os.pwrite(fd, b"x", 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def timed_stat(root: int, target: str) -> float:
    start = time.perf_counter()
    os.stat(target, dir_fd=root)
    return time.perf_counter() - start


def warm_lookup(root: int, target: str, count: int) -> float:
    return sorted(timed_stat(root, target) for _ in range(count))[count // 2]


def warm_up(merged: Path, target: str) -> None:
    """Read the target file once, as the simulator's warm cache does."""
    with open(merged / target, "rb") as handle:
        while handle.read(MIB):
            pass


def read_whole(root: int, target: str, buffer: bytearray) -> None:
    """Read the file to its end, a buffer at a time (the system call releases the GIL)."""
    fd = os.open(target, os.O_RDONLY, dir_fd=root)
    try:
        view = memoryview(buffer)
        while os.readv(fd, [view]):
            pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_roots(tops: list[Path], mounts: list) -> Iterator[list[int]]:
    """Directory descriptors of ``tops`` for the timed threads; closed after, and the overlay
    ``mounts`` (merged directory, handle) among them unmounted and removed."""
    roots = [os.open(top, os.O_RDONLY | os.O_DIRECTORY) for top in tops]
    try:
        yield roots
    finally:
        for root in roots:
            os.close(root)
        for merged, handle in mounts:
            handle.close()
            shutil.rmtree(merged.parent, ignore_errors=True)


def at_once(actions: list[Callable[[], None]]) -> tuple[list[float], float]:
    """Run the actions in threads released together by a barrier: each one's latency and the
    makespan (first start to last end). The timed work is system calls, which release the GIL."""
    barrier = threading.Barrier(len(actions))
    spans: list[tuple[float, float] | None] = [None] * len(actions)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait()
            start = time.perf_counter()
            actions[index]()
            spans[index] = (start, time.perf_counter())
        except BaseException as error:  # re-raised in the calling thread
            barrier.abort()
            errors.append(error)

    threads = [threading.Thread(target=body, args=(index,)) for index in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [end - start for start, end in spans], max(end for _, end in spans) - min(start for start, _ in spans)


def image_of(file_size: int, layers: int, dir_depth: int,
             dir_entries: int = OPTIONAL_COLUMNS["dir_entries"]) -> tuple[Image, str]:
    """The probe image with ``dir_entries`` names per layer in the target's directory: one,
    unless the experiment sweeps them (a row records the number)."""
    return probe_image(file_size=file_size, layers=layers, dir_depth=dir_depth, dir_entries=dir_entries)


# -- one layered container --------------------------------------------------------------------
class Layers:
    """An image's layers written once under ``root``; containers are mounted over them."""

    def __init__(self, sandbox: Sandbox, root: Path, image: Image):
        self.sandbox = sandbox
        self.root = root
        self.paths = []
        for index, layer in enumerate(image.layers):
            path = root / f"l{index}"
            materialize(layer, path)
            self.paths.append(path)
        self.count = 0

    def mount(self, kind: str, layers: int, options: str = ""):
        """A fresh container (empty upper) over the bottom ``layers`` layers."""
        self.count += 1
        base = self.root / f"c{self.count}"
        lowers = list(reversed(self.paths[:layers]))
        upper, work, merged = base / "upper", base / "work", base / "merged"
        if kind == "fuse":
            handle = self.sandbox.fuse_overlay(lowers, upper, work, merged)
        else:
            handle = self.sandbox.overlay(lowers, upper, work, merged, options)
        return merged, handle


def _container_run(layers: Layers, kind: str, count: int, target: str, cache: str, options: str = "",
                   lookup: bool = False, warm_count: int = 50) -> dict:
    """Mount a fresh container and time, in this order: the lookup (stat), the first write,
    the second write. Cold: caches dropped after the mount and again between lookup and write."""
    merged, handle = layers.mount(kind, count, options)
    result = {}
    root = os.open(merged, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if cache == "warm":
            warm_up(merged, target)
            os.sync()  # no writeback of earlier work under the timed fsyncs
            if lookup:
                result["lookup"] = warm_lookup(root, target, warm_count)
        else:
            drop_caches()
            if lookup:
                result["lookup"] = timed_stat(root, target)
                drop_caches()
        result["first_write"] = timed_write(root, target)
        result["second_write"] = timed_write(root, target)
        result["copy_up"] = result["first_write"] - result["second_write"]
    finally:
        os.close(root)
        handle.close()
        shutil.rmtree(merged.parent, ignore_errors=True)  # the container's upper and work
    return result


# -- the experiments --------------------------------------------------------------------------
class Calibration:
    def __init__(self, plan: Plan, recorder: Recorder, progress: Callable[[str], None] | None = None):
        self.plan = plan
        self.rec = recorder
        self.progress = progress or (lambda message: None)
        self.bar: tqdm | None = None

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def _record(self, result: dict, keep: tuple[str, ...], sweep: str, driver: str, fs: str, options: str,
                size: int, layers: int, depth: int, cache: str, repeat: int) -> None:
        for experiment in keep:
            if experiment in result:
                self.rec.add(experiment, sweep, driver, fs, options, size, layers, depth, cache, repeat,
                             result[experiment])

    def overlay_host(self, sandbox: Sandbox) -> None:
        """Kernel overlayfs over the host filesystem: file size, layer depth, directory depth.

        Repeats are the outer loop, so that noise from other work on the host (another process's
        fsync) spreads over every point instead of spoiling one."""
        plan, fs = self.plan, host_description()["host_fs"].split()[0]
        points = []  # (sweep, layers object, layer count, target, size, depth, experiments kept, lookup)
        for size in plan.sizes:
            image, target = image_of(size, 1, 1)
            points.append(("file_size", Layers(sandbox, sandbox.path(f"size{size}"), image), 1, target, size, 1,
                           ("first_write", "second_write"), False))
        deepest = max(plan.layer_counts)
        image, target = image_of(plan.small_file, deepest, plan.layers_dir_depth)
        layers = Layers(sandbox, sandbox.path("layers"), image)
        points += [("layers", layers, count, target, plan.small_file, plan.layers_dir_depth,
                    ("lookup", "first_write"), True) for count in plan.layer_counts]
        for depth in plan.dir_depths:
            image, target = image_of(plan.small_file, plan.depth_layers, depth)
            points.append(("dir_depth", Layers(sandbox, sandbox.path(f"depth{depth}"), image), plan.depth_layers,
                           target, plan.small_file, depth, ("first_write",), False))
        os.sync()
        for repeat in range(plan.repeats):
            for sweep, layers, count, target, size, depth, keep, lookup in points:
                for cache in ("cold", "warm"):
                    result = _container_run(layers, "overlay", count, target, cache, lookup=lookup,
                                            warm_count=plan.warm_lookups)
                    self._record(result, keep, sweep, "overlay2", fs, "", size, count, depth, cache, repeat)
                    self._tick()

    def overlay_create(self, sandbox: Sandbox) -> None:
        """A container of overlay2: its -init and writable layer directories and the mount."""
        fs = host_description()["host_fs"].split()[0]
        for size in self.plan.image_sizes:
            image, _ = image_of(size, 1, 1)
            layers = Layers(sandbox, sandbox.path(f"create{size}"), image)
            for repeat in range(self.plan.repeats):
                base = layers.root / f"ctr{repeat}"
                start = time.perf_counter()
                for directory in ("init/diff", "init/work", "diff", "work", "merged"):
                    (base / directory).mkdir(parents=True)
                handle = sandbox.overlay([layers.paths[0]], base / "diff", base / "work", base / "merged")
                seconds = time.perf_counter() - start
                handle.close()
                self.rec.add("create", "image_size", "overlay2", fs, "", size, 1, 1, "warm", repeat, seconds)
                self._tick()

    def overlay_xfs_reflink(self, sandbox: Sandbox) -> None:
        """overlayfs on xfs with reflink: copy-up clones instead of copying (warm cache)."""
        largest = max(self.plan.clone_sizes)
        mount = sandbox.loop_filesystem("xfs", max(512 * MIB, 4 * largest), "xfs", ("-m", "reflink=1"))
        for size in self.plan.clone_sizes:
            image, target = image_of(size, 1, 1)
            layers = Layers(sandbox, mount / f"size{size}", image)
            for repeat in range(self.plan.repeats):
                result = _container_run(layers, "overlay", 1, target, "warm")
                self._record(result, ("copy_up",), "file_size", "overlay2", "xfs", "reflink=true", size, 1, 1,
                             "warm", repeat)
                self._tick()
            shutil.rmtree(layers.root, ignore_errors=True)

    def fuse_overlay(self, sandbox: Sandbox) -> None:
        """fuse-overlayfs over the host filesystem: first write (warm) and cold lookups."""
        require("fuse-overlayfs")
        fs = host_description()["host_fs"].split()[0]
        for size in self.plan.fuse_sizes:
            image, target = image_of(size, 1, 1)
            layers = Layers(sandbox, sandbox.path(f"fuse{size}"), image)
            for repeat in range(self.plan.repeats):
                result = _container_run(layers, "fuse", 1, target, "warm")
                self._record(result, ("first_write", "second_write"), "file_size", "fuse-overlayfs", fs, "",
                             size, 1, 1, "warm", repeat)
                self._tick()
        deepest = max(self.plan.fuse_layer_counts)
        image, target = image_of(self.plan.small_file, deepest, self.plan.layers_dir_depth)
        layers = Layers(sandbox, sandbox.path("fuselayers"), image)
        for count in self.plan.fuse_layer_counts:
            for repeat in range(self.plan.repeats):
                result = _container_run(layers, "fuse", count, target, "cold", lookup=True)
                self._record(result, ("lookup",), "layers", "fuse-overlayfs", fs, "", self.plan.small_file, count,
                             self.plan.layers_dir_depth, "cold", repeat)
                self._tick()

    def btrfs_create(self, sandbox: Sandbox) -> None:
        """btrfs: a container is two snapshots (-init of the image, the container of -init)."""
        largest = max(self.plan.image_sizes)
        mount = sandbox.loop_filesystem("btrfs", max(512 * MIB, 4 * largest), "btrfs")
        for size in self.plan.image_sizes:
            image, _ = image_of(size, 1, 1)
            source = btrfs_subvolume(mount, f"image{size}")
            materialize(image.layers[0], source)
            os.sync()
            for repeat in range(self.plan.repeats):
                start = time.perf_counter()
                init = btrfs_snapshot(source, mount, f"i{size}-{repeat}")
                btrfs_snapshot(init, mount, f"c{size}-{repeat}")
                seconds = time.perf_counter() - start
                self.rec.add("create", "image_size", "btrfs", "btrfs", "", size, 1, 1, "warm", repeat, seconds)
                self._tick()

    def vfs_create(self, sandbox: Sandbox) -> None:
        """vfs: a container is two full copies of the image (cold cache, no fsync)."""
        fs = host_description()["host_fs"].split()[0]
        for size in self.plan.image_sizes:
            image, _ = image_of(size, 1, 1)
            source = sandbox.path(f"vfs{size}", "image")
            materialize(image.layers[0], source)
            for repeat in range(self.plan.repeats):
                drop_caches()
                start = time.perf_counter()
                for copy in ("init", "container"):
                    shutil.copytree(source, sandbox.path(f"vfs{size}", f"{copy}{repeat}"), symlinks=True)
                seconds = time.perf_counter() - start
                self.rec.add("create", "image_size", "vfs", fs, "", size, 1, 1, "cold", repeat, seconds)
                for copy in ("init", "container"):
                    shutil.rmtree(sandbox.path(f"vfs{size}", f"{copy}{repeat}"))
                self._tick()

    def _record_at_once(self, experiment: str, latencies: list[float], makespan: float, driver: str, fs: str,
                        size: int, cache: str, repeat: int) -> None:
        """Concurrent runs: the mean of the containers' latencies, and the makespan."""
        count = len(latencies)
        for name, seconds in ((experiment, sum(latencies) / count), (f"{experiment}_makespan", makespan)):
            self.rec.add(name, "concurrency", driver, fs, "", size, 1, 1, cache, repeat, seconds,
                         concurrency=count)

    def concurrent_copy_up(self, sandbox: Sandbox) -> None:
        """Kernel overlayfs: ``n`` containers over one image first-write the same file at once
        (cold: the lower file is read by all of them; warm: it is in the page cache)."""
        plan, fs = self.plan, host_description()["host_fs"].split()[0]
        size = plan.concurrent_copy_size
        image, target = image_of(size, 1, 1)
        layers = Layers(sandbox, sandbox.path("concurrent"), image)
        os.sync()
        for repeat in range(plan.repeats):
            for count in plan.concurrency:
                for cache in ("cold", "warm"):
                    mounts = [layers.mount("overlay", 1) for _ in range(count)]
                    with opened_roots([merged for merged, _ in mounts], mounts) as roots:
                        if cache == "warm":
                            warm_up(mounts[0][0], target)
                            os.sync()
                        else:
                            drop_caches()
                        latencies, makespan = at_once([lambda root=root: timed_write(root, target) for root in roots])
                    self._record_at_once("first_write", latencies, makespan, "overlay2", fs, size, cache, repeat)
                    self._tick()

    def concurrent_read(self, sandbox: Sandbox) -> None:
        """``n`` containers read a big file whole at once, cold. vfs: each its own copy on the host
        filesystem (the device's bandwidth is shared); overlay2: the one lower file (the page
        cache is shared: they wait on the same pages)."""
        plan, fs = self.plan, host_description()["host_fs"].split()[0]
        size, largest = plan.concurrent_read_size, max(plan.concurrency)
        image, target = image_of(size, 1, 1)
        copies = [sandbox.path("vfsread", f"c{index}") for index in range(largest)]
        for copy in copies:
            materialize(image.layers[0], copy)
        layers = Layers(sandbox, sandbox.path("overlayread"), image)
        os.sync()
        buffers = [bytearray(MIB) for _ in range(largest)]
        for repeat in range(plan.repeats):
            for count in plan.concurrency:
                for driver in ("vfs", "overlay2"):
                    mounts = [layers.mount("overlay", 1) for _ in range(count)] if driver == "overlay2" else []
                    tops = [merged for merged, _ in mounts] or copies[:count]
                    with opened_roots(tops, mounts) as roots:
                        drop_caches()
                        latencies, makespan = at_once([lambda root=root, buffer=buffer: read_whole(root, target, buffer)
                                                       for root, buffer in zip(roots, buffers)])
                    self._record_at_once("read", latencies, makespan, driver, fs, size, "cold", repeat)
                    self._tick()

    def directory_entries(self, sandbox: Sandbox) -> None:
        """Cold lookups (stat) of a file whose directory holds ``dir_entries`` names in every
        layer, under kernel overlayfs and fuse-overlayfs, at several layer counts."""
        plan, fs = self.plan, host_description()["host_fs"].split()[0]
        kinds = [("overlay", "overlay2")] + ([("fuse", "fuse-overlayfs")] if shutil.which("fuse-overlayfs") else [])
        if len(kinds) == 1:
            self.rec.skipped.append("directory entries under fuse-overlayfs: fuse-overlayfs not installed")
        points = []
        for entries in plan.dir_entries:
            image, target = image_of(plan.small_file, max(plan.entries_layer_counts), 1, entries)
            points.append((entries, target, Layers(sandbox, sandbox.path(f"entries{entries}"), image)))
        os.sync()
        for repeat in range(plan.repeats):
            for entries, target, layers in points:
                for count in plan.entries_layer_counts:
                    for kind, driver in kinds:
                        result = _container_run(layers, kind, count, target, "cold", lookup=True)
                        self.rec.add("lookup", "dir_entries", driver, fs, "", plan.small_file, count, 1, "cold",
                                     repeat, result["lookup"], dir_entries=entries)
                        self._tick()

    def btrfs_walk(self, sandbox: Sandbox) -> None:
        """btrfs: cold lookup (stat) and cold first write of a file ``dir_depth`` directories down
        in a container (a snapshot of the image's -init snapshot, as Docker's driver makes it)."""
        plan = self.plan
        mount = sandbox.loop_filesystem("btrfs", 512 * MIB, "btrfs")
        sources = []
        for depth in plan.btrfs_depths:
            image, target = image_of(plan.small_file, 1, depth)
            source = btrfs_subvolume(mount, f"image{depth}")
            materialize(image.layers[0], source)
            sources.append((depth, target, btrfs_snapshot(source, mount, f"init{depth}")))
        os.sync()
        for repeat in range(plan.repeats):
            for depth, target, init in sources:
                container = btrfs_snapshot(init, mount, f"c{depth}-{repeat}")
                root = os.open(container, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    drop_caches()
                    result = {"lookup": timed_stat(root, target)}
                    drop_caches()
                    result["first_write"] = timed_write(root, target)
                    result["second_write"] = timed_write(root, target)
                finally:
                    os.close(root)
                self._record(result, ("lookup", "first_write", "second_write"), "dir_depth", "btrfs", "btrfs", "",
                             plan.small_file, 1, depth, "cold", repeat)
                self._tick()

    def steps(self) -> list[tuple[str, Callable[[Sandbox], None], int]]:
        """(name, experiment, timed runs) in the order they run."""
        p = self.plan
        host_runs = 2 * p.repeats * (len(p.sizes) + len(p.layer_counts) + len(p.dir_depths))
        return [("overlay on the host filesystem", self.overlay_host, host_runs),
                ("overlay container creation", self.overlay_create, p.repeats * len(p.image_sizes)),
                ("overlay on xfs with reflink (loop device)", self.overlay_xfs_reflink, p.repeats * len(p.clone_sizes)),
                ("fuse-overlayfs", self.fuse_overlay, p.repeats * (len(p.fuse_sizes) + len(p.fuse_layer_counts))),
                ("btrfs snapshots (loop device)", self.btrfs_create, p.repeats * len(p.image_sizes)),
                ("vfs full copies", self.vfs_create, p.repeats * len(p.image_sizes)),
                ("concurrent copy-ups (overlay)", self.concurrent_copy_up, 2 * p.repeats * len(p.concurrency)),
                ("concurrent reads (vfs, overlay)", self.concurrent_read, 2 * p.repeats * len(p.concurrency)),
                ("directory entries (overlay, fuse-overlayfs)", self.directory_entries,
                 2 * p.repeats * len(p.dir_entries) * len(p.entries_layer_counts)),
                ("btrfs walks (loop device)", self.btrfs_walk, p.repeats * len(p.btrfs_depths))]

    def run(self, workdir: str | Path | None = None, only: tuple[str, ...] = ()) -> Recorder:
        if not is_root():
            raise Skip("calibration needs root (mounts, loop devices, drop_caches)")
        steps = [s for s in self.steps() if not only or any(word in s[0] for word in only)]
        with tqdm(total=sum(s[2] for s in steps), desc="calibrate", unit="run", leave=False) as self.bar:
            for name, experiment, _ in steps:
                try:
                    with Sandbox(workdir, prefix="cowsim-calibrate-") as sandbox:
                        experiment(sandbox)
                    self.progress(f"measured: {name}")
                except Skip as reason:
                    self.rec.skipped.append(f"{name}: {reason}")
                    self.progress(f"skipped: {name}: {reason}")
        self.bar = None
        return self.rec


def measure(quick: bool = False, workdir: str | Path | None = None, progress=None,
            only: tuple[str, ...] = ()) -> Recorder:
    """Run the experiments (root only); the recorder holds the rows and what was skipped."""
    return Calibration(QUICK if quick else FULL, Recorder(), progress).run(workdir, only)


__all__ = ["measure", "Calibration", "Plan", "FULL", "QUICK", "Recorder", "COLUMNS", "host_description"]
