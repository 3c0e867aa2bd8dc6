"""zfs: each layer a snapshot, each container a clone; 128 KiB records.

A write smaller than a record reads the whole record first (read-modify-write) and writes the
whole record back; a file smaller than the recordsize is a single block of its own size. Clones
share cached blocks in the ARC, so containers share the page cache of unmodified image files.
"""
from pydantic import BaseModel, ConfigDict, Field

from ..units import Size
from .base import PAGE, register, round_up
from .snapshot import SnapshotDriver


class ZfsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recordsize: Size = Field(128 * 1024, ge=512, le=16 * 2**20, description=(
        "dataset recordsize: the copy-on-write unit [bytes]"
    ))


@register
class Zfs(SnapshotDriver):
    name = "zfs"
    probes_shared_by_image = True  # a name the clone did not change is the snapshot's
    summary = "zfs snapshots and clones; 128 KiB records with read-modify-write; ARC shared between clones"
    Options = ZfsOptions
    shares_page_cache = True

    def snapshot_s(self) -> float:
        return self.costs.zfs_clone

    def remove_s(self) -> float:
        return self.costs.zfs_clone

    @property
    def block_size(self) -> int:
        return self.options.recordsize

    def data_key(self, cid, view, path, entry):
        # The ARC caches a clone's unmodified blocks once, for every clone of the snapshot.
        inode = view.inode_of(path, entry)
        if entry.layer is not None and inode not in self._private[cid] and inode not in self._new[cid]:
            return ("lower", view.image.layer_ids[entry.layer], inode[1])
        return ("data", cid, inode)

    def probe(self, cid, view, prefix, lower, parent_upper):
        # Each directory is a ZAP object of its own (a microzap block up to ~2,000 entries): a
        # walk reads one block per component. The ARC caches the snapshot's metadata once for
        # all its clones, until a clone changes it.
        if prefix in view.upper_files or prefix in view.upper_dirs or prefix in view.whiteouts:
            return (("meta", self.mounts[cid], prefix),), self.probe_cpu
        return (("meta", "snapshot", id(view.image), prefix),), self.probe_cpu

    def block_for(self, size):
        # A file smaller than the recordsize is one block of its own size, in whole sectors.
        return min(self.block_size, round_up(max(size, 1), PAGE))

    def _bytes_on_disk(self, cid, path, offset, nbytes):
        if nbytes <= 0:
            return 0
        record = self.block_for(self.views[cid].size_of(path))
        return round_up(offset + nbytes, record) - (offset // record) * record
