"""Real layered filesystems on this host: layers written from :class:`sim.image.Layer`, overlay,
fuse-overlayfs, xfs and btrfs on loop devices, cache drops, snapshots and full copies.

Everything mounted or attached goes through a :class:`Sandbox`, whose ExitStack unmounts,
detaches and deletes in reverse order however the block ends (error, Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from pathlib import Path

from ..image import Layer

OVERLAY_WHITEOUT = (0, 0)  # a whiteout is a character device 0/0 (overlayfs.rst "whiteouts")
OPAQUE_XATTR = "trusted.overlay.opaque"


class Skip(Exception):
    """An experiment that cannot run here, with the reason."""


def is_root() -> bool:
    return os.geteuid() == 0


def filesystem_supported(name: str) -> bool:
    """The kernel knows ``name`` (already registered, or loadable as a module)."""
    try:
        if any(line.split()[-1] == name for line in Path("/proc/filesystems").read_text().splitlines()):
            return True
    except OSError:
        return False
    try:
        return subprocess.run(["modprobe", "-q", name], capture_output=True).returncode == 0
    except OSError:  # no modprobe (a container, a minimal image): only what is registered counts
        return False


def require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise Skip(f"{', '.join(missing)} not installed")


def run(*command: str, cwd: str | Path | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise OSError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip() or 'failed'}")


def drop_caches() -> None:
    """Write back dirty pages, then drop page cache, dentries and inodes."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def write_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes of real (non-sparse) data."""
    block = b"\xa5" * (1 << 20)
    with open(path, "wb") as handle:
        remaining = size
        while remaining > 0:
            remaining -= handle.write(block[: min(remaining, len(block))])


def materialize(layer: Layer, root: Path) -> None:
    """Write a layer diff as overlayfs reads a lower directory: files, directories, whiteouts
    (character devices 0/0) and opaque directories (xattr trusted.overlay.opaque=y)."""
    root.mkdir(parents=True, exist_ok=True)
    for path in sorted(layer.dirs):
        (root / path).mkdir(parents=True, exist_ok=True)
    for path, size in layer.files.items():
        write_file(root / path, size)
    for path in layer.whiteouts:
        os.mknod(root / path, 0o600 | 0o020000, os.makedev(*OVERLAY_WHITEOUT))
    for path in layer.opaque_dirs:
        os.setxattr(root / path, OPAQUE_XATTR, b"y")


class Sandbox:
    """A scratch directory whose mounts and loop devices are always released, in reverse order."""

    def __init__(self, parent: str | Path | None = None, prefix: str = "cowsim-"):
        self.parent = parent
        self.prefix = prefix
        self.stack = contextlib.ExitStack()
        self.root: Path | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Sandbox:
        # SIGTERM (and SIGHUP) would kill the process without unwinding: turn them into an exception.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._previous[signum] = signal.signal(signum, _raise_interrupt)
            except ValueError:  # not the main thread: leave signals alone
                pass
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.parent))
        self.stack.callback(shutil.rmtree, self.root, ignore_errors=True)
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self.stack.close()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        return False

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # -- mounts --------------------------------------------------------------------------------
    def overlay(self, lowers: list[Path], upper: Path, work: Path, merged: Path, options: str = "") -> _Unmount:
        """Kernel overlayfs. ``lowers`` top first. Paths go relative to the sandbox so that 100+
        layers fit in the one page of mount data (what Docker does too)."""
        rel = lambda p: os.path.relpath(p, self.root)  # noqa: E731
        data = f"lowerdir={':'.join(rel(p) for p in lowers)},upperdir={rel(upper)},workdir={rel(work)}"
        if options:
            data += "," + options
        for directory in (upper, work, merged):
            directory.mkdir(parents=True, exist_ok=True)
        run("mount", "-t", "overlay", "overlay", "-o", data, rel(merged), cwd=self.root)
        return self.stack.enter_context(_Unmount(merged))

    def fuse_overlay(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> _Unmount:
        require("fuse-overlayfs")
        if not Path("/dev/fuse").exists():
            raise Skip("/dev/fuse is missing")
        for directory in (upper, work, merged):
            directory.mkdir(parents=True, exist_ok=True)
        data = f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={upper},workdir={work}"
        run("fuse-overlayfs", "-o", data, str(merged))
        return self.stack.enter_context(_Unmount(merged))

    def loop_filesystem(self, fstype: str, size: int, name: str, mkfs_options: tuple[str, ...] = ()) -> Path:
        """A fresh ``fstype`` on a loop device backed by a sparse file; returns its mount point."""
        if not filesystem_supported(fstype):
            raise Skip(f"the kernel has no {fstype} filesystem")
        require("losetup", f"mkfs.{fstype}")
        backing = self.path(f"{name}.img")
        with open(backing, "wb") as handle:
            handle.truncate(size)
        done = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
        if done.returncode:
            raise Skip(f"no loop device: {done.stderr.strip()}")
        device = done.stdout.strip()
        self.stack.callback(subprocess.run, ["losetup", "-d", device], capture_output=True)
        run(f"mkfs.{fstype}", "-q", *mkfs_options, device)
        target = self.path(name)
        target.mkdir()
        run("mount", device, str(target))
        self.stack.enter_context(_Unmount(target))
        return target


class _Unmount(contextlib.AbstractContextManager):
    def __init__(self, target: Path):
        self.target = target
        self.active = True

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Unmount now (idempotent); a busy mount is detached lazily rather than left behind."""
        if not self.active:
            return
        self.active = False
        if subprocess.run(["umount", str(self.target)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.target)], capture_output=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def mounts_below(root: Path) -> list[str]:
    """Mount points at or below ``root`` (for checks that nothing was left behind)."""
    root_text = str(root)
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if point == root_text or point.startswith(root_text + "/"):
            found.append(point)
    return found


def loops_backed_by(root: Path) -> list[str]:
    done = subprocess.run(["losetup", "-a"], capture_output=True, text=True)
    return [line.split(":")[0] for line in done.stdout.splitlines() if str(root) in line]


# -- btrfs subvolumes through the ioctls Docker's btrfs driver uses -------------------------------
def _iow(number: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (0x94 << 8) | number


BTRFS_IOC_SUBVOL_CREATE = _iow(14, 4096)      # struct btrfs_ioctl_vol_args (fd, name[4088])
BTRFS_IOC_SNAP_CREATE_V2 = _iow(23, 4096)     # struct btrfs_ioctl_vol_args_v2


def btrfs_subvolume(parent: Path, name: str) -> Path:
    args = bytearray(struct.pack("q4088s", 0, name.encode()))
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, args)
    finally:
        os.close(fd)
    return parent / name


def btrfs_snapshot(source: Path, parent: Path, name: str) -> Path:
    """A writable snapshot of subvolume ``source`` as ``parent/name`` (BTRFS_IOC_SNAP_CREATE_V2)."""
    src = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    dst = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # fd, transid, flags, 4 x u64 union, name[4040]
        args = bytearray(struct.pack("qQQ32s4040s", src, 0, 0, b"", name.encode()))
        fcntl.ioctl(dst, BTRFS_IOC_SNAP_CREATE_V2, args)
    finally:
        os.close(src)
        os.close(dst)
    return parent / name
