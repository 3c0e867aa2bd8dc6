"""overlay2: kernel overlayfs with every image layer as its own lower directory."""
from .base import register
from .union import UnionDriver, UnionOptions


@register
class Overlay2(UnionDriver):
    name = "overlay2"
    summary = "kernel overlayfs, one lower directory per layer; page cache shared between containers"
    max_layers = 127  # 128 lower directories: the image's layers plus -init
    layer_limit_reason = (
        "overlay2 mounts at most 128 lower directories (the image's plus -init) and Docker caps images at 125 layers"
    )
    Options = UnionOptions
