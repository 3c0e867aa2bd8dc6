"""overlay (legacy, removed in Engine 24): exactly one lower directory.

Each image layer is a hard-link copy of its parent plus its own diff, so a lookup probes the
upper directory and one lower directory only, but building a layer costs one hard link per entry
of everything below it and consumes inodes.
"""
from pydantic import BaseModel, ConfigDict, Field

from ..plan import SETUP
from .base import register
from .union import UnionDriver, UnionOptions


class OverlayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reflink: bool = Field(False, description=(
        "the backing filesystem clones (xfs with reflink, btrfs): copy-up data is cloned, not copied"
    ))
    tmpfile: bool = UnionOptions.model_fields["tmpfile"]


@register
class Overlay(UnionDriver):
    name = "overlay"
    summary = (
        "legacy kernel overlayfs: one lower directory of hard links; lookups probe 2 layers, layer builds cost "
        "O(entries)"
    )
    layer_limit_reason = "Docker caps images at 125 layers (127 minus -init and container layers)"
    Options = OverlayOptions
    single_lower = True

    def prepare_image(self, image, present=0):
        plan = super().prepare_image(image, present)
        entries_below = 0
        for index, layer in enumerate(image.layers):
            if index >= present:  # every entry below is hard-linked into this layer's directory
                plan.cpu(SETUP, entries_below * self.costs.hardlink)
            entries_below += layer.entries
        return plan
