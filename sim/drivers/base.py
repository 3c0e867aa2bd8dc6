"""What every storage driver shares: the registry and the common flow of each operation.

A driver is a pure copy-on-write strategy: it turns one logical operation of one container into
a :class:`~sim.plan.Plan` and updates its own bookkeeping (views, private blocks). It never
touches SimPy. Subclasses fill in a handful of hooks; the flow of each operation is written once.
"""
from __future__ import annotations

import math
import zlib
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from ..fsview import TOP, ContainerView, CopyUp, FsError
from ..image import DIR, FILE, Image, parent_of, prefixes
from ..operation import OPERATIONS, Op
from ..plan import CPU, DATA, FSYNC, LOOKUP, PROBE, READ, SETUP, Plan
from ..profile import Profile

DOCKER_IMAGE_LAYER_LIMIT = 125  # 127 minus the -init and container layers (moby layer_store.go)
PAGE = 4096


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerLimitError(ValueError):
    pass


REGISTRY: dict[str, type[Driver]] = {}


def register(cls: type[Driver]) -> type[Driver]:
    REGISTRY[cls.name] = cls
    return cls


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class Driver:
    """Base of every driver. ``name``, ``max_layers`` and ``Options`` describe it."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    max_layers: ClassVar[int] = DOCKER_IMAGE_LAYER_LIMIT  # image layers the driver can mount
    layer_limit_reason: ClassVar[str] = "Docker caps images at 125 layers (127 minus -init and container layers)"
    Options: ClassVar[type[BaseModel]] = NoOptions
    shares_page_cache: ClassVar[bool] = True
    # A first write keeps the image's inode (and so its hard links): True where the container's
    # tree holds the image's files themselves (snapshots, full copies); a union copy-up makes a
    # new upper inode instead (``ContainerView.keep_links``).
    keeps_image_inodes: ClassVar[bool] = True
    # Any directory can be renamed: only a union needs redirect_dir to move an image directory
    # (the view records the move as a redirect, which is the same namespace).
    renames_lower_dirs: bool = True  # (a union driver's depends on its options: set per instance)
    # A lookup of an image name whose parent has no upper directory, in a container that changed
    # nothing on the way to it nor at it, probes what it would in any container of the image
    # (probe keys, CPU and probe lock): the step differs only by its dentry's mount. False where
    # the probe keys hold the mount (a container's own tree: vfs, devicemapper).
    probes_shared_by_image: ClassVar[bool] = False

    def __init__(self, options: BaseModel | dict | None = None, profile: Profile | None = None):
        from ..profile import load_profile
        self.options = options if isinstance(options, BaseModel) else self.Options.model_validate(options or {})
        self.profile = profile or load_profile()
        self.costs = self.profile.costs
        # Costs that are the same for every operation, computed once (drivers adjust them)
        self.per_op_cpu = self.costs.syscall  # seconds of every operation: the system call
        self.probe_cpu = self.costs.layer_probe  # seconds per layer (or tree) a lookup searches
        # Bytes per second a transfer of data through a user-space daemon takes CPU at (None: the
        # kernel's own page cache copies, charged by the engine)
        self.transfer_rate: float | None = None
        self.views: dict[int, ContainerView] = {}
        self.mounts: dict[int, object] = {}  # per container: its mount_id, built once (every dentry key holds it)
        self._operations = {kind: getattr(self, "_op_" + kind) for kind in OPERATIONS}  # apply: per op
        self._probe_locks = type(self).probe_lock is not Driver.probe_lock  # a lookup asks for its lock
        self.images: dict[int, Image] = {}
        # per image, the entry and step tail of a name looked up through ``probes_shared_by_image``
        # (the image object: an id could be reused by a later image); per container, its image's
        self._names: dict[Image, dict[str, tuple]] = {}
        self._image_names: dict[int, dict[str, tuple]] = {}

    # -- limits --------------------------------------------------------------------------------
    @classmethod
    def check_layers(cls, layers: int) -> None:
        limit = min(cls.max_layers, DOCKER_IMAGE_LAYER_LIMIT)
        if layers > limit:
            raise LayerLimitError(f"{cls.name} allows at most {limit} image layers, got {layers}: "
                                  f"{cls.layer_limit_reason}")
        if layers < 1:
            raise LayerLimitError(f"an image needs at least 1 layer, got {layers}")

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare_image(self, image: Image, present: int = 0) -> Plan:
        """Lay the image's layers on disk (what a pull leaves behind), but for its ``present``
        bottom layers, which the node already holds (another image's: layers are shared from the
        bottom up, as their chain IDs say)."""
        plan = Plan()
        for layer in image.layers[present:]:
            self._untar(plan, layer)
            self._layer_created(plan, image, layer)
        return plan

    def create_layer(self, image: Image, index: int) -> Plan:
        """Make the place of pulled layer ``index`` on its parent, the driver's own way, before
        its tar is unpacked into it (``sim/pull.py``): by default :meth:`_layer_created`, a new
        directory for the union drivers and a snapshot of the parent for the snapshot drivers
        (btrfs subvolume snapshot, zfs clone, devicemapper thin snapshot: moby's ``Create``)."""
        plan = Plan()
        self._layer_created(plan, image, image.layers[index])
        return plan

    def untar_layer(self, image: Image, index: int) -> Plan:
        """Unpack pulled layer ``index`` into the place :meth:`create_layer` made (moby's
        ``ApplyDiff``: the same for every driver here)."""
        plan = Plan()
        self._untar(plan, image.layers[index])
        return plan

    def _untar(self, plan: Plan, layer) -> None:
        """Unpack a layer's tar: an inode per entry, its data into the page cache, written back."""
        plan.cpu(SETUP, layer.entries * self.costs.metadata_update)
        plan.write(SETUP, ("layer", id(layer)), 0, layer.size)
        plan.writeback(SETUP, layer.size)

    def _layer_created(self, plan: Plan, image: Image, layer) -> None:
        plan.cpu(SETUP, self.costs.layer_create)

    def remove_image(self, image: Image, kept: int) -> Plan:
        """``docker rmi``: delete the image's layers above its ``kept`` bottom ones (which another
        image still holds): each entry unlinked, each layer's directory or snapshot removed."""
        plan = Plan()
        for layer in image.layers[kept:]:
            plan.cpu(SETUP, layer.entries * self.costs.metadata_update)
            self._layer_removed(plan, layer)
        return plan

    def _layer_removed(self, plan: Plan, layer) -> None:
        plan.cpu(SETUP, self.costs.layer_create)

    def create_container(self, cid: int, image: Image) -> Plan:
        self.check_layers(len(image.layers))
        self.views[cid] = ContainerView(image, keep_links=self.keeps_image_inodes,
                                        redirect_dir=self.renames_lower_dirs)
        self.images[cid] = image
        self.mounts[cid] = self.mount_id(cid)
        self._image_names[cid] = self._names.setdefault(image, {})
        plan = Plan()
        self._container_created(plan, cid, image)
        return plan

    def _container_created(self, plan: Plan, cid: int, image: Image) -> None:
        plan.cpu(SETUP, 2 * self.costs.layer_create)  # the -init layer and the writable layer

    def remove_container(self, cid: int) -> Plan:
        plan = Plan()
        view = self.views.pop(cid)
        self.images.pop(cid)
        self.mounts.pop(cid)
        self._image_names.pop(cid)
        entries = len(view.upper_files) + len(view.upper_dirs) + len(view.whiteouts)
        plan.cpu(SETUP, entries * self.costs.metadata_update + self.costs.layer_create)
        self._container_removed(plan, cid, view)
        return plan

    def _container_removed(self, plan: Plan, cid: int, view: ContainerView) -> None:
        return None

    # -- operations ----------------------------------------------------------------------------
    def apply(self, cid: int, op: Op) -> Plan:
        """The plan of one operation; a refused operation carries its errno in ``plan.error``."""
        plan = Plan()
        if self.per_op_cpu > 0:  # plan.cpu's step, without the call
            plan.steps.append((CPU, LOOKUP, self.per_op_cpu))
        view = self.views[cid]
        try:
            self._operations[op.kind](plan, cid, view, op)
        except FsError as error:
            plan.error = error.errno_name
            plan.unlock_held()
        return plan

    def _op_stat(self, plan, cid, view, op):
        if self.lookup(plan, cid, view, op.path) is None:
            raise FsError("ENOENT", op.path)

    def _op_read(self, plan, cid, view, op):
        entry = self._file(plan, cid, view, op.path)
        nbytes = op.nbytes if op.nbytes < entry.size - op.offset else entry.size - op.offset
        if nbytes > 0:  # plan.read's step, without the call: the commonest operation
            plan.steps.append((READ, DATA, self.data_key(cid, view, op.path, entry), op.offset, nbytes, entry.size, 1))
            if self.transfer_rate is not None:
                plan.cpu(DATA, nbytes / self.transfer_rate)

    def _op_write(self, plan, cid, view, op):
        plan.lock(DATA, self.file_lock(cid, op.path))
        entry = self._file(plan, cid, view, op.path)
        self._write(plan, cid, view, op.path, entry.size, op.offset, op.nbytes, op.sync)

    def _op_append(self, plan, cid, view, op):
        plan.lock(DATA, self.file_lock(cid, op.path))
        entry = self._file(plan, cid, view, op.path)
        self._write(plan, cid, view, op.path, entry.size, entry.size, op.nbytes, op.sync)

    # Locks (docs/model.md, "CPUs and locks"): a file's lock stands for its i_rwsem (held by
    # write(2), truncate and setattr) and for the copy-up that precedes them (overlayfs's per-inode
    # copy-up lock), so a second writer waits for the first one's copy-up. It is taken before the
    # file's lookup: the plans of one container are made in the order its operations start, and
    # a later plan (which finds the file copied up) must not overtake an earlier one still looking
    # it up; in the kernel the later lookup of that name waits for the earlier (d_alloc_parallel).
    # A directory's lock stands for its i_rwsem, held exclusively by create, unlink, mkdir, rmdir
    # and rename in it. A plan takes a file's lock, then the locks a copy-up takes inside
    # (rename_lock, a directory's); it never holds a directory's lock while it waits for another
    # lock, except rename's rename_lock then its two directories in order: no cycle, no deadlock.
    def file_lock(self, cid: int, path: str) -> tuple:
        return ("inode", self.mounts[cid], path)

    def dir_lock(self, cid: int, path: str) -> tuple:
        return ("dir", self.mounts[cid], parent_of(path))

    def rename_lock(self, cid: int) -> tuple:
        """The filesystem's s_vfs_rename_mutex (``lock_rename`` of two directories, fs/namei.c)."""
        return ("s_vfs_rename_mutex", self.mounts[cid])

    def _write(self, plan, cid, view, path, size, offset, nbytes, sync):
        """The write of an operation holding the file's lock (released here)."""
        lock = self.file_lock(cid, path)
        self._make_writable(plan, cid, view, path, offset, nbytes, size)
        view.write(path, offset, nbytes)
        plan.write(DATA, self.data_key(cid, view, path, view.stat(path)), offset, nbytes)
        if self.transfer_rate is not None:
            plan.cpu(DATA, nbytes / self.transfer_rate)
        plan.unlock(DATA, lock)
        self._flush(plan, cid, path, offset, nbytes, sync)

    def _op_truncate(self, plan, cid, view, op):
        lock = self.file_lock(cid, op.path)
        plan.lock(DATA, lock)
        self._file(plan, cid, view, op.path)
        self._copied_up(plan, cid, view, view.copy_up(op.path))
        self._truncated(cid, view.upper_files[op.path], op.nbytes)
        view.truncate(op.path, op.nbytes)
        plan.cpu(DATA, self.costs.metadata_update)
        plan.unlock(DATA, lock)

    def _op_open_trunc(self, plan, cid, view, op):
        """open(O_TRUNC) then a write of ``nbytes``: a copy-up without data."""
        self._file(plan, cid, view, op.path)
        lock = self.file_lock(cid, op.path)
        plan.lock(DATA, lock)
        self._copied_up(plan, cid, view, view.copy_up(op.path, with_data=False))
        self._truncated(cid, view.upper_files[op.path], 0)
        view.truncate(op.path, 0)
        plan.unlock(DATA, lock)
        self._written_new(plan, cid, view, op)

    def _op_create(self, plan, cid, view, op):
        existed = self.lookup(plan, cid, view, op.path)
        if existed is not None and existed.kind == FILE:
            return self._op_open_trunc(plan, cid, view, op)
        self._dirs_created(plan, cid, view.create(op.path))
        self._file_created(cid, view.upper_files[op.path])
        self._dir_changed(plan, cid, op.path)
        self._written_new(plan, cid, view, op)

    def _written_new(self, plan, cid, view, op):
        lock = self.file_lock(cid, op.path)
        plan.lock(DATA, lock)
        view.write(op.path, 0, op.nbytes)
        plan.write(DATA, self.data_key(cid, view, op.path, view.stat(op.path)), 0, op.nbytes)
        if self.transfer_rate is not None:
            plan.cpu(DATA, op.nbytes / self.transfer_rate)
        plan.unlock(DATA, lock)
        self._flush(plan, cid, op.path, 0, op.nbytes, op.sync)

    def _dir_changed(self, plan, cid, path):
        """A metadata change in ``path``'s directory, under that directory's lock."""
        lock = self.dir_lock(cid, path)
        plan.lock(DATA, lock)
        plan.cpu(DATA, self.costs.metadata_update)
        plan.unlock(DATA, lock)

    def _op_unlink(self, plan, cid, view, op):
        self._file(plan, cid, view, op.path)
        inode = view.upper_files.get(op.path)
        self._dirs_created(plan, cid, view.unlink(op.path))
        self._name_dropped(cid, view, inode)
        self._dir_changed(plan, cid, op.path)

    def _name_dropped(self, cid, view, inode) -> None:
        """An upper file lost a name: if that was its last, the driver forgets the file."""
        if inode is not None and inode not in view.sizes:
            self._removed(cid, inode)

    def _op_mkdir(self, plan, cid, view, op):
        self.lookup(plan, cid, view, op.path)
        created, _opaque = view.mkdir(op.path)
        self._dirs_created(plan, cid, created)
        self._dir_changed(plan, cid, op.path)

    def _op_rmdir(self, plan, cid, view, op):
        self.lookup(plan, cid, view, op.path)
        self._dirs_created(plan, cid, view.rmdir(op.path))
        self._dir_changed(plan, cid, op.path)

    def _op_rename(self, plan, cid, view, op):
        self.lookup(plan, cid, view, op.path)
        self.lookup(plan, cid, view, op.target)
        replaced = view.upper_files.get(op.target)
        copy, created = view.rename(op.path, op.target)
        self._copied_up(plan, cid, view, copy)
        self._dirs_created(plan, cid, created)
        self._name_dropped(cid, view, replaced)
        if parent_of(op.path) == parent_of(op.target):
            return self._dir_changed(plan, cid, op.path)
        # lock_rename: the filesystem's rename mutex, then both directories (in one order)
        locks = [self.rename_lock(cid), *sorted((self.dir_lock(cid, op.path), self.dir_lock(cid, op.target)))]
        for lock in locks:
            plan.lock(DATA, lock)
        plan.cpu(DATA, self.costs.metadata_update)
        for lock in reversed(locks):
            plan.unlock(DATA, lock)

    def _op_chmod(self, plan, cid, view, op):
        lock = self.file_lock(cid, op.path)
        plan.lock(DATA, lock)
        self._file_or_dir(plan, cid, view, op.path)
        self._metadata_changed(plan, cid, view, op.path)
        plan.cpu(DATA, self.costs.metadata_update)
        plan.unlock(DATA, lock)

    def _file(self, plan, cid, view, path):
        entry = self.lookup(plan, cid, view, path)
        if entry is None:
            raise FsError("ENOENT", path)
        if entry.kind == DIR:
            raise FsError("EISDIR", path)
        return entry

    def _file_or_dir(self, plan, cid, view, path):
        entry = self.lookup(plan, cid, view, path)
        if entry is None:
            raise FsError("ENOENT", path)
        return entry

    # -- hooks: lookups, data placement, copy-on-write -------------------------------------------
    def lookup(self, plan: Plan, cid: int, view: ContainerView, path: str):
        """Resolve ``path`` component by component (a missing last component is a negative
        dentry, for the caller to judge; a missing directory on the way is ENOENT). Returns
        what ``view.stat(path)`` returns."""
        if not path:
            return view.stat(path)
        steps = plan.steps
        parent = path.rpartition("/")[0]
        if parent:
            walk = view.descents.get(parent)
            if walk is not None:
                steps.extend(walk[0])
            else:
                walk = self._descend(steps, cid, view, parent)
            _, parent_upper, above = walk
        else:  # a top-level name: the root, an upper directory, walks no component
            parent_upper, above = True, TOP
        if above is TOP and not parent_upper and self.probes_shared_by_image \
                and path not in view.upper_files and path not in view.whiteouts and path not in view.upper_dirs:
            # An image name the container changed nothing on the way to nor at (a directory
            # without an upper part has none below it): its entry and probe are the image's,
            # the same for every container (``probes_shared_by_image``), kept once per image.
            names = self._image_names[cid]
            found = names.get(path)
            if found is None:
                entry, lower = view.resolve(path, above)
                step = self._probe_step(cid, view, path, lower, parent_upper)
                steps.append(step)
                if entry is not None:  # a name the image lacks is rarely looked up again
                    names[path] = (entry, step[3:])
                return entry
            entry, tail = found
            steps.append((PROBE, LOOKUP, (self.mounts[cid], path), *tail))
            return entry
        # The name itself, from the image's path table where the container changed nothing on
        # the way (``ContainerView.resolve``): files, the common case, are never memoised.
        entry, lower = view.resolve(path, above)
        steps.append(self._probe_step(cid, view, path, lower, parent_upper))
        return entry

    def _descend(self, steps: list, cid: int, view: ContainerView, directory: str) -> tuple:
        """Add the lookup steps of every component of ``directory`` (ENOENT or ENOTDIR where one
        is missing or not a directory), from the lookups memo where it holds them, and store
        the whole walk (``ContainerView.descents``)."""
        memo, upper_dirs = view.lookups, view.upper_dirs
        start = len(steps)
        parent_upper = True  # the parent has an upper directory: the upper layer's root always has
        above = TOP  # lower_path's walk at the parent: each component is one more step of it
        for prefix in prefixes(directory):
            found = memo.get(prefix)
            if found is not None and found[2] == parent_upper:  # a directory walked through before
                steps.append(found[1])
                above = found[3]
            else:
                entry, lower = view.resolve(prefix, above)
                step = self._probe_step(cid, view, prefix, lower, parent_upper)
                steps.append(step)
                if entry is None:
                    raise FsError("ENOENT", prefix)
                if entry.kind != DIR:
                    raise FsError("ENOTDIR", prefix)
                above = view.walk_down(above, prefix, False)
                memo[prefix] = (entry.fields(), step, parent_upper, above)
            parent_upper = prefix in upper_dirs
        walk = view.descents[directory] = (tuple(steps[start:]), parent_upper, above)
        return walk

    def _probe_step(self, cid: int, view: ContainerView, prefix: str, lower: str | None, parent_upper: bool):
        """The lookup step of ``prefix``: what ``sim.plan.probe_step`` makes, without the call."""
        keys, cpu = self.probe(cid, view, prefix, lower, parent_upper)
        if self._probe_locks:
            lock = self.probe_lock(cid, view, prefix, lower)
            if lock is not None:
                return (PROBE, LOOKUP, (self.mounts[cid], prefix), keys, cpu, lock)
        return (PROBE, LOOKUP, (self.mounts[cid], prefix), keys, cpu)

    def probe(self, cid: int, view: ContainerView, prefix: str, lower: str | None,
              parent_upper: bool) -> tuple[tuple, float]:
        """The metadata keys a dentry miss of ``prefix`` reads and its CPU. Natively (ext4 or
        xfs, also inside a devicemapper thin device) the name's directory block and inode in the
        mount's own tree, and the index blocks of a large parent directory. ``lower`` is
        ``view.lower_path(prefix)``, which union drivers probe, and ``parent_upper`` whether the
        parent has an upper directory (the root always has)."""
        mount = self.mounts[cid]
        parent, _, name = prefix.rpartition("/")
        entries = view.image.merged_dir_entries.get(parent, 0)
        if entries <= self.costs.dir_entries_per_block:
            return (("meta", mount, prefix),), self.probe_cpu
        return (("meta", mount, prefix),) + dir_index_keys(mount, parent, name, entries, self.costs), self.probe_cpu

    def probe_lock(self, cid: int, view: ContainerView, prefix: str, lower: str | None):
        """The lock a dentry miss of ``prefix`` holds while it probes, if any (``sim.plan.probe_step``).
        Called only by a driver that defines it (``_probe_locks``)."""
        return None

    def mount_id(self, cid: int):
        return ("ctr", cid)

    def data_key(self, cid: int, view: ContainerView, path: str, entry) -> tuple:
        """The page-cache key of a file's data: its inode's, whatever name it is reached by."""
        return ("data", cid, view.inode_of(path, entry))

    def _make_writable(self, plan, cid, view, path, offset, nbytes, size) -> None:
        self._copied_up(plan, cid, view, view.copy_up(path))

    def _copied_up(self, plan: Plan, cid: int, view: ContainerView, copy: CopyUp | None) -> None:
        return None

    def _metadata_changed(self, plan, cid, view, path) -> None:
        if view.stat(path).kind == FILE:
            self._copied_up(plan, cid, view, view.copy_up(path))

    def _dirs_created(self, plan: Plan, cid: int, created: list[str]) -> None:
        return None

    def _flush(self, plan: Plan, cid: int, path: str, offset: int, nbytes: int, sync: bool) -> None:
        written = self._bytes_on_disk(cid, path, offset, nbytes)
        if sync:
            plan.sync(FSYNC, written)
        else:
            plan.writeback(FSYNC, written)

    def _bytes_on_disk(self, cid: int, path: str, offset: int, nbytes: int) -> int:
        """Bytes a write of ``nbytes`` at ``offset`` sends to disk: whole pages."""
        if nbytes <= 0:
            return 0
        return round_up(offset + nbytes, PAGE) - (offset // PAGE) * PAGE

    # Per-file bookkeeping is keyed by inode (``ContainerView.upper_files``): a rename moves a
    # name, never what a driver knows of the file.
    def _file_created(self, cid: int, inode) -> None:
        return None

    def _truncated(self, cid: int, inode, size: int) -> None:
        return None

    def _removed(self, cid: int, inode) -> None:
        """The file's last name is gone."""
        return None

    def stat(self, cid, path: str):
        """What container ``cid`` sees at ``path`` (an ``Entry``, or None), without a lookup's cost."""
        return self.views[cid].stat(path)

    # -- disk usage ----------------------------------------------------------------------------
    def layer_real_bytes(self, image: Image, index: int) -> int:
        """Bytes layer ``index`` of the image really occupies under this driver (its own diff)."""
        return image.layers[index].size

    def image_real_bytes(self, image: Image) -> int:
        """Bytes the image's layers really occupy under this driver (alone on the node)."""
        return sum(self.layer_real_bytes(image, index) for index in range(len(image.layers)))

    def container_real_bytes(self, cid: int) -> int:
        """Bytes the container's own layers really occupy under this driver."""
        return self.views[cid].upper_bytes

    def space(self, cid: int) -> dict:
        """``docker ps -s`` for one container, and what the driver really holds for it."""
        view = self.views[cid]
        return {"size_bytes": view.upper_bytes, "virtual_bytes": view.upper_bytes + view.image.virtual_size,
                "real_bytes": self.container_real_bytes(cid)}

    @classmethod
    def describe(cls) -> dict:
        """Name, summary, layer limit and options with their defaults and meaning."""
        options = {name: {"default": field.default, "description": field.description or ""}
                   for name, field in cls.Options.model_fields.items()}
        return {"name": cls.name, "summary": cls.summary, "max_layers": min(cls.max_layers, DOCKER_IMAGE_LAYER_LIMIT),
                "shares_page_cache": cls.shares_page_cache, "options": options}


def name_position(name: str) -> float:
    """Where a name's hash falls in [0, 1): which block of a hashed directory index holds it.
    crc32, not ``hash``: the same in every process."""
    return zlib.crc32(name.encode()) / 2**32


def dir_index_keys(tree, parent: str, name: str, entries: int, costs) -> tuple:
    """The index blocks a lookup of ``name`` reads in directory ``parent`` of ``entries`` entries
    (ext4 htree, xfs node directories): none when the directory fits one block; else one per
    level of the hashed index above the leaf block, ``ceil(log(blocks) / log(fanout))`` levels,
    the top one shared by every name. The leaf block and the inode are the name's own key."""
    blocks = -(-entries // costs.dir_entries_per_block)
    if blocks <= 1:
        return ()
    fanout = costs.dir_index_fanout
    levels, span = 1, fanout
    while span < blocks:
        levels, span = levels + 1, span * fanout
    position = name_position(name)
    return tuple(("meta", tree, parent, "index", level, int(position * -(-blocks // fanout ** (levels - level))))
                 for level in range(levels))


def chunks(nbytes: int, chunk: int) -> int:
    return max(1, math.ceil(nbytes / chunk))


__all__ = ["Driver", "REGISTRY", "register", "LayerLimitError", "PAGE", "FsError", "chunks", "round_up",
           "DOCKER_IMAGE_LAYER_LIMIT", "dir_index_keys", "name_position"]
