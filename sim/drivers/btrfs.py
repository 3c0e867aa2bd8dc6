"""btrfs: each layer and container a subvolume snapshot; 4 KiB redirect-on-write sectors.

A partial write to a shared sector reads that page first; each fsync also writes the tree log
(metadata copy-on-write). Containers do not share the page cache of the image's files.

The namespace is one B-tree per subvolume (``docs:btrfs``, on-disk format): items sorted by
(inode number, type, offset). A directory's inode item is followed by its DIR_ITEMs (one per
entry, in name-hash order) and DIR_INDEXes; each file's inode, back reference and extent items
sit at its own inode number, in creation order. A lookup of a name reads the leaf holding the
parent's DIR_ITEM for that name's hash and the leaf holding the name's inode item, below
internal nodes whose root stays in memory. Small directories created together share leaves: a
cold walk of a modest tree reads a few leaves whatever its depth. Snapshots share tree blocks,
so containers of one image share the image's cached leaves.
"""
from __future__ import annotations

from weakref import WeakKeyDictionary

from pydantic import BaseModel, ConfigDict, Field

from ..image import DIR, Image
from ..plan import FSYNC
from ..units import Size
from .base import PAGE, name_position, register
from .snapshot import SnapshotDriver

# On-disk sizes (btrfs on-disk format, ctree.h): item header 25 bytes (17-byte key, offset,
# size); btrfs_dir_item 30 + name; btrfs_inode_item 160; btrfs_inode_ref 10 + name; a file
# extent item 53; a node header 101; a key pointer of an internal node 33.
ITEM_HEADER, DIR_ITEM, INODE_ITEM, INODE_REF, FILE_EXTENT = 25, 30, 160, 10, 53
NODE_HEADER, KEY_POINTER = 101, 33

# per image, per node size: its layout, built once per process (the runs of a sweep share images)
LAYOUTS: WeakKeyDictionary[Image, dict[int, BtreeLayout]] = WeakKeyDictionary()


class BtreeLayout:
    """Where each name of an image's merged view lies in its subvolume's B-tree, and the nodes a
    lookup of it reads. Inode numbers follow creation order: the layers bottom-up, each in tar
    order (a directory before its entries); a name keeps the number it was first created with."""

    def __init__(self, image: Image, nodesize: int):
        self.tree = ("btree", id(image))
        self.capacity = nodesize - NODE_HEADER  # item bytes a leaf holds
        self.fanout = (nodesize - NODE_HEADER) // KEY_POINTER
        merged = image.merged
        order: dict[str, None] = {"": None}  # the subvolume's root directory first
        for layer in image.layers:
            # tar order: "/" sorts first, so that a directory's entries follow it at once
            for path in sorted((*layer.dirs, *layer.files), key=lambda p: p.replace("/", "\0")):
                if path in merged:
                    order.setdefault(path)
        entry_bytes: dict[str, int] = {}  # directory -> bytes of its DIR_ITEMs
        for path in merged:
            parent, _, name = path.rpartition("/")
            entry_bytes[parent] = entry_bytes.get(parent, 0) + ITEM_HEADER + DIR_ITEM + len(name)
        self.inode_at: dict[str, int] = {}  # name -> byte offset of its inode item
        self.entries_at: dict[str, tuple[int, int]] = {}  # directory -> (offset, bytes) of its DIR_ITEMs
        offset = 0
        for path in order:
            name = path.rpartition("/")[2]
            self.inode_at[path] = offset
            offset += 2 * ITEM_HEADER + INODE_ITEM + INODE_REF + len(name)
            if path == "" or merged[path][0] == DIR:
                items = entry_bytes.get(path, 0)
                self.entries_at[path] = (offset, items)
                offset += 2 * items  # DIR_ITEMs, then as many bytes of DIR_INDEXes
            else:
                offset += ITEM_HEADER + FILE_EXTENT
        self.leaves = max(1, -(-offset // self.capacity))
        self._keys: dict[str, tuple] = {}

    def _path(self, tree, offset: int) -> tuple:
        """The nodes from below the root (pinned in memory with the subvolume) down to the leaf
        holding ``offset``."""
        leaf = offset // self.capacity
        keys = [(*tree, 0, leaf)]
        level, span = 1, self.fanout
        while span < self.leaves:
            keys.append((*tree, level, leaf // span))
            level, span = level + 1, span * self.fanout
        return tuple(keys)

    def keys(self, prefix: str, mount) -> tuple:
        """The nodes a dentry miss of ``prefix`` reads: the parent's DIR_ITEM for its name, then
        its inode item. A name the image lacks lives in the container's own tree."""
        found = self._keys.get(prefix)
        if found is not None:
            return found
        parent, _, name = prefix.rpartition("/")
        entries = self.entries_at.get(parent)
        if entries is None:  # a directory the container made: its own leaf
            return (("btree", mount, "new", parent),)
        start, items = entries
        keys = self._path(self.tree, start + int(name_position(name) * items))
        inode = self.inode_at.get(prefix)
        if inode is None:
            return keys
        keys = tuple(dict.fromkeys(keys + self._path(self.tree, inode)))
        self._keys[prefix] = keys
        return keys


class BtrfsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fsync_metadata_bytes: Size = Field(16384, ge=0, description=(
        "tree-log / metadata written per fsync: one 16 KiB node by default [bytes]"
    ))
    nodesize: Size = Field(16384, ge=4096, le=65536, description=(
        "B-tree node size (mkfs.btrfs --nodesize, 16 KiB by default): how many items a leaf holds and how many "
        "children an internal node has [bytes]"
    ))


@register
class Btrfs(SnapshotDriver):
    name = "btrfs"
    probes_shared_by_image = True  # an image name's items are in the image's tree (BtreeLayout)
    summary = "btrfs subvolume snapshots; 4 KiB copy-on-write sectors; private page cache"
    Options = BtrfsOptions

    def snapshot_s(self) -> float:
        return self.costs.btrfs_snapshot

    def remove_s(self) -> float:
        return self.costs.btrfs_snapshot

    @property
    def block_size(self) -> int:
        return PAGE

    def probe(self, cid, view, prefix, lower, parent_upper):
        layouts = LAYOUTS.setdefault(view.image, {})
        layout = layouts.get(self.options.nodesize)
        if layout is None:
            layout = layouts[self.options.nodesize] = BtreeLayout(view.image, self.options.nodesize)
        return layout.keys(prefix, self.mounts[cid]), self.costs.btree_lookup

    def _flush(self, plan, cid, path, offset, nbytes, sync):
        super()._flush(plan, cid, path, offset, nbytes, sync)
        if sync:
            plan.disk_write(FSYNC, self.options.fsync_metadata_bytes)
