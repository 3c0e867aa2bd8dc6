"""devicemapper: each layer and container a dm-thin snapshot device (removed in Engine 25).

The thin pool shares blocks of ``block_size`` (64 KiB, 512 KiB in Docker's direct-lvm example);
the first write to part of a shared block copies the whole block below the filesystem
(``dm-thin``). dm-thin breaks the sharing when the write reaches the device, that is at
writeback, or at the fsync that sends it: a buffered write does not wait for the copy.
Creating and removing thin devices is slow; containers do not share the page cache.
"""
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..plan import COPY_UP, SETUP
from ..units import Size
from .base import PAGE, register, round_up
from .snapshot import SnapshotDriver

DEVICESET_LOCK = ("devicemapper", "DeviceSet")  # the driver's one global mutex


class DevicemapperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block_size: Size = Field(64 * 1024, ge=64 * 1024, le=2**30, description=(
        "thin-pool block size, a multiple of 64 KiB [bytes]"
    ))

    @field_validator("block_size")
    @classmethod
    def _multiple_of_64k(cls, value: int) -> int:
        if value % (64 * 1024):
            raise ValueError(f"must be a multiple of 64 KiB, got {value} bytes")
        return value


@register
class Devicemapper(SnapshotDriver):
    name = "devicemapper"
    summary = "dm-thin snapshots; whole 64 KiB block copied on a partial first write; slow device creation"
    Options = DevicemapperOptions

    def snapshot_s(self) -> float:
        return self.costs.dm_thin_create

    def _device_work(self, plan, seconds: float) -> None:
        # dockerd's DeviceSet mutex serialises every call into libdevmapper: AddDevice and
        # DeleteDevice hold it over the whole creation or deletion (graphdriver/devmapper/deviceset.go).
        plan.lock(SETUP, DEVICESET_LOCK)
        super()._device_work(plan, seconds)
        plan.unlock(SETUP, DEVICESET_LOCK)

    def remove_s(self) -> float:
        return self.costs.dm_remove

    @property
    def block_size(self) -> int:
        return self.options.block_size

    def __init__(self, options=None, profile=None):
        super().__init__(options, profile)
        self._unsent_copy = 0  # bytes of shared blocks the operation being planned must copy

    def _break_block(self, plan, cid, view, path, entry, start, block, whole, size):
        if not whole:
            # A file smaller than a thin block shares it with the files its filesystem packed
            # beside it: the block is copied once for all of them, this file's share its own size.
            self._unsent_copy += min(block, round_up(size, PAGE))

    def _flush(self, plan, cid, path, offset, nbytes, sync):
        copy, self._unsent_copy = self._unsent_copy, 0
        if copy and sync:  # the fsync sends the write: the block is copied first, and waited for
            plan.disk_read(COPY_UP, copy)
            plan.disk_write(COPY_UP, copy)
        elif copy:  # copied when writeback sends the write (its read of the old block left out)
            plan.writeback(COPY_UP, copy)
        super()._flush(plan, cid, path, offset, nbytes, sync)
