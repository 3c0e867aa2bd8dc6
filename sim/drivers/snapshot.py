"""Block-granular copy-on-write shared by btrfs, zfs and devicemapper.

Every layer and container is a snapshot: lookups cost the same at any depth, and a write to a
shared block gives the container a private copy of that block only (``docs:btrfs``,
``docs:zfs``, ``dm-thin``). So a first write costs what it touches, rounded to the block, not the
file's size. The three drivers differ in block size, in how a partial write to a shared block is
served and in what creating a snapshot costs.
"""
from __future__ import annotations

from ..plan import COPY_UP, SETUP
from .base import round_up
from .native import NativeDriver


class SnapshotDriver(NativeDriver):
    def snapshot_s(self) -> float:
        """Seconds to make one snapshot (of a layer, the -init layer or a container): a cost of
        the profile's, which each driver names."""
        raise NotImplementedError

    def remove_s(self) -> float:
        """Seconds to delete one snapshot."""
        raise NotImplementedError

    def __init__(self, options=None, profile=None):
        super().__init__(options, profile)
        # per container, keyed by inode (a rename moves a name, not the blocks):
        # image file -> (bytes shared with the image at its first write, private blocks)
        self._private: dict[int, dict[object, tuple[int, set[int]]]] = {}
        self._new: dict[int, set[object]] = {}  # files the container created: every block private

    @property
    def block_size(self) -> int:
        raise NotImplementedError

    def block_for(self, size: int) -> int:
        """The copy-on-write unit of a file of ``size`` bytes."""
        return self.block_size

    # -- lifecycle -----------------------------------------------------------------------------
    def _device_work(self, plan, seconds: float) -> None:
        """Making or deleting snapshots: ``seconds`` of the driver's work, on a core."""
        plan.cpu(SETUP, seconds)

    def _layer_created(self, plan, image, layer):
        self._device_work(plan, self.snapshot_s())

    def _layer_removed(self, plan, layer):
        self._device_work(plan, self.remove_s())

    def _container_created(self, plan, cid, image):
        self._device_work(plan, 2 * self.snapshot_s())  # -init and the container
        self._private[cid] = {}
        self._new[cid] = set()

    def _container_removed(self, plan, cid, view):
        self._device_work(plan, 2 * self.remove_s())
        del self._private[cid], self._new[cid]

    # -- copy-on-write of blocks ---------------------------------------------------------------
    def _make_writable(self, plan, cid, view, path, offset, nbytes, size):
        entry = view.stat(path)
        view.copy_up(path)  # namespace: the file is now part of the container's diff
        inode = view.upper_files[path]
        if inode in self._new[cid] or nbytes <= 0:
            return
        files = self._private[cid]
        if inode not in files:
            files[inode] = (size, set())
        shared_size, private = files[inode]
        block = self.block_for(shared_size)
        last_shared = -(-shared_size // block) - 1
        broken = 0
        for index in range(offset // block, min((offset + nbytes - 1) // block, last_shared) + 1):
            if index in private:
                continue
            private.add(index)
            broken += 1
            start, end = index * block, min((index + 1) * block, shared_size)
            whole = offset <= start and offset + nbytes >= end
            self._break_block(plan, cid, view, path, entry, index * block, block, whole, size)
        if broken:
            plan.copy_ups += 1
            plan.copy_up_bytes += broken * block

    def _break_block(self, plan, cid, view, path, entry, start, block, whole, size) -> None:
        """Serve the first write to a shared block: by default, read the rest of it first."""
        if not whole:
            plan.read(COPY_UP, self.data_key(cid, view, path, entry), start, block, size)

    def _file_created(self, cid, inode):
        self._new[cid].add(inode)
        self._private[cid].pop(inode, None)

    def _truncated(self, cid, inode, size):
        if size == 0:
            self._file_created(cid, inode)

    def _removed(self, cid, inode):
        self._new[cid].discard(inode)
        self._private[cid].pop(inode, None)

    # -- disk usage ----------------------------------------------------------------------------
    def container_real_bytes(self, cid):
        """Private blocks, plus whatever a file grew beyond what it shares, plus new files."""
        sizes = self.views[cid].sizes
        total = 0
        for inode in self._new[cid]:
            size = sizes[inode]
            total += round_up(size, self.block_for(size))
        for inode, (shared, private) in self._private[cid].items():
            size, block = sizes[inode], self.block_for(shared)
            total += len(private) * block + max(0, round_up(size, block) - round_up(shared, block))
        return total
