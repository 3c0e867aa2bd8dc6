"""aufs (removed in Engine 24): a union of up to 127 branches.

Same lookup walk as overlayfs; a copy-up also consults every branch (whiteouts, xino), so its
cost grows with the layer count. Renaming any directory fails with EXDEV.

Where it serializes (aufs ``cpup.c``, ``dentry.c``, ``xino.c``): a copy-up creates the file and
its missing directories in place on the writable branch, holding the target directory's lock
through the whole copy, which aufs makes itself one filesystem block (4 KiB) at a time
(``au_copy_file``); every new inode on the writable branch writes the mount's xino file under
its lock; older aufs looked names up in each branch directory with that directory's i_mutex
held exclusively, and the image's branch directories are shared by every container.
"""
from pydantic import BaseModel, ConfigDict, Field

from ..image import parent_of
from ..plan import COPY_UP
from .base import PAGE, FsError, chunks, register
from .union import UnionDriver


class AufsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exclusive_lookup: bool = Field(False, description="a cold lookup holds each branch directory's lock exclusively (aufs before shared lookups: mutex_lock_nested(&h_dir->i_mutex) in au_lkup_dentry), so containers looking up in the same image directory queue; false: shared, as later aufs (inode_lock_shared_nested)")


@register
class Aufs(UnionDriver):
    name = "aufs"
    summary = "aufs union of branches; copy-up and lookup grow with layer count; directory renames give EXDEV"
    max_layers = 125  # 127 branches: the image's plus -init and the container layer
    layer_limit_reason = "aufs mounts at most 127 branches (the image's plus -init and the container layer)"
    Options = AufsOptions
    copy_up_scans_layers = True
    copy_up_in_place = True
    mount_extra_layers = 2

    def probe_lock(self, cid, view, prefix, lower):
        if lower is None or not self.options.exclusive_lookup:
            return None
        return ("branch-dir", view.image.layer_ids[-1], parent_of(lower))

    def _new_inode(self, plan, cid):
        lock = ("xino", cid)  # one xino file per mount (Docker: xino=/dev/shm/aufs.xino, not shared)
        plan.lock(COPY_UP, lock)
        plan.cpu(COPY_UP, self.costs.aufs_xino_write)
        plan.unlock(COPY_UP, lock)

    def _copy_loop_cpu(self, nbytes):
        return chunks(nbytes, PAGE) * self.costs.aufs_copy_block

    def _op_rename(self, plan, cid, view, op):
        entry = view.stat(op.path)
        if entry is not None and entry.kind == "dir":
            self.lookup(plan, cid, view, op.path)
            raise FsError("EXDEV", op.path)
        super()._op_rename(plan, cid, view, op)
