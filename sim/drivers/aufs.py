"""aufs (removed in Engine 24): a union of up to 127 branches.

Same lookup walk as overlayfs; a copy-up also consults every branch (whiteouts, xino), so its
cost grows with the layer count. Renaming any directory fails with EXDEV.

A copy-up (aufs ``cpup.c``) creates the file and its missing directories in place on the
writable branch under the target directory's lock, then copies the data itself, one filesystem
block (4 KiB) at a time (``au_copy_file``), holding the *lower* file's inode lock
(``au_do_cpup_regular``): the image's files are shared by every container, so containers
copying up the same file queue there. It does not fsync the copy. Every new inode on the
writable branch writes the mount's xino file, under its lock. A lookup also looks for the
name's whiteout in each branch (``au_do_lookup``); older aufs did both with the branch
directory's i_mutex held exclusively (``exclusive_lookup``).
"""
from pydantic import BaseModel, ConfigDict, Field

from ..image import parent_of, prefixes
from ..plan import COPY_UP, LOOKUP
from .base import PAGE, FsError, chunks, register
from .union import UnionDriver


class AufsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exclusive_lookup: bool = Field(False, description=(
        "a cold lookup holds each branch directory's lock exclusively (aufs before shared lookups: "
        "mutex_lock_nested(&h_dir->i_mutex) in au_lkup_dentry), so containers looking up in the same image directory "
        "queue; false: shared, as later aufs (inode_lock_shared_nested)"
    ))


@register
class Aufs(UnionDriver):
    name = "aufs"
    summary = "aufs union of branches; copy-up and lookup grow with layer count; directory renames give EXDEV"
    max_layers = 125  # 127 branches: the image's plus -init and the container layer
    layer_limit_reason = "aufs mounts at most 127 branches (the image's plus -init and the container layer)"
    Options = AufsOptions
    copy_up_syncs = False
    mount_extra_layers = 2

    def __init__(self, options=None, profile=None):
        super().__init__(options, profile)
        self.probe_cpu = 2 * self.costs.layer_probe  # the name and its whiteout, in each branch

    def lookup(self, plan, cid, view, path):
        """The walk, then udba=reval: every cached component checked against each branch."""
        entry = super().lookup(plan, cid, view, path)
        branches = len(view.image.layers) + self.mount_extra_layers + 1
        plan.cpu(LOOKUP, len(prefixes(path)) * branches * self.costs.aufs_revalidate)
        return entry

    def probe_lock(self, cid, view, prefix, lower):
        if lower is None or not self.options.exclusive_lookup:
            return None
        return ("branch-dir", view.image.layer_ids[-1], parent_of(lower))

    def _new_inode(self, plan, cid):
        lock = ("xino", cid)  # one xino file per mount (Docker: xino=/dev/shm/aufs.xino, not shared)
        plan.lock(COPY_UP, lock)
        plan.cpu(COPY_UP, self.costs.aufs_xino_write)
        plan.unlock(COPY_UP, lock)

    def _dir_copy_up_lock(self, cid, path):
        return self.dir_lock(cid, path)  # mkdir in place on the writable branch

    def _copy_setup(self, plan, cid, view, copy):
        lock = self.dir_lock(cid, copy.path)
        plan.lock(COPY_UP, lock)
        plan.cpu(COPY_UP, self.costs.copy_up_setup + self.costs.layer_probe * len(view.image.layers))
        self._new_inode(plan, cid)
        plan.unlock(COPY_UP, lock)

    def _copy_data(self, plan, cid, view, copy):
        # the lower inode's lock (one inode of the image, whichever container copies it)
        lock = ("inode", "layer", view.image.layer_ids[copy.lower_layer], copy.source)
        plan.lock(COPY_UP, lock)
        plan.cpu(COPY_UP, chunks(copy.size, PAGE) * self.costs.aufs_copy_block)
        super()._copy_data(plan, cid, view, copy)
        plan.unlock(COPY_UP, lock)

    def _op_rename(self, plan, cid, view, op):
        entry = view.stat(op.path)
        if entry is not None and entry.kind == "dir":
            self.lookup(plan, cid, view, op.path)
            raise FsError("EXDEV", op.path)
        super()._op_rename(plan, cid, view, op)
