"""Storage drivers, one file each, registered by name in :data:`REGISTRY`."""
from . import aufs, btrfs, devicemapper, fuse_overlayfs, overlay, overlay2, vfs, zfs  # noqa: F401  (registration)
from .base import DOCKER_IMAGE_LAYER_LIMIT, OPERATIONS, REGISTRY, Driver, LayerLimitError, Op
from .native import NativeDriver


class UnknownDriverError(ValueError):
    pass


def driver_names() -> list[str]:
    return list(REGISTRY)


def get_driver(name: str) -> type[Driver]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDriverError(f"unknown driver {name!r}: use one of {', '.join(REGISTRY)}") from None


__all__ = ["REGISTRY", "Driver", "NativeDriver", "Op", "OPERATIONS", "LayerLimitError", "UnknownDriverError",
           "DOCKER_IMAGE_LAYER_LIMIT", "driver_names", "get_driver"]
