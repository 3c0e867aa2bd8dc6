"""A host: one storage driver, volumes beside it, containers on top, and the engine below.

The host routes each container operation to the driver or, for a path under a mount point, to
the volume's own filesystem (volumes bypass the driver), runs the plan on the engine and
records it. It also answers ``docker ps -s``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .drivers import Driver, NativeDriver
from .engine import Engine, OpResult
from .image import Image, is_below
from .operation import Op
from .plan import Plan
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
        self.images: dict[str, Image] = {}
        self.logs: ContainerLogs | None = None  # the containers' log files, when they print (sim/logs.py)

    # -- running plans -------------------------------------------------------------------------
    def execute(self, label: str, worker: int, op_name: str, path: str, nbytes: int, plan: Plan):
        """Run ``plan`` and record it; ``label`` is the record's container column ("host" for the image)."""
        result = OpResult()
        start = self.env._now
        yield from self.engine.execute(plan, result)
        self.records.add(label, worker, op_name, path, nbytes, start, self.env._now, plan, result)
        return plan

    def prepare_image(self, image: Image):
        self.driver.check_layers(len(image.layers))
        self.images[image.name] = image
        yield from self.execute("host", 0, "prepare_image", image.name, image.virtual_size,
                                self.driver.prepare_image(image))

    def settle(self):
        """Wait until the disk is idle: what preparing the image and creating the containers
        wrote is on disk (as after ``sync``). Recorded as the setup operation ``settle``."""
        result = OpResult()
        start = self.env._now
        yield from self.engine.settle(result)
        self.records.add("host", 0, "settle", "", 0, start, self.env._now, Plan(), result)

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
        """Plan ``op`` now and return the process body that executes and records it.

        Not a generator itself: ``yield from host.run_op(...)`` plans exactly when a generator
        would (at once), one generator level fewer per operation. A body that must plan when its
        own process starts, not when it is created, wraps this in a generator
        (``workloads._arrived_op``, for the open loop's arrivals).
        """
        return self.execute(self.containers[cid].label, worker, name or op.kind, op.path, op.nbytes,
                            self.plan(cid, op))

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
        images = [r for r in rows if r["kind"] == "image"]
        # Virtual sizes are never summed: the total is every SIZE plus each distinct image once.
        container_size = sum(r["size_bytes"] for r in containers)
        rows.append({"kind": "total", "container": "", "image": "", "size_bytes": container_size,
                     "virtual_bytes": container_size + sum(r["virtual_bytes"] for r in images),
                     "real_bytes": sum(r["real_bytes"] for r in rows)})
        return rows
