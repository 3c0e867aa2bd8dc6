"""Storage drivers, one file each, registered by name in :data:`REGISTRY`.

The shipped drivers register in the order imported here: union drivers (Docker's default
first), snapshot drivers, then full copies; any other module of this package is imported after
them, so a new driver's file registers itself (in name order) without a line here. The
registry's order is the order drivers are listed, swept by ``--driver all`` and drawn in legends.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from . import overlay2, overlay, aufs, fuse_overlayfs, btrfs, zfs, devicemapper, vfs  # noqa: F401  (registration)
from ..operation import OPERATIONS, Op  # noqa: F401  (they live in sim.operation; older code imports them here)
from .base import DOCKER_IMAGE_LAYER_LIMIT, REGISTRY, Driver, LayerLimitError
from .native import NativeDriver

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")


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
