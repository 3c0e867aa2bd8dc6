"""Storage drivers, one file each, registered by name in :data:`REGISTRY`.

The order of the imports is the registry's: union drivers (Docker's default first), snapshot
drivers, then full copies. It is the order drivers are listed, swept by ``--driver all`` and
drawn in figures' legends."""
from . import overlay2, overlay, aufs, fuse_overlayfs, btrfs, zfs, devicemapper, vfs  # noqa: F401  (registration)
from ..operation import OPERATIONS, Op  # noqa: F401  (they live in sim.operation; older code imports them here)
from .base import DOCKER_IMAGE_LAYER_LIMIT, REGISTRY, Driver, LayerLimitError
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


__all__ = ["REGISTRY", "Driver", "NativeDriver", "LayerLimitError", "UnknownDriverError", "DOCKER_IMAGE_LAYER_LIMIT",
           "driver_names", "get_driver"]
