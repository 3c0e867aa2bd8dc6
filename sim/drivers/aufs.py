"""aufs (removed in Engine 24): a union of up to 127 branches.

Same lookup walk as overlayfs; a copy-up also consults every branch (whiteouts, xino), so its
cost grows with the layer count. Renaming any directory fails with EXDEV.
"""
from pydantic import BaseModel, ConfigDict

from .base import FsError, register
from .union import UnionDriver


class AufsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register
class Aufs(UnionDriver):
    name = "aufs"
    summary = "aufs union of branches; copy-up and lookup grow with layer count; directory renames give EXDEV"
    max_layers = 125  # 127 branches: the image's plus -init and the container layer
    layer_limit_reason = "aufs mounts at most 127 branches (the image's plus -init and the container layer)"
    Options = AufsOptions
    copy_up_scans_layers = True
    mount_extra_layers = 2

    def _op_rename(self, plan, cid, view, op):
        entry = view.stat(op.path)
        if entry is not None and entry.kind == "dir":
            self.lookup(plan, cid, view, op.path)
            raise FsError("EXDEV", op.path)
        super()._op_rename(plan, cid, view, op)
