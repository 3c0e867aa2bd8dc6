"""btrfs: each layer and container a subvolume snapshot; 4 KiB redirect-on-write sectors.

A partial write to a shared sector reads that page first; each fsync also writes the tree log
(metadata copy-on-write). Containers do not share the page cache of the image's files.
"""
from pydantic import BaseModel, ConfigDict, Field

from ..plan import FSYNC
from ..units import Size
from .base import PAGE, register
from .snapshot import SnapshotDriver


class BtrfsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fsync_metadata_bytes: Size = Field(16384, ge=0, description="tree-log / metadata written per fsync: one 16 KiB node by default [bytes]")


@register
class Btrfs(SnapshotDriver):
    name = "btrfs"
    summary = "btrfs subvolume snapshots; 4 KiB copy-on-write sectors; private page cache"
    Options = BtrfsOptions
    snapshot_cost = "btrfs_snapshot"
    remove_cost = "btrfs_snapshot"

    @property
    def block_size(self) -> int:
        return PAGE

    def _flush(self, plan, cid, path, offset, nbytes, sync):
        super()._flush(plan, cid, path, offset, nbytes, sync)
        if sync:
            plan.disk_write(FSYNC, self.options.fsync_metadata_bytes)
