"""A host: one storage driver, volumes beside it, containers on top, and the engine below.

The host routes each container operation to the driver or, for a path under a mount point, to
the volume's own filesystem (volumes bypass the driver), runs the plan on the engine and
records it. It also answers ``docker ps -s``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .drivers import Driver, NativeDriver
from .engine import Engine
from .image import Image, Layer, is_below
from .operation import Op
from .plan import PHASES, SETUP, Plan
from .records import OpRecords

if TYPE_CHECKING:
    from .logs import ContainerLogs


@dataclass
class Mount:
    volume: str
    path: str  # mount point inside the container, relative (``data``)
    kind: str = "named"  # named: filled from the image directory on first use; bind: host directory


@dataclass
class Container:
    cid: int
    image: Image
    mounts: list[Mount] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.label = str(self.cid)  # the records' ``container`` column, made once rather than per operation


class Host:
    def __init__(self, driver: Driver, engine: Engine, records: OpRecords | None = None):
        self.driver = driver
        self.engine = engine
        self.env = engine.env
        self.records = records if records is not None else OpRecords()
        self.volume_fs = NativeDriver(profile=engine.profile)
        self.volumes: dict[str, Image] = {}
        self.containers: dict[int, Container] = {}
        self.images: dict[str, Image] = {}  # the images on the node, by name, in the order laid
        # Every layer on the node (stored once however many images hold it) -> names of the images
        # holding it. Layers are shared by identity: images built from one scenario hold the same
        # Layer object where their chain IDs agree (``runner.build_images``).
        self.layers: dict[Layer, set[str]] = {}
        self.logs: ContainerLogs | None = None  # the containers' log files, when they print (sim/logs.py)
        # Called with the container's id when one of its operations (``run_op``, ``run_ops``) has
        # ended and been recorded (the logs count what containers print per operation).
        self.completed: Callable[[int], object] | None = None

    # -- running plans -------------------------------------------------------------------------
    def execute(self, label: str, worker: int, op_name: str, path: str, nbytes: int, plan: Plan):
        """The process body that runs ``plan`` and records it; ``label`` is the record's container
        column ("host" for the image)."""
        return self.engine.run(((plan, label, worker, op_name, path, nbytes),), self.records.add)

    def prepare_image(self, image: Image):
        """Lay the image on the node; the layers it shares with images already there stay as they
        are (a shared stack is always a bottom part of each image)."""
        self.driver.check_layers(len(image.layers))
        self.images[image.name] = image
        present = 0
        while present < len(image.layers) and image.layers[present] in self.layers:
            present += 1
        for layer in image.layers:
            self.layers.setdefault(layer, set()).add(image.name)
        laid = sum(layer.size for layer in image.layers[present:])
        yield from self.execute("host", 0, "prepare_image", image.name, laid,
                                self.driver.prepare_image(image, present))

    def remove_image(self, name: str):
        """``docker rmi``: the image's name goes; of its layers, those no other image holds are
        deleted (from the top down to the first shared one)."""
        if any(container.image.name == name for container in self.containers.values()):
            raise ValueError(f"image {name!r} is run by a container: remove the container first")
        image = self.images.pop(name)
        kept = len(image.layers)
        for index in range(len(image.layers) - 1, -1, -1):
            holders = self.layers[image.layers[index]]
            holders.discard(name)
            if not holders and kept == index + 1:
                del self.layers[image.layers[index]]
                kept = index
        freed = sum(layer.size for layer in image.layers[kept:])
        yield from self.execute("host", 0, "remove_image", name, freed, self.driver.remove_image(image, kept))

    def unused_images(self) -> list[str]:
        """Names of the images no container runs (what ``docker image prune -a`` removes)."""
        used = {container.image.name for container in self.containers.values()}
        return [name for name in self.images if name not in used]

    def settle(self):
        """Wait until the disk is idle: what preparing the image and creating the containers
        wrote is on disk (as after ``sync``). Recorded as the setup operation ``settle``."""
        start = self.env._now
        yield from self.engine.settle()
        self.record_setup("host", "settle", "", 0, start)

    def record_setup(self, label: str, op_name: str, path: str, nbytes: int, start: float) -> None:
        """A setup row of the operation table for work that is no plan of its own (waiting for the
        disk, a pull, a download, a start-up): from ``start`` until now, all in the setup phase."""
        phase_s = [0.0] * len(PHASES)
        phase_s[SETUP] = self.env._now - start
        self.records.add(label, 0, op_name, path, nbytes, start, self.env._now, Plan(), phase_s, 0, 0, 0, 0)

    def create_container(self, cid: int, image: Image, mounts: Sequence[Mount] = ()):
        container = Container(cid, image, list(mounts))
        self.containers[cid] = container
        plan = self.driver.create_container(cid, image)
        for mount in container.mounts:
            if mount.volume not in self.volumes:
                seed = image.entries_below(mount.path) if mount.kind == "named" else []
                relative = [(p[len(mount.path) + 1:], k, s) for p, k, s in seed]
                self.volumes[mount.volume] = self.volume_fs.create_volume(("vol", mount.volume), relative, plan)
        if self.logs is not None:
            self.logs.created(cid, plan)
        yield from self.execute(container.label, 0, "create_container", "", 0, plan)

    def remove_container(self, cid: int):
        plan = self.driver.remove_container(cid)
        container = self.containers.pop(cid)
        if self.logs is not None:
            self.logs.removed_with(cid, plan)
        yield from self.execute(container.label, 0, "remove_container", "", 0, plan)

    def route(self, container: Container, path: str) -> tuple[Driver, Any, str] | None:
        for mount in container.mounts:
            if is_below(path, mount.path) and path != mount.path:
                return self.volume_fs, ("vol", mount.volume), path[len(mount.path) + 1:]
        return None

    def stat(self, cid: int, path: str):
        """What container ``cid`` sees at ``path``, through its volumes too (an ``Entry``, or
        None): the namespace as it is, at no cost, for a workload to decide what to do."""
        routed = self.route(self.containers[cid], path)
        if routed is not None:
            fs, key, relative = routed
            return fs.stat(key, relative)
        return self.driver.stat(cid, path)

    def plan(self, cid: int, op: Op) -> Plan:
        container = self.containers[cid]
        if not container.mounts:
            return self.driver.apply(cid, op)
        routed = self.route(container, op.path)
        routed_target = self.route(container, op.target) if op.kind == "rename" else None
        if op.kind == "rename" and (routed is None) != (routed_target is None):
            plan = Plan()
            plan.error = "EXDEV"  # across a mount boundary
            return plan
        if routed is None:
            return self.driver.apply(cid, op)
        fs, key, relative = routed
        target = routed_target[2] if routed_target is not None else ""
        return fs.apply(key, Op(op.kind, relative, op.offset, op.nbytes, target, op.sync))

    def run_op(self, cid: int, worker: int, op: Op, name: str | None = None):
        """The process body that plans ``op`` when it starts (``yield from`` it: at once),
        executes it and records it as ``name`` (its kind by default)."""
        return self.run_ops(cid, worker, (op,), name)

    def run_ops(self, cid: int, worker: int, ops: Iterable[Op], name: str | None = None):
        """The process body that runs container ``cid``'s operations ``ops`` one after another,
        each planned when the previous one has ended (a closed loop draws it then), in one
        generator (:meth:`Engine.run`)."""
        return self.engine.run(self._planned(cid, worker, ops, name), self.records.add)

    def _planned(self, cid: int, worker: int, ops: Iterable[Op], name: str | None):
        """Each of ``ops`` planned as the engine asks for it, with its record columns; the
        completion hook (:attr:`completed`) called once it has ended."""
        container = self.containers[cid]
        label = container.label
        completed = self.completed
        plan = self.plan if container.mounts else self.driver.apply  # no volume to route to: the driver's
        for op in ops:
            yield plan(cid, op), label, worker, name or op.kind, op.path, op.nbytes
            if completed is not None:
                completed(cid)

    # -- disk usage ----------------------------------------------------------------------------
    def container_space(self, cid: int) -> dict:
        container = self.containers[cid]
        row = {"container": str(cid), "image": container.image.name}
        row.update(self.driver.space(cid))
        return row

    def space(self) -> list[dict]:
        """``docker ps -s`` rows per container, per image, per volume, per container's logs, and
        a total row.

        ``size_bytes`` is SIZE (the writable layer), ``virtual_bytes`` SIZE + the image, and
        ``real_bytes`` what the driver really holds. In the total row, ``size_bytes`` sums the
        containers' SIZE, ``virtual_bytes`` adds each distinct image once (Docker's rule; summing
        virtual sizes would count the image N times) and ``real_bytes`` sums everything held,
        logs included (Docker leaves them out of SIZE, the disk does not).
        """
        rows = [dict(kind="container", **self.container_space(cid)) for cid in sorted(self.containers)]
        for image in self.images.values():
            rows.append({"kind": "image", "container": "", "image": image.name, "size_bytes": image.virtual_size,
                         "virtual_bytes": image.virtual_size, "real_bytes": self.driver.image_real_bytes(image)})
        for name in sorted(self.volumes):
            held = self.volume_fs.container_real_bytes(("vol", name))
            rows.append({"kind": "volume", "container": "", "image": name, "size_bytes": held,
                         "virtual_bytes": held, "real_bytes": held})
        if self.logs is not None:  # on the host filesystem, out of SIZE, in the node's real bytes
            rows.extend(self.logs.space_rows())
        containers = [r for r in rows if r["kind"] == "container"]
        # Virtual sizes are never summed: the total is every SIZE plus each distinct layer once
        # (with one image, the image once); so are the layers' real bytes, beside everything else held.
        container_size = sum(r["size_bytes"] for r in containers)
        layers = self.layer_bytes()
        rows.append({"kind": "total", "container": "", "image": "", "size_bytes": container_size,
                     "virtual_bytes": container_size + sum(size for size, _ in layers.values()),
                     "real_bytes": sum(r["real_bytes"] for r in rows if r["kind"] != "image")
                     + sum(real for _, real in layers.values())})
        return rows

    def layer_bytes(self) -> dict[Layer, tuple[int, int]]:
        """Every layer on the node, once: (its size, the bytes it really holds under the driver)."""
        found: dict[Layer, tuple[int, int]] = {}
        for image in self.images.values():
            for index, layer in enumerate(image.layers):
                if layer not in found:
                    found[layer] = (layer.size, self.driver.layer_real_bytes(image, index))
        return found

    def system_df(self, space: list[dict] | None = None) -> list[dict]:
        """``docker system df`` (one row per type, and a total) and ``docker system df -v``'s
        per-image rows; from ``space``, the node's :meth:`space` rows now, when given (measuring
        what a container holds can cost: vfs walks its copy).

        An image's size is all its layers'; its shared size the layers other images on the node
        hold too; its unique size the rest. The images' row counts each layer once, and what is
        reclaimable there is the layers no container's image holds (what ``docker image prune -a``
        frees; ``docker_reclaimable_bytes`` is the figure Docker prints, which also counts the
        shared layers of images in use). Containers are running: none of their SIZE is
        reclaimable. A volume no container mounts is reclaimable (``docker volume prune``). Logs
        are the containers' json-file logs, which ``docker rm`` deletes. ``real_bytes`` is what
        the driver and the host filesystem really hold, each layer once.
        """
        space = self.space() if space is None else space
        held = {(row["kind"], row["container"] or row["image"]): row for row in space}
        layers = self.layer_bytes()
        running = [container.image.name for container in self.containers.values()]
        in_use = {layer for image in self.images.values() if image.name in running for layer in image.layers}
        rows = []
        for image in self.images.values():
            shared = sum(layer.size for layer in image.layers if len(self.layers[layer]) > 1)
            rows.append(_df_row("image", image.name, 1, int(image.name in running), image.virtual_size,
                                shared=shared, reclaimable=0 if image.name in running else image.virtual_size - shared,
                                real=held["image", image.name]["real_bytes"], containers=running.count(image.name)))
        mounted = {mount.volume for container in self.containers.values() for mount in container.mounts}
        volumes = {name: held["volume", name]["real_bytes"] for name in sorted(self.volumes)}
        containers = [held["container", container.label] for container in self.containers.values()]
        logs = sum(row["real_bytes"] for row in space if row["kind"] == "logs")
        images_size = sum(size for size, _ in layers.values())
        # Docker's own figure: the layers' size less the unique size of every image a container
        # runs, so the shared layers of images in use count as reclaimable too (docker/cli
        # cli/command/formatter/disk_usage.go); a prune frees only what ``reclaimable`` says.
        docker_reclaimable = max(0, images_size - sum(r["unique_bytes"] for r in rows if r["containers"]))
        totals = [
            _df_row("images", "", len(self.images), len(set(running)), images_size,
                    reclaimable=sum(size for layer, (size, _) in layers.items() if layer not in in_use),
                    real=sum(real for _, real in layers.values()), docker_reclaimable=docker_reclaimable),
            _df_row("containers", "", len(self.containers), len(self.containers),
                    sum(row["size_bytes"] for row in containers), real=sum(row["real_bytes"] for row in containers)),
            _df_row("volumes", "", len(volumes), len(mounted & volumes.keys()), sum(volumes.values()),
                    reclaimable=sum(held for name, held in volumes.items() if name not in mounted),
                    real=sum(volumes.values())),
            _df_row("logs", "", len(self.containers), len(self.containers), logs, real=logs),
        ]
        totals.append(_df_row("total", "", 0, 0, sum(r["size_bytes"] for r in totals),
                              reclaimable=sum(r["reclaimable_bytes"] for r in totals),
                              real=sum(r["real_bytes"] for r in totals),
                              docker_reclaimable=sum(r["docker_reclaimable_bytes"] for r in totals)))
        return rows + totals


def _df_row(kind: str, name: str, count: int, active: int, size: int, *, shared: int = 0, reclaimable: int = 0,
            real: int, containers: int = 0, docker_reclaimable: int | None = None) -> dict:
    """One row of the system df table (all columns in every row, so that runs' tables line up)."""
    return {"kind": kind, "name": name, "count": count, "active": active, "containers": containers,
            "size_bytes": size, "shared_bytes": shared, "unique_bytes": size - shared,
            "reclaimable_bytes": reclaimable, "real_bytes": real,
            "docker_reclaimable_bytes": reclaimable if docker_reclaimable is None else docker_reclaimable}
