"""vfs: no copy-on-write at all.

Each image layer is a full copy of its parent plus its diff, and a container is two more full
copies (-init and the writable layer). Creation time and disk use grow with image size x layers;
afterwards writes run at native speed and never copy up.
"""
from pydantic import BaseModel, ConfigDict

from ..fsview import ContainerView
from ..plan import SETUP
from .base import register
from .native import NativeDriver


class VfsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register
class Vfs(NativeDriver):
    name = "vfs"
    summary = "full copies: every layer copies its parent, every container copies the image twice"
    Options = VfsOptions

    def prepare_image(self, image, present=0):
        plan = super().prepare_image(image, present)
        for index in range(max(1, present), len(image.layers)):
            self._full_copy(plan, image.merged_size_by_layer[index - 1], sum(
                layer.entries for layer in image.layers[:index]))
        return plan

    def _container_created(self, plan, cid, image):
        entries = len(image.merged)
        for _copy in ("-init", "container"):
            self._full_copy(plan, image.merged_size, entries)

    def _container_removed(self, plan, cid, view):
        plan.cpu(SETUP, 2 * len(view.image.merged) * self.costs.metadata_update)

    def layer_real_bytes(self, image, index):
        """A layer is a full copy of the merged view up to it."""
        return image.merged_size_by_layer[index]

    def container_real_bytes(self, cid):
        """The -init copy of the image plus the container's own full copy as it is now (moby's
        copy keeps hard links: a linked file's data is there once)."""
        return ContainerView(self.images[cid]).file_bytes() + super().container_real_bytes(cid)
