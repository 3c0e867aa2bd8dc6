"""fuse-overlayfs: the overlay algorithm in a user-space daemon.

Every operation pays a round trip to the daemon, cold lookups probe layers in user space (far
slower per layer than the kernel) and data passes through FUSE at a lower rate. Its cache is
per mount: containers do not share the page cache of the image's files.
"""
from pydantic import BaseModel, ConfigDict, Field

from .base import register
from .union import UnionDriver


class FuseOverlayfsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    volatile: bool = Field(False, description="fuse-overlayfs -o fsync=0: no fsync after copy-up, fsync(2) is a no-op")
    reflink: bool = Field(False, description="copy-up by copy_file_range on a filesystem that clones (xfs with reflink, btrfs)")


@register
class FuseOverlayfs(UnionDriver):
    name = "fuse-overlayfs"
    summary = "overlay algorithm in user space: a context switch per request, slow cold lookups, per-mount cache"
    Options = FuseOverlayfsOptions
    fuse = True
    shares_page_cache = False
