"""A plain host filesystem: no layers, no copy-on-write.

The base of vfs and of the snapshot drivers, and what volumes and bind mounts run on: a lookup
probes one directory per path component, data lives in the mount's own files.
"""
from __future__ import annotations

from ..image import Image, Layer
from ..plan import SETUP, Plan
from .base import Driver


class NativeDriver(Driver):
    """The host filesystem itself. Not a storage driver: volumes and the drivers below use it."""

    name = "native"
    summary = "the host filesystem (volumes and bind mounts)"
    shares_page_cache = False

    def create_volume(self, key, entries: list[tuple[str, str, int]]) -> tuple[Image, int]:
        """A volume; a named volume mounted over an image directory starts as a copy of it."""
        files = {path: size for path, kind, size in entries if kind == "file"}
        dirs = {path for path, kind, _ in entries if kind == "dir"}
        image = Image(f"volume-{key}", [Layer(name=f"volume-{key}", files=files, dirs=dirs)])
        self.create_container(key, image)
        return image, sum(files.values())

    def _full_copy(self, plan: Plan, nbytes: int, entries: int) -> None:
        """Copy a tree (an image directory into a volume, a layer for vfs): read, write, write back."""
        plan.cpu(SETUP, entries * self.costs.metadata_update + nbytes / self.costs.memcpy_bandwidth)
        plan.disk_read(SETUP, nbytes, max(1, entries))
        plan.writeback(SETUP, nbytes)

    def _container_created(self, plan, cid, image):
        plan.cpu(SETUP, self.costs.layer_create)

    def container_real_bytes(self, cid):
        return self.views[cid].file_bytes()
