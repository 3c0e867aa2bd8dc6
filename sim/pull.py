"""``docker pull`` and container start-up on a node (docs/model.md, "Pulling an image").

The registry is one network link: a request pays a round trip and the registry's time to its
first byte, then its bytes share the link's bandwidth with every download in flight. That is
the engine's :class:`~sim.engine.Disk` (exact processor sharing) on the registry's figures, a
second instance beside the disk, not a model of its own.

The pipeline follows moby's layer download manager (``distribution/xfer/download.go``): the
layers of an image are walked bottom-up; a layer whose chain ID (itself on every layer below:
one ``Layer`` object in every image, ``Host.layers``) is on the node already is skipped
("Already exists"), one being pulled by another pull is waited for (transfers are shared by
key); the others are downloaded, at most
``max_concurrent_downloads`` at a time over every pull (the transfer manager's limit, a slot
held until the download ends), each into a temporary file (``pull_v2.go``). A layer is then
registered on its parent once the parent is registered: its data decompressed
(``archive.DecompressStream``) and unpacked through the driver's own path
(:meth:`~sim.drivers.base.Driver.create_layer`, then the untar), decompression and untar the
stages of one pipe running side by side. Decompression runs on the host's cores in bursts of
:data:`DECOMPRESS_CHUNK` bytes, so that other work interleaves with it as the scheduler's time
slices allow.

A container's start-up is its pull (when its image is not on the node), its creation, its
start (``container_start`` of CPU) and its first reads; it counts as running after them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from .engine import Disk, Transfer
from .host import Host, Mount
from .image import Image, Layer
from .operation import Op
from .plan import DISK_WRITE, SETUP, SYNC, WRITEBACK, Plan
from .profile import DiskProfile, Profile
from .scenario import NodeSpec

DECOMPRESS_CHUNK = 2**20  # bytes of layer data per decompression burst: ~5 ms of gzip, about a time slice
EXISTS, FETCHED, SHARED = "already exists", "fetched", "shared"  # what a pull did with a layer


def registry_link(profile: Profile, env: simpy.Environment) -> Disk:
    """The network link to the registry, shared by the downloads in flight as a disk's bandwidth
    is by its transfers: a request's access time is its round trip plus the registry's overhead,
    and requests overlap their access times (each on a connection of its own)."""
    registry = profile.registry
    latency = registry.round_trip + registry.request_overhead
    link = DiskProfile(read_bandwidth=registry.bandwidth, write_bandwidth=registry.bandwidth,
                       read_latency=latency, write_latency=latency, fsync_latency=0.0, queue_depth=1024,
                       latency_cv=0.0)
    return Disk(profile.model_copy(update={"disk": link}), env)


def transferred(device: Disk, transfer: Transfer):
    """A process body: wait until ``transfer`` has ended."""
    env = device.env
    finish = device.finish_time(transfer, env.now)
    if finish > env.now:
        yield device.wait(transfer, finish)
    transfer.done = True


def written_bytes(plan: Plan) -> int:
    """Bytes a plan sends to the disk (written back, synced or written below the cache)."""
    return sum(step[2] for step in plan.steps if step[0] in (WRITEBACK, SYNC, DISK_WRITE))


@dataclass
class LayerPull:
    """One layer as a pull met it: what it fetched, wrote, and when each stage ran [s, bytes]."""

    image: str
    layer: int
    status: str  # fetched, already exists, or shared (another pull in flight fetched it)
    size_bytes: int
    fetched_bytes: int = 0
    written_bytes: int = 0
    queued_s: float = float("nan")         # asked for a download slot
    download_start_s: float = float("nan")
    download_s: float = float("nan")
    decompress_s: float = float("nan")
    extract_start_s: float = float("nan")  # its parent registered and its data downloaded
    extract_s: float = float("nan")        # from then until it is registered (decompress and untar)


class Puller:
    """dockerd's pulls on one node: the registry link, the download slots, the layers there."""

    def __init__(self, host: Host, spec: NodeSpec) -> None:
        self.host = host
        self.env = host.env
        profile = host.engine.profile
        self.registry = profile.registry
        self.link = registry_link(profile, self.env)
        self.slots = simpy.Resource(self.env, capacity=spec.max_concurrent_downloads)
        self.rate = profile.costs.gzip_decompress_rate if spec.compression == "gzip" else \
            profile.costs.zstd_decompress_rate
        self.fraction = spec.compressed_fraction
        # Layers being registered (the same chain is the same Layer object in every image, so a
        # Layer stands for its chain ID): triggered once registered. Registered layers are the
        # host's (``Host.layers``).
        self.registering: dict[Layer, simpy.Event] = {}
        self.layers: list[LayerPull] = []
        self.pull_s: list[float] = []

    def compressed(self, size: int) -> int:
        return int(size * self.fraction)

    def pull(self, image: Image, label: str):
        """A process body: ``docker pull`` of ``image``; ``label`` is the records' container column."""
        env, host = self.env, self.host
        host.driver.check_layers(len(image.layers))
        start = env.now
        if self.registry.manifest_requests:
            yield from transferred(self.link, self.link.read(env.now, 0, self.registry.manifest_requests))
        fetched = 0
        parent: simpy.Event | None = None
        for index, layer in enumerate(image.layers):
            registered = self.registering.get(layer)
            if layer in host.layers and (registered is None or registered.triggered):
                record = LayerPull(image.name, index, EXISTS, layer.size)
                registered = None
            elif registered is not None:
                record = LayerPull(image.name, index, SHARED, layer.size)
            else:
                registered = self.registering[layer] = env.event()
                record = LayerPull(image.name, index, FETCHED, layer.size, self.compressed(layer.size))
                fetched += record.fetched_bytes
                env.process(self._layer(image, index, parent, registered, record, label))
            self.layers.append(record)
            parent = registered
        if parent is not None and not parent.processed:
            yield parent
        host.images[image.name] = image
        for layer in image.layers:
            host.layers.setdefault(layer, set()).add(image.name)
        self.pull_s.append(env.now - start)
        self.host.record_setup(label, "pull", image.name, fetched, start)

    def _layer(self, image: Image, index: int, parent: simpy.Event | None, registered: simpy.Event,
               record: LayerPull, label: str):
        """Download one layer (holding a slot), then register it on its parent."""
        env, host = self.env, self.host
        path = f"{image.name}@{index}"
        record.queued_s = env.now
        with self.slots.request() as slot:
            yield slot
            record.download_start_s = env.now
            yield from transferred(self.link, self.link.read(env.now, record.fetched_bytes,
                                                             self.registry.blob_requests))
        record.download_s = env.now - record.download_start_s
        self.host.record_setup(label, "download", path, record.fetched_bytes, record.download_start_s)
        # The blob lands in a temporary file as it arrives, written back in the background; its
        # copy into the page cache is charged once the slot is free (it overlapped the download).
        blob = Plan().write(SETUP, ("blob", path), 0, record.fetched_bytes).writeback(SETUP, record.fetched_bytes)
        yield from host.engine.execute(blob)
        if parent is not None and not parent.processed:
            yield parent
        record.extract_start_s = env.now
        driver = host.driver
        create = driver.create_layer(image, index)
        yield from host.execute(label, 0, "create_layer", path, written_bytes(create), create)
        # then the blob is read back, inflated and unpacked: the stages of one pipe, side by side
        untar = Plan().read(SETUP, ("blob", path), 0, record.fetched_bytes, record.fetched_bytes)
        untar.extend(driver.untar_layer(image, index))
        record.written_bytes = written_bytes(blob) + written_bytes(create) + written_bytes(untar)
        decompress = env.process(self._decompress(record, label, path))
        yield env.all_of([decompress, env.process(host.execute(label, 0, "extract_layer", path, record.size_bytes,
                                                               untar))])
        record.extract_s = env.now - record.extract_start_s
        host.layers.setdefault(image.layers[index], set()).add(image.name)
        registered.succeed()

    def _decompress(self, record: LayerPull, label: str, path: str):
        """Inflate the layer's data on the host's cores, a chunk per burst."""
        env, cores = self.env, self.host.engine.cores
        start = env.now
        left = record.size_bytes
        while left > 0:
            chunk = min(left, DECOMPRESS_CHUNK)
            left -= chunk
            finish = cores.run(env.now, chunk / self.rate)
            yield env.timeout(finish - env.now)
        record.decompress_s = env.now - start
        self.host.record_setup(label, "decompress", path, record.size_bytes, start)


def pull_alone(driver: str, images: Sequence[Image], spec: NodeSpec | None = None,
               profile: Profile | None = None) -> Puller:
    """Pull ``images`` one after another on an empty node of its own (the driver's defaults);
    the puller holds what each layer cost (tests and ``benchmarks/pull_extraction.py``)."""
    from .drivers import get_driver
    from .engine import Engine
    from .profile import load_profile
    profile = profile or load_profile("ssd")
    host = Host(get_driver(driver)(None, profile), Engine(profile))
    puller = Puller(host, spec or NodeSpec(images_present=False))

    def body():
        for image in images:
            yield from puller.pull(image, "host")

    host.env.process(body())
    host.env.run()
    return puller


def first_reads(image: Image, fraction: float) -> list[tuple[str, int]]:
    """The files a starting container reads whole: its image's, in path order, until they hold
    ``fraction`` of the image's file bytes."""
    if fraction <= 0:
        return []
    goal = fraction * image.merged_size
    chosen, total = [], 0
    for path in image.files:
        if total >= goal:
            break
        size = image.merged[path][1]
        chosen.append((path, size))
        total += size
    return chosen


class Startup:
    """Containers arriving on a node, one every ``arrival_interval``: each pulls what its image
    lacks (when the node starts without its images), is created and started, and reads its
    first files; then it is running."""

    def __init__(self, host: Host, spec: NodeSpec, settle: bool) -> None:
        self.host, self.spec, self.settle = host, spec, settle
        self.puller = None if spec.images_present else Puller(host, spec)
        self.arrived: dict[int, float] = {}
        self.running: dict[int, float] = {}

    def run(self, images: Sequence[Image], containers: Sequence[tuple[int, Image]], mounts: Sequence[Mount]):
        """A process body: the node's ``images`` laid on it (when it has them), then every
        container (id, image) started, in arrival order."""
        host, env = self.host, self.host.env
        if self.puller is None:
            for image in images:
                yield from host.prepare_image(image)
            if self.settle:
                yield from host.settle()
        begin = env.now
        starts = [env.process(self._container(cid, image, mounts, begin + order * self.spec.arrival_interval))
                  for order, (cid, image) in enumerate(containers)]
        yield env.all_of(starts)

    def _container(self, cid: int, image: Image, mounts: Sequence[Mount], arrival: float):
        host, env = self.host, self.host.env
        if arrival > env.now:
            yield env.timeout(arrival - env.now)
        self.arrived[cid] = env.now
        label = str(cid)
        if self.puller is not None and image.name not in host.images:
            yield from self.puller.pull(image, label)
        yield from host.create_container(cid, image, mounts)
        start = Plan().cpu(SETUP, host.engine.profile.costs.container_start)
        yield from host.execute(label, 0, "start_container", "", 0, start)
        for path, size in first_reads(image, self.spec.first_read_fraction):
            yield from host.run_op(cid, 0, Op("read", path, 0, size), "first_read")
        self.running[cid] = env.now
        host.record_setup(label, "startup", image.name, 0, self.arrived[cid])

    def summary(self) -> dict:
        """The start-up's figures for the run's summary row."""
        startup = np.array([self.running[cid] - self.arrived[cid] for cid in sorted(self.running)])
        first = min(self.arrived.values())
        row = {"all_running_s": max(self.running.values()) - first,
               "startup_mean_s": float(startup.mean()), "startup_max_s": float(startup.max())}
        layers = self.puller.layers if self.puller is not None else []
        pulls = self.puller.pull_s if self.puller is not None else []
        row.update({
            "pulls": len(pulls),
            "pull_mean_s": float(np.mean(pulls)) if pulls else float("nan"),
            "pull_max_s": float(np.max(pulls)) if pulls else float("nan"),
            "layers_fetched": sum(1 for layer in layers if layer.status == FETCHED),
            "layers_existing": sum(1 for layer in layers if layer.status != FETCHED),
            "pull_fetched_bytes": sum(layer.fetched_bytes for layer in layers),
            "pull_written_bytes": sum(layer.written_bytes for layer in layers),
            "images_real_bytes": sum(real for _, real in self.host.layer_bytes().values()),
        })
        return row


__all__ = ["Puller", "Startup", "LayerPull", "registry_link", "first_reads", "pull_alone",
           "DECOMPRESS_CHUNK"]
