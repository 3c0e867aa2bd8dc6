"""Host profiles: the disk, the caches and the kernel's costs the engine charges.

A profile is a YAML file; the built-in ones live in ``sim/profiles/``. ``nvme``, ``ssd`` and
``hdd`` carry typical datasheet figures for the disk; ``host-calibrated`` holds values measured
on a real kernel by ``cowsim calibrate`` where it exists. Every field says its unit and meaning.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .units import Duration, Rate, Size

PROFILE_DIR = Path(__file__).parent / "profiles"


class DiskProfile(BaseModel):
    """A block device as fio measures it (``sim/engine.py: Disk`` uses these).

    Every request first spends an access time, ``requests x latency`` (reads and writes apart),
    on one of ``queue_depth`` channels, then transfers its bytes sharing the bandwidth with every
    other transfer in service. What fio reports maps onto the fields: sequential ``bs=1M``
    bandwidth is ``read_bandwidth``/``write_bandwidth``; random ``bs=4k iodepth=1`` mean completion
    latency is ``latency + 4 KiB / bandwidth``; random 4k IOPS at ``iodepth=d`` is about
    ``min(d, queue_depth) / latency``, at most ``bandwidth / 4 KiB``; ``fsync=1`` adds
    ``fsync_latency`` per write.
    """

    model_config = ConfigDict(extra="forbid")
    read_bandwidth: Rate = Field(gt=0, description=(
        "sequential read bandwidth (fio rw=read bs=1M), shared by every transfer in service [bytes/s]"))
    write_bandwidth: Rate = Field(gt=0, description=(
        "sequential write bandwidth (fio rw=write bs=1M direct=1), shared by every transfer in service [bytes/s]"))
    read_latency: Duration = Field(ge=0, description=(
        "access time of one read request besides its transfer (fio rw=randread bs=4k iodepth=1: mean completion "
        "latency minus 4 KiB / read_bandwidth) [s]"))
    write_latency: Duration = Field(ge=0, description=(
        "access time of one write request besides its transfer (fio rw=randwrite bs=4k iodepth=1 direct=1, as for "
        "reads) [s]"))
    fsync_latency: Duration = Field(ge=0, description=(
        "cache flush / journal commit per fsync, an access time like the others (fio fsync=1: its latency minus a "
        "write's) [s]"))
    queue_depth: int = Field(ge=1, le=1024, description=(
        "requests whose access times overlap: random 4k IOPS at iodepth d is about min(d, queue_depth) / latency. It "
        "does not multiply bandwidth [count]"))
    latency_cv: float = Field(0.0, ge=0, le=5, description=(
        "variability of request latency: coefficient of variation of a gamma factor with mean 1, drawn per request "
        "from the `disk` random stream; 0 = deterministic [1]"))


class KernelCosts(BaseModel):
    """CPU-side costs of the kernel and of the drivers' own code paths."""

    model_config = ConfigDict(extra="forbid")
    syscall: Duration = Field(2e-6, ge=0, description="fixed CPU per file operation (open/close/syscall entry) [s]")
    dentry_hit: Duration = Field(0.3e-6, ge=0, description="CPU of a path component found in the dentry cache [s]")
    layer_probe: Duration = Field(1.5e-6, ge=0, description=(
        "CPU of probing one layer for one path component on a dentry miss [s]"))
    metadata_block: Size = Field(4096, gt=0, description=(
        "bytes read from disk for a directory/inode not in cache [bytes]"))
    dir_entries_per_block: int = Field(128, ge=1, le=65536, description=(
        "entries one directory block holds (ext4/xfs: 8-byte header + name; 12-byte mean name in the Debian listing: "
        "~180 at full, leaves ~3/4 full after hashed-index splits); a directory of more entries is indexed [count]"))
    dir_index_fanout: int = Field(508, ge=2, le=65536, description=(
        "children of one index block of a hashed directory (ext4 htree: 8-byte dx_entry in 4 KiB): a lookup in an "
        "indexed directory reads one index block per level, ceil(log(blocks) / log(fanout)) levels [count]"))
    btree_lookup: Duration = Field(2e-6, ge=0, description=(
        "CPU of a btrfs lookup of one name on a dentry miss: two searches of the subvolume's B-tree, the parent's "
        "DIR_ITEM and the name's inode item (btrfs_lookup_dentry, btrfs_iget) [s]"))
    inodes_per_block: int = Field(16, ge=1, le=4096, description=(
        "inodes one inode-table block holds (ext4: 256-byte inodes, 4 KiB blocks): fuse-overlayfs loading a directory "
        "opens every entry of every layer's copy, reading their inodes a block at a time [count]"))
    memcpy_bandwidth: Rate = Field(8e9, gt=0, description="copy rate between user and page cache [bytes/s]")
    copy_chunk: Size = Field(2**20, gt=0, description=(
        "chunk size of a data copy-up; one disk request per chunk [bytes]"))
    copy_up_setup: Duration = Field(30e-6, ge=0, description=(
        "CPU of one file copy-up besides data: tmpfile in workdir, xattrs, rename [s]"))
    lookup_cold_reads: int = Field(0, ge=0, le=4096, description=(
        "metadata blocks the first lookup after a cache drop reads besides the directories it probes (inode tables of "
        "the layers' filesystem); once per cache drop, host-wide. 0 in the datasheet profiles; measured by cowsim "
        "calibrate [count]"))
    copy_up_cold_reads: int = Field(0, ge=0, le=4096, description=(
        "metadata blocks a copy-up reads from disk when the upper filesystem's metadata are not cached (workdir and "
        "upper directory blocks, inode and block bitmaps); once per cache drop, host-wide. 0 in the datasheet "
        "profiles; measured by cowsim calibrate [count]"))
    dir_copy_up: Duration = Field(25e-6, ge=0, description=(
        "CPU of copying up one ancestor directory: mkdir, xattrs, attributes, rename [s]"))
    metadata_update: Duration = Field(5e-6, ge=0, description=(
        "CPU of a metadata change: create, unlink, rename, chmod, mkdir [s]"))
    gzip_compress_bandwidth: Rate = Field(47e6, gt=0, description=(
        "rate at which dockerd gzips a rotated log file (log-opt compress), on one of the host's CPUs; zlib level 6 "
        "(Go's compress/gzip default) on JSON access-log lines, measured on this project's VM [bytes/s]"))
    clone_base: Duration = Field(60e-6, ge=0, description="fixed cost of a reflink clone (FICLONE) [s]")
    clone_per_gib: Duration = Field(50e-6, ge=0, description=(
        "extra clone cost per GiB of file: extent references, few for a contiguous file [s]"))
    fuse_request: Duration = Field(15e-6, ge=0, description=(
        "round trip kernel<->fuse daemon per request (two context switches) [s]"))
    fuse_layer_probe: Duration = Field(12e-6, ge=0, description=(
        "CPU of probing one layer in user space on a cold lookup (fuse-overlayfs) [s]"))
    fuse_dir_entry: Duration = Field(0.5e-6, ge=0, description=(
        "CPU of one entry read from one layer's copy of a directory when fuse-overlayfs loads the directory on first "
        "access (its share of getdents, a lookup in the directory's children hash table; load_dir in fuse-overlayfs "
        "main.c) [s]"))
    fuse_entry_layer_check: Duration = Field(3e-6, ge=0, description=(
        "CPU of checking one layer for an entry fuse-overlayfs meets for the first time while loading a directory: "
        "open or stat of the name, fstat, origin xattrs, in every layer from the one holding it down to the "
        "directory's lowest (make_ovl_node; quadratic in layers when each layer adds names) [s]"))
    fuse_bandwidth: Rate = Field(945e6, gt=0, description=(
        "data rate through a FUSE daemon (fuse-overlayfs #390: 945 MB/s) [bytes/s]"))
    layer_create: Duration = Field(400e-6, ge=0, description=(
        "creating one union layer directory (upper, work, mount) [s]"))
    hardlink: Duration = Field(4e-6, ge=0, description=(
        "one hard link when the legacy overlay driver builds a layer [s]"))
    btrfs_snapshot: Duration = Field(8e-3, ge=0, description=(
        "one btrfs subvolume snapshot ioctl, including its commit [s]"))
    zfs_clone: Duration = Field(150e-3, ge=0, description="zfs snapshot + clone through the zfs CLI [s]")
    dm_thin_create: Duration = Field(1.95, ge=0, description=(
        "devicemapper thin device creation + activation (containerd #2988 on EBS) [s]"))
    dm_remove: Duration = Field(0.5, ge=0, description="devicemapper device removal with discards [s]")
    aufs_copy_block: Duration = Field(1.0e-6, ge=0, description=(
        "CPU of one block of aufs's own copy-up loop besides the memcpy: a kernel read and a write of one filesystem "
        "block (4 KiB) and the all-zero test (aufs cpup.c au_do_copy_file) [s]"))
    aufs_revalidate: Duration = Field(0.3e-6, ge=0, description=(
        "CPU of aufs revalidating one cached path component against one branch (udba=reval, the default: aufs checks "
        "its cached dentries on every access); default: one dentry-cache hit's worth per branch [s]"))
    aufs_xino_write: Duration = Field(3e-6, ge=0, description=(
        "CPU of one write of aufs's external inode number table (xino file) for a new inode on the writable branch, "
        "under the xino file's lock [s]"))
    gzip_decompress_rate: Rate = Field(200e6, gt=0, description=(
        "bytes of layer data one core decompresses per second from gzip, counted uncompressed (measured here: "
        "gzip 1.12 -d of a 454 MB tar of /usr/bin, /usr/lib/python3.11 and /usr/share/doc, 2.25 s of user CPU; "
        "dockerd pipes through unpigz when installed, whose inflate is single-threaded too) [bytes/s]"))
    zstd_decompress_rate: Rate = Field(1.15e9, gt=0, description=(
        "bytes of layer data one core decompresses per second from zstd, counted uncompressed (measured here: zstd "
        "1.5.4 -d of the same tar compressed at level 3, 0.39 s of user CPU) [bytes/s]"))
    container_start: Duration = Field(0.1, ge=0, description=(
        "CPU of starting a created container besides its storage: the runtime's create and start (namespaces, "
        "cgroups, mounting the prepared rootfs, exec of the entrypoint); charged only when containers start "
        "(scenario node block, docs/model.md \"Pulling an image\") [s]"))


class RegistryProfile(BaseModel):
    """The registry images are pulled from, as one network link (``sim/pull.py``).

    A request costs a round trip plus the registry's own time before its first byte; its bytes
    then share the link's bandwidth with every download in flight (processor sharing, the
    engine's :class:`~sim.engine.Disk` on these figures). Requests overlap their round trips
    (HTTP connections of their own). Defaults: a registry or mirror in the node's region.
    """

    model_config = ConfigDict(extra="forbid")
    bandwidth: Rate = Field(125e6, gt=0, le=1e12, description=(
        "bytes per second the node receives from the registry, shared by every download in flight (default 1 Gbit/s: "
        "a cloud VM's network share or a registry mirror in its region) [bytes/s]"))
    round_trip: Duration = Field(0.02, ge=0, le=60, description=(
        "network round trip of one HTTP request (default 20 ms: a registry in the node's region) [s]"))
    request_overhead: Duration = Field(0.03, ge=0, le=60, description=(
        "the registry's time to answer one request before its first byte: authorisation, lookup of the blob, TLS "
        "record setup (default 30 ms, an estimate) [s]"))
    manifest_requests: int = Field(4, ge=0, le=100, description=(
        "requests before the first layer: bearer token, manifest list, the platform's manifest, image configuration "
        "(moby distribution/pull_v2.go pullV2Tag, pullManifestList, pullSchema2Config) [count]"))
    blob_requests: int = Field(2, ge=1, le=100, description=(
        "requests per layer blob: GET /v2/<name>/blobs/<digest> and the 307 redirect to the storage backend or CDN "
        "(OCI distribution-spec, pulling blobs) [count]"))


class Profile(BaseModel):
    """A host: one disk, its caches, its CPUs and the kernel's costs."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="profile name")
    description: str = Field("", description="what the profile stands for")
    source: str = Field("", description="where its numbers come from")
    disk: DiskProfile
    costs: KernelCosts = Field(default_factory=KernelCosts)
    page_cache: Size = Field(4 * 2**30, gt=0, description="page cache capacity [bytes]")
    cache_block: Size = Field(128 * 2**10, gt=0, description="page cache granularity (readahead window) [bytes]")
    dentry_cache: int = Field(1_000_000, ge=1, description="dentries one mount's cache holds [entries]")
    registry: RegistryProfile = Field(default_factory=RegistryProfile, description=(
        "the registry images are pulled from (a node that starts without its images)"))
    cores: int = Field(2, ge=1, le=4096, description=(
        "CPUs that run the kernel's and the FUSE daemons' work for every container, first come first served (default: "
        "a 2-vCPU VM, this project's machine kind) [count]"))


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


class ProfileError(ValueError):
    pass


@lru_cache(maxsize=64)
def _load(path: str) -> Profile:
    from .files import PROFILE_BYTES, ReadError, load_yaml, read_text
    try:
        text = read_text(path, PROFILE_BYTES, "profile")
    except ReadError as error:
        raise ProfileError(str(error)) from None
    try:
        _, data = load_yaml(text)
        return Profile.model_validate(data)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ProfileError(f"{where}: not valid YAML: {getattr(error, 'problem', None) or error}") from None
    except ValidationError as error:  # one line: the first problem
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ProfileError(f"{path}: invalid profile: {field}: {first['msg']}") from None


def load_profile(name_or_path: str | Path | None = None) -> Profile:
    """A built-in profile by name (default ``ssd``) or a profile file by path."""
    name = str(name_or_path or "ssd")
    candidate = PROFILE_DIR / f"{name}.yaml"
    if candidate.exists():
        return _load(str(candidate))
    if Path(name).suffix in (".yaml", ".yml") or "/" in name:
        return _load(str(Path(name).resolve()))
    raise ProfileError(f"unknown profile {name!r}: use one of {', '.join(builtin_profiles())} "
                       "or a path to a profile YAML")
