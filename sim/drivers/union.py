"""The file-granular union algorithm shared by overlay2, overlay, aufs and fuse-overlayfs.

Lookups walk each path component top-down through the writable layer and the lower layers
(``kernel:namei.c``); the first write of a lower file copies the whole file up with its missing
ancestor directories, then fsyncs it (``kernel:copy_up.c``). The four drivers differ in a few
class attributes and options, each set in its own file.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from pydantic import BaseModel, ConfigDict, Field

from ..image import DIR, FILE, Image
from ..plan import COPY_UP, SETUP
from .base import Driver, chunks, dir_index_keys

GIB = 2**30


class UnionOptions(BaseModel):
    """Options of kernel overlayfs (overlay2)."""

    model_config = ConfigDict(extra="forbid")
    metacopy: bool = Field(False, description="chmod/chown copy up metadata only; data follows at the first data write")
    volatile: bool = Field(False, description="skip every sync: no fsync after copy-up, fsync(2) is a no-op")
    redirect_dir: bool = Field(False, description=(
        "renaming a lower directory records a redirect instead of failing with EXDEV"
    ))
    reflink: bool = Field(False, description=(
        "the backing filesystem clones (xfs with reflink, btrfs): copy-up data is cloned, not copied"
    ))
    tmpfile: bool = Field(True, description=(
        "files are copied up through an O_TMPFILE outside the upper filesystem's rename lock (ovl_copy_up_tmpfile); "
        "false: in the work directory under that lock, data and fsync included (ovl_copy_up_workdir: upper "
        "filesystems without O_TMPFILE, and kernels before the O_TMPFILE copy-up such as 4.9)"
    ))


@dataclass(frozen=True)
class UnionSettings:
    """What the union code reads from a driver's options, with the value a driver whose options
    lack one has (aufs has no metacopy: its copy-ups are never metadata only)."""

    metacopy: bool = False
    volatile: bool = False
    redirect_dir: bool = False
    reflink: bool = False
    tmpfile: bool = True

    @classmethod
    def of(cls, options: BaseModel) -> UnionSettings:
        given = options.model_dump()
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})


class UnionDriver(Driver):
    Options = UnionOptions
    fuse = False            # every request crosses to a user-space daemon
    single_lower = False    # legacy overlay: one lower directory holding hard links of every layer
    copy_up_syncs = True    # the kernel fsyncs a copied-up file (since 4.9); aufs does not
    mount_extra_layers = 1  # lower directories the mount adds to the image's (-init)
    # Docker mounts overlayfs with index=off (moby overlay2 ``Init``): a copy-up makes a new upper
    # inode and breaks a lower file's hard links (xfstests overlay/018; docs/model.md).
    keeps_image_inodes = False
    renames_lower_dirs = False  # EXDEV, unless the redirect_dir option is on (see __init__)
    probes_shared_by_image = True  # below a lower-only directory: the image's layers alone

    def __init__(self, options=None, profile=None):
        super().__init__(options, profile)
        self.settings = UnionSettings.of(self.options)
        self.renames_lower_dirs = self.settings.redirect_dir
        self.per_op_cpu = self.costs.syscall + (self.costs.fuse_request if self.fuse else 0.0)
        self.probe_cpu = self.costs.fuse_layer_probe if self.fuse else self.costs.layer_probe
        self.transfer_rate = self.costs.fuse_bandwidth if self.fuse else None
        # per image (the object: an id could be reused by a later image): lower path -> (probe
        # keys, CPU) of the lower layers
        self._probe_memo: dict[Image, dict[str, tuple[tuple, float]]] = {}
        self._image_probes: dict[int, dict[str, tuple[tuple, float]]] = {}  # per container: its image's
        self._upper_metadata = tuple(("meta", "upper-metadata", i) for i in range(self.costs.copy_up_cold_reads))
        self._layer_metadata = tuple(("meta", "layer-metadata", i) for i in range(self.costs.lookup_cold_reads))
        # reflink: per container, cloned files' inodes -> bytes written to them since (the rest is shared)
        self._cloned: dict[int, dict[object, int]] = {}

    # -- lookups -------------------------------------------------------------------------------
    def _lower_probes(self, memo: dict[str, tuple[tuple, float]], image: Image, lower: str) -> tuple[tuple, float]:
        """The probe keys and CPU of ``lower`` in the image's layers, not yet in the image's
        ``memo``: in each layer probed, the name's directory block and inode, and the index
        blocks of a large directory (ext4 htree: they grow with the log of its blocks).
        fuse-overlayfs probes the layers only below the root: it loaded any other parent, every
        layer's copy of it, when it looked the parent up (``do_lookup_file``), and finds the
        name in memory, stats it once, and loads it in turn if it is a directory."""
        parent, _, name = lower.rpartition("/")
        costs = self.costs
        if self.fuse and parent:
            keys, probes = (), 1
        elif self.single_lower:  # one directory of hard links: the merged directory
            tree = ("flat", image.layer_ids[-1])
            keys = (("meta", "flat", image.layer_ids[-1], lower),) + dir_index_keys(
                tree, parent, name, image.merged_dir_entries.get(parent, 0), costs)
            probes = 1
        else:
            layers = image.probe_layers(lower)
            layer_keys: list[tuple] = []
            per_block = costs.dir_entries_per_block
            for index in layers:
                layer_id = image.layer_ids[index]
                layer_keys.append(("meta", layer_id, lower))
                entries = image.dir_entries[index].get(parent, 0)
                if entries > per_block:  # else one block, no index (dir_index_keys's first test, a call fewer)
                    layer_keys.extend(dir_index_keys(layer_id, parent, name, entries, costs))
            keys, probes = tuple(layer_keys), len(layers)
        cpu = probes * self.probe_cpu
        if self.fuse and image.merged.get(lower, (None,))[0] == DIR:
            loaded_keys, loaded_cpu = self._load_dir(image, lower)
            keys, cpu = keys + loaded_keys, cpu + loaded_cpu
        found = keys, cpu
        if lower in image.merged:  # a name the image lacks (a new file) is rarely probed again
            memo[lower] = found
        return found

    def _load_dir(self, image: Image, path: str) -> tuple[tuple, float]:
        """fuse-overlayfs's first access to a directory (``load_dir``, main.c): it reads every
        layer's copy top-down (down to an opaque one), and each entry it meets for the first
        time is checked in every layer from its own down to the directory's lowest
        (``make_ovl_node``): CPU per entry read and per layer checked, and the directory and
        inode-table blocks of every copy."""
        costs = self.costs
        stack = [index for index in image.probe_layers(path) if path in image.layers[index].dirs]
        if not stack:
            return (), 0.0
        bottom = stack[-1]
        seen: set[str] = set()
        read = checked = 0
        keys: list[tuple] = []
        for index in stack:
            names = image.layer_children[index].get(path, ())
            read += len(names)
            new = [name for name in names if name not in seen]
            seen.update(new)
            whiteouts = image.layers[index].whiteouts
            if whiteouts:  # a whiteout becomes a whiteout node: nothing to check below it
                new = [name for name in new if f"{path}/{name}" not in whiteouts]
            checked += (index - bottom + 1) * len(new)
            layer_id = image.layer_ids[index]
            keys.extend(("meta", layer_id, path, "block", block)
                        for block in range(-(-len(names) // costs.dir_entries_per_block)))
            keys.extend(("meta", layer_id, path, "inodes", block)
                        for block in range(-(-len(names) // costs.inodes_per_block)))
        return tuple(keys), read * costs.fuse_dir_entry + checked * costs.fuse_entry_layer_check

    def probe(self, cid, view, prefix, lower, parent_upper):
        """The upper directory (where the parent has one), then each lower layer top-down,
        stopping at a file, a whiteout or an opaque directory."""
        # An upper file or a whiteout stops the walk with ``lower`` None; an opaque directory
        # stops it too, unless it is a redirect into the layers.
        if lower is not None and (prefix not in view.opaque_dirs or prefix in view.redirects):
            memo = self._image_probes[cid]
            found = memo.get(lower)
            if found is None:
                found = self._lower_probes(memo, view.image, lower)
            if not parent_upper:  # below the top level, no upper directory to probe: the layers alone
                return found  # the image's probe table, shared by every container
            lower_keys, lower_cpu = found
        else:
            lower_keys, lower_cpu = (), 0.0
        if parent_upper:
            keys: tuple = (("meta", "upper", cid, prefix),)
            cpu = self.probe_cpu
        else:
            keys, cpu = (), 0.0
        if self._layer_metadata and "/" not in prefix:
            # the first cold lookup also reads the layers' filesystem metadata (measured: a fixed
            # cost that does not grow with the layers probed)
            keys = keys + self._layer_metadata
        return keys + lower_keys, cpu + lower_cpu

    def mount_id(self, cid):
        return ("ovl", cid)

    def rename_lock(self, cid):
        """Every container's upper and work directories lie on one filesystem (/var/lib/docker):
        its one s_vfs_rename_mutex, which lock_rename(workdir, upperdir) takes, is the host's."""
        return ("s_vfs_rename_mutex", "upper")

    # -- data placement ------------------------------------------------------------------------
    def _lower_key(self, cid, image: Image, layer: int, lower: str) -> tuple:
        """A lower file's pages: its inode's in its layer, whichever hard link reads it."""
        key = ("lower", image.layer_ids[layer], image.hardlinks.get(lower, lower))
        return key if self.shares_page_cache else key + (cid,)

    def data_key(self, cid, view, path, entry):
        inode = view.upper_files.get(path)
        if inode is not None and inode not in view.metacopy:
            return ("upper", cid, inode)
        return self._lower_key(cid, view.image, entry.layer, entry.lower_path)

    # -- copy-up -------------------------------------------------------------------------------
    def _dirs_created(self, plan, cid, created):
        """Each missing ancestor directory is copied up on its own: made in the work directory and
        renamed into place under the upper filesystem's rename lock (ovl_copy_up_workdir)."""
        per_dir = self.costs.dir_copy_up + (self.costs.fuse_request if self.fuse else 0.0)
        for path in created:
            lock = self._dir_copy_up_lock(cid, path)
            plan.lock(COPY_UP, lock)
            plan.cpu(COPY_UP, per_dir)
            self._new_inode(plan, cid)
            plan.unlock(COPY_UP, lock)

    def _dir_copy_up_lock(self, cid, path) -> tuple:
        return self.rename_lock(cid)

    def _new_inode(self, plan, cid) -> None:
        """What a new inode in the upper layer costs besides its creation (aufs: its xino entry)."""
        return None

    def _copied_up(self, plan, cid, view, copy):
        if copy is None:
            return
        self._dirs_created(plan, cid, copy.created_dirs)
        # ovl_copy_up_workdir holds lock_rename(workdir, upperdir) through the whole copy, data
        # and fsync included; ovl_copy_up_tmpfile copies into an O_TMPFILE without it.
        whole = self.rename_lock(cid) if not self.fuse and not self.settings.tmpfile else None
        if whole is not None:
            plan.lock(COPY_UP, whole)
        if self._upper_metadata:
            # The upper filesystem's own metadata a copy-up touches: from disk after a cache drop
            # (measured on the real kernel: a cold first write costs more than lookup plus copy).
            plan.probe(COPY_UP, ("upper-metadata",), self._upper_metadata, 0.0)
        self._copy_setup(plan, cid, view, copy)
        plan.copy_ups += 1
        if copy.with_data and copy.size:
            self._copy_data(plan, cid, view, copy)
        if whole is not None:
            plan.unlock(COPY_UP, whole)

    def _copy_setup(self, plan, cid, view, copy) -> None:
        """Create the upper file, copy its attributes and xattrs (all but the data)."""
        plan.cpu(COPY_UP, self.costs.copy_up_setup)

    def _copy_data(self, plan, cid, view, copy) -> None:
        if self.settings.reflink:
            plan.cpu(COPY_UP, self.costs.clone_base + self.costs.clone_per_gib * copy.size / GIB)
            self._cloned.setdefault(cid, {})[copy.inode] = 0
            return
        source = self._lower_key(cid, view.image, copy.lower_layer, copy.source)
        plan.read(COPY_UP, source, 0, copy.size, copy.size, chunks(copy.size, self.costs.copy_chunk))
        plan.write(COPY_UP, ("upper", cid, copy.inode), 0, copy.size)
        plan.copy_up_bytes += copy.size
        if self._volatile() or not self.copy_up_syncs:
            plan.writeback(COPY_UP, copy.size)
        else:
            plan.sync(COPY_UP, copy.size)

    def _metadata_changed(self, plan, cid, view, path):
        if view.stat(path).kind != FILE:
            self._dirs_created(plan, cid, view.copy_up_dir(path))
            return
        self._copied_up(plan, cid, view, view.copy_up(path, metadata_only=self.settings.metacopy))

    def _volatile(self) -> bool:
        return self.settings.volatile

    def _flush(self, plan, cid, path, offset, nbytes, sync):
        cloned = self._cloned.get(cid)
        if cloned is not None:
            inode = self.views[cid].upper_files[path]
            if inode in cloned:
                cloned[inode] += self._bytes_on_disk(cid, path, offset, nbytes)
        super()._flush(plan, cid, path, offset, nbytes, sync and not self._volatile())

    def _removed(self, cid, inode):
        self._cloned.get(cid, {}).pop(inode, None)

    def _container_removed(self, plan, cid, view):
        self._cloned.pop(cid, None)
        self._image_probes.pop(cid)

    # -- disk usage ----------------------------------------------------------------------------
    def container_real_bytes(self, cid):
        """Whole files after copy-up; with reflink, a cloned file holds only what was written since."""
        view = self.views[cid]
        shared = sum(max(0, view.sizes[inode] - written) for inode, written in self._cloned.get(cid, {}).items())
        return view.upper_bytes - shared

    def _container_created(self, plan, cid, image):
        self._image_probes[cid] = self._probe_memo.setdefault(image, {})
        plan.cpu(SETUP, (1 + self.mount_extra_layers) * self.costs.layer_create)
        if self._upper_metadata:  # just written by the mkdirs of the container's layers
            plan.cached(SETUP, (("upper-metadata",),) + self._upper_metadata)

