"""The scenario schema, in one place: every field with its unit, bounds and meaning.

A scenario file is YAML; sizes, durations and rates are written in human units (``64MiB``,
``2ms``, ``500MB/s``) and parsed by :mod:`sim.units`. The ``sweep:`` block lists values to try:

.. code-block:: yaml

    sweep:
      driver.name: [overlay2, btrfs]          # an axis: every value of it ...
      image.file_size: [4KiB, 1MiB]           # ... with every value of the other axes
      zip:                                    # a group of fields that move together:
        - {image.layers: [1, 8], image.dir_depth: [1, 4]}   # (1, 1) then (8, 4), one axis

The points are the cartesian product of the axes, in the order they are written, the last one
varying fastest; each point runs ``replicates`` times. A number in a dotted field picks an item
of a list (``images.1.layers``: the layers of the second image of ``images:``).
"""
from __future__ import annotations

import copy
import difflib
import itertools
import math
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field as dataclass_field
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator, TypeAdapter)

from .drivers import REGISTRY
from .image import PROBE_DIR_ENTRIES
from .units import MAX_FILE_SIZE, Duration, Rate, Size

# Bounds on what scales a run's work and memory, checked before anything runs (why each: the
# comment beside it). A synthetic image entry costs about 350 bytes and 5 us to build.
MAX_IMAGE_ENTRIES = 4_000_000    # image entries (layers x files_per_layer, or a real image's): ~1.4 GiB
MAX_WORKERS = 100_000            # simulated processes (containers x workers), each a SimPy process and a stream
MAX_POINTS = 100_000             # points of a sweep: each is validated and held before the first run starts
MAX_RUNS = 1_000_000             # points x replicates: each finished run keeps a summary row in memory
MAX_OPERATIONS = 10**12          # a mix's operation budget (an int64 column counts them)
MAX_SEED = 2**63 - 1             # seeds end in an int64 column
PATH_MAX, NAME_MAX = 4096, 255   # Linux's limits on a path and on one of its names

OPS_IN_MIX = ("read", "write", "append", "create", "delete", "stat", "rename", "truncate", "chmod")
# Units of the fields whose values may be written in human units (parsed by sim.units).
HUMAN_UNITS = {"bytes": "a size, e.g. 4096, 64KiB, 1.5GB", "s": "a duration, e.g. 0.002, 2ms, 150us",
               "bytes/s": "a rate, e.g. 1000, 64KiB/s, 1MB/s"}
# The ``kind`` a mapping gets when it leaves it out.
DEFAULT_KINDS = {"image": "synthetic", "images": "synthetic", "workload": "mix"}


def default_kind(key: str, node: dict) -> str | None:
    """The kind of ``image:``/``workload:`` (or of an item of ``images:``) when it does not say (an
    image saying ``from:`` is a file)."""
    return "file" if key in ("image", "images") and "from" in node else DEFAULT_KINDS.get(key)
ZIP = "zip"


def field(default: Any = ..., *, unit: str = "-", description: str, **constraints: Any) -> Any:
    """A schema field: its meaning, its unit (``-`` for none) and its bounds, all in one place."""
    return Field(default, description=description, json_schema_extra={"unit": unit}, **constraints)


class FieldError(ValueError):
    """A validation error about a field below the model that raises it (``path`` relative)."""

    def __init__(self, message: str, *path: str | int):
        super().__init__(message)
        self.path = path


def suggest(key: str, valid: list[str]) -> str:
    """``(did you mean 'layers'?)``, or the valid names when none is close."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"(did you mean {close[0]!r}?)" if close else "(use one of " + ", ".join(valid) + ")"


def unknown_key(key: str, valid: list[str], what: str = "field") -> str:
    return f"unknown {what} {key!r} {suggest(key, valid)}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DriverSpec(Strict):
    name: str = field("overlay2", description="storage driver: " + ", ".join(REGISTRY))
    options: dict[str, Any] = field(default_factory=dict, description="driver options (see `cowsim drivers`)")

    @model_validator(mode="after")
    def _known(self) -> DriverSpec:
        if self.name not in REGISTRY:
            raise FieldError(f"unknown driver {self.name!r}: use one of {', '.join(REGISTRY)}", "name")
        options = REGISTRY[self.name].Options
        try:
            self.options = options.model_validate(self.options).model_dump()
        except ValidationError as error:
            first = error.errors()[0]
            key = first["loc"][0] if first["loc"] else ""
            if first["type"] == "extra_forbidden":
                valid = list(options.model_fields)
                hint = suggest(str(key), valid) if valid else "(it has no options)"
                raise FieldError(f"{self.name} has no option {key!r} {hint}", "options", key) from None
            raise FieldError(first["msg"].removeprefix("Value error, "), "options", key) from None
        return self


class SyntheticImage(Strict):
    kind: Literal["synthetic"] = field("synthetic", description="an image generated from the seed")
    layers: int = field(5, unit="count", ge=1, description="image layers")
    files_per_layer: int = field(200, unit="count", ge=0, le=MAX_IMAGE_ENTRIES, description="files each layer adds")
    size_distribution: Literal["fixed", "lognormal", "empirical"] = field("lognormal", description=(
        "file-size distribution"))
    file_size: Size = field(16384, unit="bytes", gt=0, le=MAX_FILE_SIZE, description=(
        "fixed size, or median of the lognormal"))
    sigma: float = field(1.5, ge=0, le=5, description="shape of the lognormal (sigma of log size)")
    size_table: list[tuple[Size, float]] = field(default_factory=list, unit="[bytes, 1]", max_length=10_000,
                                                 description="empirical rows [size, weight]")
    dir_depth: int = field(3, unit="levels", ge=0, le=64, description=(
        "files lie 1..dir_depth directories below the root"))
    fanout: int = field(4, unit="count", ge=1, le=1000, description="subdirectories per directory")
    overwrite_fraction: float = field(0.05, ge=0, le=1, description="share of lower files each layer rewrites")
    delete_fraction: float = field(0.01, ge=0, le=1, description="share of lower files each layer deletes (whiteouts)")

    @field_validator("size_table")
    @classmethod
    def _table(cls, rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
        for index, (size, weight) in enumerate(rows):
            if not 0 <= size <= MAX_FILE_SIZE:
                raise FieldError(f"a size is 0 to {MAX_FILE_SIZE:,} bytes (1 TiB), got {size:,}", index, 0)
            if not (weight > 0 and weight < float("inf")):
                raise FieldError(f"a weight is a positive finite number, got {weight!r}", index, 1)
        return rows

    @model_validator(mode="after")
    def _bounded(self) -> SyntheticImage:
        if self.size_distribution == "empirical" and not self.size_table:
            raise FieldError("the empirical distribution needs rows [size, weight]", "size_table")
        if self.layers * self.files_per_layer > MAX_IMAGE_ENTRIES:
            raise FieldError(f"layers x files_per_layer = {self.layers * self.files_per_layer:,} files, more than "
                             f"{MAX_IMAGE_ENTRIES:,} (about 350 bytes of memory each)", "files_per_layer")
        return self


class ProbeImage(Strict):
    kind: Literal["probe"] = field("probe", description="one target file under layers that each add a file beside it")
    file_size: Size = field(2**20, unit="bytes", ge=0, le=MAX_FILE_SIZE, description="size of the target file")
    layers: int = field(1, unit="count", ge=1, description="image layers; the target lies in the bottom one")
    dir_depth: int = field(1, unit="levels", ge=0, le=256, description="directories between the root and the target")
    dir_entries: int = field(PROBE_DIR_ENTRIES, unit="count", ge=0, le=100_000,
                             description="files each layer holds in the target's directory (beside the target in the "
                                         f"bottom one); {PROBE_DIR_ENTRIES}: the median directory of the Debian "
                                         "bookworm listing, counted per file")

    @model_validator(mode="after")
    def _bounded(self) -> ProbeImage:
        if self.layers * self.dir_entries > MAX_IMAGE_ENTRIES:
            raise FieldError(f"layers x dir_entries = {self.layers * self.dir_entries:,} files, more than "
                             f"{MAX_IMAGE_ENTRIES:,} (about 350 bytes of memory each)", "dir_entries")
        return self


class FileImage(Strict):
    kind: Literal["file"] = field("file", description="a real image read from disk")
    path: str = field(validation_alias=AliasChoices("path", "from"),
                      description="a `docker save` tar, an OCI layout (directory or tar) or a cowsim listing "
                                  "(.csv/.csv.gz); `from:` is the same field")


ImageSpec = Annotated[SyntheticImage | ProbeImage | FileImage, Field(discriminator="kind")]

IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")  # a repository[:tag] as Docker writes it


class Named(Strict):
    """What every image of ``images:`` has besides its kind's fields: a name."""

    name: str = field(description="the image's name, which containers.groups[].image, base and "
                                  "remove_images_at_end use")

    @field_validator("name")
    @classmethod
    def _docker_name(cls, value: str) -> str:
        if not IMAGE_NAME.fullmatch(value):
            raise ValueError(f"an image name is 1 to 255 lowercase letters, digits and . _ - / : @, starting with a "
                             f"letter or digit (as Docker's), got {value!r}")
        return value


class NamedSynthetic(SyntheticImage, Named):
    base: str | None = field(None, description=(
        "another image of `images:` this one is built on: its layers are the base's (the same layers, stored once "
        "on the node) followed by `layers` of its own"))


class NamedProbe(ProbeImage, Named):
    pass


class NamedFile(FileImage, Named):
    pass


NamedImageSpec = Annotated[NamedSynthetic | NamedProbe | NamedFile, Field(discriminator="kind")]
NAMED_IMAGES: TypeAdapter[list[NamedSynthetic | NamedProbe | NamedFile]] = TypeAdapter(list[NamedImageSpec])


def bases_first(specs: list) -> list:
    """The named image specs in an order where every base comes before the images built on it
    (otherwise as written); the bases must exist and form no cycle (the scenario checked that)."""
    by_name = {spec.name: spec for spec in specs}
    ordered: dict[str, Any] = {}

    def visit(spec) -> None:
        base = getattr(spec, "base", None)
        if base is not None and base not in ordered:
            visit(by_name[base])
        ordered.setdefault(spec.name, spec)

    for spec in specs:
        visit(spec)
    return list(ordered.values())


class VolumeSpec(Strict):
    name: str = field(description="volume name; containers naming the same volume share it")
    mount: str = field(description="mount point inside the container, e.g. /data")
    kind: Literal["named", "bind"] = field("named", description=(
        "named: filled from the image directory on first mount; bind: starts empty"))

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value or "/" in value or len(value) > NAME_MAX:
            raise ValueError(f"a volume name is 1 to {NAME_MAX} characters without '/', got {value!r}")
        return value

    @field_validator("mount")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a mount point is an absolute path inside the container, got {value!r}")
        problem = path_problem(value)
        if problem:
            raise ValueError(problem)
        parts: list[str] = []
        for part in value.split("/"):
            if part == "..":
                if not parts:
                    raise ValueError(f"{value!r} leaves the container's root")
                parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        if not parts:
            raise ValueError("a volume cannot be mounted at /")
        return "/" + "/".join(parts)  # normalised, and still valid when validated again (by a worker)


LOG_DRIVERS = ("json-file", "local")
MAX_LOG_LINE = 16 * 1024  # dockerd's copier splits longer lines into partial messages (logger/copier.go)


class LoggingSpec(Strict):
    """What each container writes to stdout and how dockerd's log driver keeps it (``docker run
    --log-driver --log-opt``). Off by default: with ``rate`` and ``bytes_per_op`` 0 nothing is logged."""

    driver: Literal["json-file", "local"] = field("json-file", description=(
        "json-file: one JSON object per line (Docker's default); local: protobuf entries, rotated and compressed by "
        "default"))
    rate: Rate = field(0.0, unit="bytes/s", ge=0, le=1e10, description=(
        "stdout rate of each container (0 = none, counted from the workload's start)"))
    bytes_per_op: Size = field(0, unit="bytes", ge=0, le=2**24, description=(
        "stdout bytes per operation (0 = none, printed as each operation of a container completes)"))
    line_bytes: Size = field(100, unit="bytes", ge=1, le=MAX_LOG_LINE, description=(
        "bytes per stdout line (its newline included, up to 16 KiB as dockerd splits longer lines)"))
    max_size: Size | None = field(None, unit="bytes", ge=4096, le=MAX_FILE_SIZE, description=(
        "log file size that rotates it (log-opt max-size, a file at or past it is rotated before the next line, "
        "null = the driver's default, json-file never rotates, local 20 MiB, at least 4 KiB here although dockerd "
        "takes any positive size, as below nearly every line would be a rotation)"))
    max_file: int | None = field(None, unit="count", ge=1, le=1000, description=(
        "log files kept per container (log-opt max-file, the current one included, 1 = the file is emptied at "
        "rotation, null = the driver's default, json-file 1, local 5)"))
    compress: bool | None = field(None, description=(
        "gzip rotated log files (log-opt compress, null = the driver's default, json-file false, local true)"))
    compressed_fraction: float = field(0.11, gt=0, le=1, description=(
        "gzipped size of a rotated log file over its size (0.11 for JSON access-log lines at zlib level 6, it "
        "depends on what the containers print)"))
    interval: Duration = field(0.01, unit="s", ge=0.001, le=3600, description=(
        "time between log batches (the simulated dockerd hands each container's new lines to the host filesystem "
        "as one batch of CPU, page cache and writeback, a resolution of the simulation, not a Docker setting)"))

    @property
    def enabled(self) -> bool:
        return self.rate > 0 or self.bytes_per_op > 0

    def options(self) -> tuple[int | None, int, bool]:
        """(max-size or None for never, max-file, compress), the driver's defaults filled in
        (moby daemon/logger/jsonfilelog/jsonfilelog.go and daemon/logger/local/local.go)."""
        local = self.driver == "local"
        max_size = self.max_size if self.max_size is not None else (20 * 2**20 if local else None)
        max_file = self.max_file if self.max_file is not None else (5 if local else 1)
        compress = self.compress if self.compress is not None else local
        return max_size, max_file, compress

    @model_validator(mode="after")
    def _compressible(self) -> LoggingSpec:
        max_size, max_file, compress = self.options()
        if compress and (max_file < 2 or max_size is None):
            # dockerd refuses the container too (json-file: "compress cannot be true when max-file
            # is less than 2 or max-size is not set"; local: "... when max file count is 1").
            raise FieldError(f"compress needs max_file of 2 or more and a max_size (got max_file {max_file}, "
                             f"max_size {max_size})", "compress")
        return self


class ContainerGroup(Strict):
    image: str = field(description="the name of the image (in `images:`) these containers run")
    count: int = field(1, unit="count", ge=1, le=MAX_WORKERS, description="containers of this image")


class ContainersSpec(Strict):
    count: int = field(1, unit="count", ge=1, le=MAX_WORKERS, description=(
        "containers started from the image; with groups, their sum (may be left out)"))
    groups: list[ContainerGroup] = field(default_factory=list, max_length=10_000, description=(
        "with `images:`, how many containers run each image, in container order (a group after another: "
        "containers 0..count-1 of the first group, then the next)"))
    volumes: list[VolumeSpec] = field(default_factory=list, max_length=1000, description=(
        "volumes every container mounts"))
    remove_at_end: bool = field(False, description="delete the containers when the workload ends (volumes stay)")
    logging: LoggingSpec = field(default_factory=LoggingSpec, description=(
        "what the containers print to stdout and how the log driver stores it (off by default)"))

    @field_validator("volumes")
    @classmethod
    def _distinct(cls, volumes: list[VolumeSpec]) -> list[VolumeSpec]:
        kinds: dict[str, str] = {}
        mounts: set[str] = set()
        for index, volume in enumerate(volumes):
            if volume.mount in mounts:
                raise FieldError(f"two volumes are mounted at {volume.mount}", index, "mount")
            mounts.add(volume.mount)
            if kinds.setdefault(volume.name, volume.kind) != volume.kind:
                raise FieldError(f"volume {volume.name!r} is mounted as both {kinds[volume.name]} and {volume.kind}",
                                 index, "kind")
        return volumes

    @model_validator(mode="after")
    def _counted(self) -> ContainersSpec:
        if self.groups:
            total = sum(group.count for group in self.groups)
            if "count" in self.model_fields_set and self.count != total:
                raise FieldError(f"count is {self.count:,} but the groups hold {total:,} containers: give one of them",
                                 "count")
            if total > MAX_WORKERS:
                raise FieldError(f"the groups hold {total:,} containers, more than {MAX_WORKERS:,}", "groups")
            self.count = total
        return self

    def image_names(self, default: str) -> list[str]:
        """The image each container runs, by container id (``default`` without groups)."""
        if not self.groups:
            return [default] * self.count
        return [group.image for group in self.groups for _ in range(group.count)]


class CopyupProbe(Strict):
    kind: Literal["copyup_probe"] = field("copyup_probe", description="each container writes chosen files twice")
    files: int = field(1, unit="count", ge=1, le=MAX_IMAGE_ENTRIES, description=(
        "files per container given a first and a second write"))
    write_size: Size = field(1, unit="bytes", ge=1, le=MAX_FILE_SIZE, description="bytes each write writes")
    fsync: bool = field(True, description="fsync before close")


class Mix(Strict):
    kind: Literal["mix"] = field("mix", description="random operations drawn from a mix")
    ops: dict[str, float] = field(default_factory=lambda: {"read": 0.7, "write": 0.15, "append": 0.05, "stat": 0.05,
                                                           "create": 0.05},
                                  description="probability of each operation: " + ", ".join(OPS_IN_MIX))
    file_choice: Literal["uniform", "zipf", "sequential"] = field("zipf", description=(
        "how files are picked: uniformly, by Zipf rank, or sequential: each stream walks the image's files in path "
        "order (depth first) from the start, as a program walking a tree does"))
    zipf_s: float = field(1.1, gt=0, le=5, description="Zipf exponent")
    request_size: Size = field(4096, unit="bytes", gt=0, le=MAX_FILE_SIZE, description="bytes per read/write/append")
    create_size: Size = field(4096, unit="bytes", ge=0, le=MAX_FILE_SIZE, description="bytes written into a new file")
    fsync: bool = field(False, description="writes fsync before close")
    mode: Literal["closed", "open"] = field("closed", description="closed loop (workers) or open loop (arrivals)")
    workers: int = field(1, unit="count", ge=1, le=10_000, description="closed loop: concurrent workers per container")
    think_time: Duration = field(0.0, unit="s", ge=0, description="closed loop: pause between a worker's operations")
    arrival_rate: float = field(100.0, unit="1/s", gt=0, description="open loop: operations per second per container")
    operations: int | None = field(1000, unit="count", ge=1, le=MAX_OPERATIONS, description=(
        "stop after this many operations in all"))
    duration: Duration | None = field(None, unit="s", gt=0, description="stop after this much simulated time")
    volume_fraction: float = field(0.0, ge=0, le=1, description="share of operations on files in the volumes")

    @field_validator("ops")
    @classmethod
    def _probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name not in OPS_IN_MIX:
                raise FieldError(unknown_key(name, list(OPS_IN_MIX), "operation"), name)
        if any(not 0 <= p < float("inf") for p in value.values()) or sum(value.values()) <= 0:
            raise ValueError("probabilities must be non-negative, finite and not all zero")
        return value

    @model_validator(mode="after")
    def _stop(self) -> Mix:
        if self.operations is None and self.duration is None:
            raise FieldError("give operations or duration (or both)", "operations")
        return self


class Trace(Strict):
    kind: Literal["trace"] = field("trace", description="each container replays a recorded program's file I/O")
    path: str = field(description=(
        "`strace -f -tt -T` output (plain or .gz) of the program whose file I/O each container replays"))
    cwd: str = field("/", description="working directory the traced program started in (for its relative paths)")
    think_scale: float = field(1.0, ge=0, le=1e6, description=(
        "multiplies the recorded time between file operations (0: back to back)"))
    start_interval: Duration = field(0.0, unit="s", ge=0, description=(
        "container i starts its replay i times this later"))

    @field_validator("cwd")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"cwd must be an absolute path, got {value!r}")
        return value


WorkloadSpec = Annotated[CopyupProbe | Mix | Trace, Field(discriminator="kind")]


class NodeSpec(Strict):
    """The node the containers start on, and how they start (docs/model.md, "Pulling an image").
    With every default, the images are laid on disk before anything runs and every container
    is created at once, as before: no pull, no start."""

    images_present: bool = field(True, description=(
        "true: the images are on the node before the first container (laid on disk as a finished pull leaves them); "
        "false: the node starts without them and each container pulls what its image lacks when it is created "
        "(layers already on the node are not fetched again)"))
    arrival_interval: Duration = field(0.0, unit="s", ge=0, le=86_400, description=(
        "container i arrives (is pulled, created and started) i times this after the first"))
    first_read_fraction: float = field(0.0, ge=0, le=1, description=(
        "share of its image's bytes a container reads when it starts (its files in path order, whole), before it "
        "counts as running"))
    max_concurrent_downloads: int = field(3, unit="count", ge=1, le=1024, description=(
        "layers downloaded at once, over every pull (dockerd --max-concurrent-downloads, default 3)"))
    compression: Literal["gzip", "zstd"] = field("gzip", description=(
        "how the registry's layer blobs are compressed (decompression rates: the profile's costs)"))
    compressed_fraction: float = field(0.42, gt=0, le=1, description=(
        "compressed bytes per byte of layer data (0.42: gzip -6 of a tar of /usr/bin, /usr/lib/python3.11 and "
        "/usr/share/doc on this project's VM; zstd -3 gives 0.40)"))

    @property
    def starts_containers(self) -> bool:
        """Containers arrive, (pull,) are created and start one by one: anything but the defaults."""
        return not self.images_present or self.arrival_interval > 0 or self.first_read_fraction > 0


class Scenario(Strict):
    """One experiment: a host, a driver, an image, containers and their workload."""

    name: str = field("scenario", description=(
        "scenario name (results go to results/<name>/)"), pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = field("", description="what the scenario asks")
    seed: int = field(0, ge=0, le=MAX_SEED, description="root of every random stream (numpy SeedSequence)")
    replicates: int = field(1, unit="count", ge=1, le=10_000, description=(
        "runs per point, each with its own random streams"))
    profile: str = field("ssd", description="host profile: nvme, ssd, hdd, or a path to a profile YAML")
    cache: Literal["cold", "warm"] = field("cold", description=(
        "cold: empty caches at start; warm: image files and dentries cached"))
    settle: bool = field(True, description=(
        "true: the workload starts on a quiet host, once the disk has written what preparing the image and creating "
        "the containers left behind (as after `sync`; the wait is the setup operation `settle`, counted in setup_s); "
        "false: that traffic is still on the disk when the workload starts"))
    driver: DriverSpec = field(default_factory=DriverSpec, description="the storage driver and its options")
    image: ImageSpec = field(default_factory=SyntheticImage, description=(
        "the image (kind: synthetic, probe or file); or give `images:`"))
    images: list[NamedImageSpec] = field(default_factory=list, max_length=1000, description=(
        "instead of `image:`, several named images on the node (kind: synthetic, probe or file, each with a name; a "
        "synthetic one may name a base); layers are content-addressed, so images share the layers they have in "
        "common; containers.groups say which image each container runs"))
    containers: ContainersSpec = field(default_factory=ContainersSpec, description="containers and their volumes")
    node: NodeSpec = field(default_factory=NodeSpec, description=(
        "the node's start: images present or pulled from the registry, containers arriving over time"))
    remove_images_at_end: list[str] = field(default_factory=list, max_length=1000, description=(
        "`docker rmi` of these images after the workload (and after containers.remove_at_end): only layers no "
        "other image holds are freed; an image a remaining container runs cannot be removed"))
    prune_images_at_end: bool = field(False, description=(
        "`docker image prune -a` after the workload (and the removals above): every image no container runs is "
        "removed"))
    workload: WorkloadSpec = field(default_factory=Mix, description=(
        "what the containers do (kind: mix, copyup_probe or trace)"))
    sweep: dict[str, list[Any]] = field(default_factory=dict, description=(
        "dotted field -> values; `zip:` holds groups that move together"))
    keep_ops: bool = field(True, description="write the per-operation table ops.parquet")

    @model_validator(mode="before")
    @classmethod
    def _default_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in DEFAULT_KINDS:
                if isinstance(data.get(key), dict) and "kind" not in data[key]:
                    data = {**data, key: {"kind": default_kind(key, data[key]), **data[key]}}
            if isinstance(data.get("images"), list):
                data = {**data, "images": [{"kind": default_kind("images", item), **item}
                                           if isinstance(item, dict) and "kind" not in item else item
                                           for item in data["images"]]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _one_image_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "image" in data and data.get("images"):
            raise FieldError("give image: (one image) or images: (several), not both", "images")
        return data

    @model_serializer(mode="wrap")
    def _without_unused_image(self, handler: Any) -> Any:
        """With ``images:``, the dump leaves ``image:`` out (it would be a second image)."""
        data = handler(self)
        if self.images and isinstance(data, dict):
            data.pop("image", None)
        return data

    def stacked_layers(self, name: str) -> int | None:
        """Layers of the named image with those of its bases (None where a file must be read)."""
        by_name = {spec.name: spec for spec in self.images}
        total, spec = 0, by_name[name]
        for _ in by_name:  # (a cycle of bases is refused by _images_named, which runs first)
            layers = getattr(spec, "layers", None)
            if layers is None:
                return None
            total += layers
            base = getattr(spec, "base", None)
            if base is None:
                return total
            spec = by_name[base]
        return None

    @model_validator(mode="after")
    def _images_named(self) -> Scenario:
        """Names are unique, bases and groups name images of ``images:``, bases form no cycle."""
        names: dict[str, int] = {}
        for index, spec in enumerate(self.images):
            if spec.name in names:
                raise FieldError(f"two images are named {spec.name!r}", "images", index, "name")
            names[spec.name] = index
        for index, spec in enumerate(self.images):
            base = getattr(spec, "base", None)
            if base is None:
                continue
            if base not in names:
                raise FieldError(f"unknown image {base!r} {suggest(base, list(names))}", "images", index, "base")
            seen, at = [spec.name], base
            while at is not None:
                if at in seen:
                    raise FieldError("bases form a cycle: " + " -> ".join([*seen, at]), "images", index, "base")
                seen.append(at)
                at = getattr(self.images[names[at]], "base", None)
        groups = self.containers.groups
        if groups and not self.images:
            raise FieldError("containers.groups name images of `images:`; with `image:` use count",
                             "containers", "groups")
        for index, group in enumerate(groups):
            if group.image not in names:
                raise FieldError(f"unknown image {group.image!r} {suggest(group.image, list(names))}",
                                 "containers", "groups", index, "image")
        if len(self.images) > 1 and not groups:
            raise FieldError("with several images, say which image the containers run: containers.groups: "
                             "[{image: NAME, count: N}, ...]", "containers", "groups")
        used = set(self.containers.image_names(self.images[0].name if self.images else ""))
        for index, name in enumerate(self.remove_images_at_end):
            if name not in names:
                hint = suggest(name, list(names)) if names else "(remove_images_at_end names images of `images:`)"
                raise FieldError(f"unknown image {name!r} {hint}", "remove_images_at_end", index)
            if name in used and not self.containers.remove_at_end:
                raise FieldError(f"image {name!r} is run by containers that stay (docker rmi refuses): set "
                                 f"containers.remove_at_end", "remove_images_at_end", index)
        return self

    @field_validator("profile")
    @classmethod
    def _profile_loads(cls, value: str) -> str:
        from .profile import load_profile
        load_profile(value)  # a ProfileError is a ValueError: reported on this field
        return value

    @model_validator(mode="after")
    def _layers_fit(self) -> Scenario:
        checks = [(getattr(self.image, "layers", None), ("image", "layers"))] if not self.images else \
            [(self.stacked_layers(spec.name), ("images", index, "layers")) for index, spec in enumerate(self.images)]
        for layers, where in checks:
            if layers is None:
                continue
            try:
                REGISTRY[self.driver.name].check_layers(layers)
            except ValueError as error:
                based = bool(self.images) and getattr(self.images[where[1]], "base", None) is not None
                included = " (its bases' layers included)" if based else ""
                raise FieldError(f"{error}{included}", *where) from None
        return self

    @model_validator(mode="after")
    def _does_something(self) -> Scenario:
        """Combinations that would run and answer nothing (or something else than asked)."""
        workload, image = self.workload, self.image  # (the checks of one image; with images: at run time)
        if isinstance(workload, Mix):
            if workload.volume_fraction > 0 and not self.containers.volumes:
                raise FieldError("volume_fraction > 0 needs containers.volumes", "workload", "volume_fraction")
            processes = self.containers.count * (workload.workers if workload.mode == "closed" else 1)
            if processes > MAX_WORKERS:
                raise FieldError(f"containers.count x workload.workers = {processes:,} simulated processes, more "
                                 f"than {MAX_WORKERS:,}", "workload", "workers")
            creates = workload.ops.get("create", 0) > 0
            if not self.images and isinstance(image, SyntheticImage) and image.files_per_layer == 0 and not creates:
                raise FieldError("the image holds no files and the mix creates none: nothing to operate on",
                                 "image", "files_per_layer")
        if isinstance(workload, CopyupProbe) and not self.images:
            most = 1 if isinstance(image, ProbeImage) else \
                image.layers * image.files_per_layer if isinstance(image, SyntheticImage) else None
            if most is not None and workload.files > most:
                raise FieldError(f"{workload.files:,} files asked, the image holds at most {most:,}",
                                 "workload", "files")
        return self


# -- sweeps -------------------------------------------------------------------------------------

class SweepError(ValueError):
    """A malformed ``sweep:`` block; ``path`` is where in the scenario mapping."""

    def __init__(self, message: str, path: tuple):
        super().__init__(message)
        self.path = path


@dataclass
class Axis:
    """Fields that move together (one field, or a zip group) and their values, with the
    path of each value in the scenario mapping (for error lines)."""

    keys: tuple[str, ...]
    values: list[tuple]
    sources: list[dict[str, tuple]] = dataclass_field(default_factory=list)


@dataclass
class Point:
    index: int
    values: dict[str, Any]            # swept field -> value as written
    data: dict                        # the full scenario mapping of this point, without sweep
    sources: dict[str, tuple]         # swept field -> path of its value in the scenario mapping


UNSWEEPABLE = ("name", "sweep")


def path_problem(path: str) -> str | None:
    """What makes ``path`` one Linux would refuse (ENAMETOOLONG), or None."""
    if len(path.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        return f"a path of {len(path):,} characters, longer than PATH_MAX ({PATH_MAX})"
    longest = max(path.split("/"), key=len)
    if len(longest.encode("utf-8", "surrogateescape")) > NAME_MAX:
        return f"a name of {len(longest):,} characters, longer than NAME_MAX ({NAME_MAX})"
    return None


def _check_key(key: Any, path: tuple) -> str:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise SweepError(f"a sweep key is a dotted field path such as image.layers, got {key!r}", path)
    if key.split(".")[0] in UNSWEEPABLE:
        raise SweepError(f"{key} cannot be swept", path)
    return key


def _check_values(values: Any, path: tuple) -> list:
    if not isinstance(values, list):
        raise SweepError(f"give a list of values, got {values!r}", path)
    if not values:
        raise SweepError("an empty list sweeps nothing: give at least one value", path)
    return values


def sweep_axes(sweep: Any) -> list[Axis]:
    """The axes of a ``sweep:`` block, checked for shape (not for the values' validity)."""
    if sweep is None:
        return []
    if not isinstance(sweep, dict):
        raise SweepError(f"sweep is a mapping of field -> list of values, got {type(sweep).__name__}", ("sweep",))
    axes, seen = [], set()
    for key, values in sweep.items():
        if key == ZIP:
            groups = _check_values(values, ("sweep", ZIP))
            for g, group in enumerate(groups):
                where = ("sweep", ZIP, g)
                if not isinstance(group, dict) or not group:
                    raise SweepError("each zip group maps fields to lists of the same length", where)
                keys = [_check_key(k, where + (k,)) for k in group]
                columns = [_check_values(group[k], where + (k,)) for k in keys]
                if len({len(c) for c in columns}) > 1:
                    lengths = ", ".join(f"{k}: {len(c)}" for k, c in zip(keys, columns))
                    raise SweepError(f"the lists of a zip group must have the same length ({lengths})", where)
                axes.append(Axis(tuple(keys), list(zip(*columns)),
                                 [{k: where + (k, j) for k in keys} for j in range(len(columns[0]))]))
        else:
            key = _check_key(key, ("sweep", key))
            values = _check_values(values, ("sweep", key))
            axes.append(Axis((key,), [(v,) for v in values], [{key: ("sweep", key, j)} for j in range(len(values))]))
        for axis_key in axes[-1].keys:
            if axis_key in seen:
                raise SweepError(f"{axis_key} is swept twice", ("sweep", axis_key))
            seen.add(axis_key)
    return axes


def swept_fields(sweep: dict | None) -> list[str]:
    """The fields a ``sweep:`` block moves (zip groups flattened), in order."""
    return [key for axis in sweep_axes(sweep) for key in axis.keys]


def _index(node: list, key: str) -> int:
    """The item of a list a dotted key's part names (``images.1.layers``: the second image)."""
    if not key.isdigit() or int(key) >= len(node):
        raise SweepError(f"{key!r} is not an item of a list of {len(node)}", ())
    return int(key)


def _put(node: dict | list, key: str, value: Any) -> None:
    if isinstance(node, list):
        node[_index(node, key)] = value
    else:
        node[key] = value


def _child(node: dict | list, key: str) -> Any:
    return node[_index(node, key)] if isinstance(node, list) else node.get(key)


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested mappings (a number picks an item of a list), creating the mappings
    on the way."""
    keys = dotted.split(".")
    node: dict | list = data
    for key in keys[:-1]:
        child = _child(node, key)
        if not isinstance(child, (dict, list)):
            child = {}
            _put(node, key, child)
        node = child
    _put(node, keys[-1], value)


def _with_value(data: dict, dotted: str, value: Any) -> dict:
    """``data`` with ``a.b.c`` set, copying only the mappings and lists on the way (the rest is
    shared: points are read, never changed, so a sweep of 10^5 points does not copy the base 10^5
    times)."""
    keys = dotted.split(".")
    top = dict(data)
    node: dict | list = top
    for key in keys[:-1]:
        child = _child(node, key)
        child = dict(child) if isinstance(child, dict) else list(child) if isinstance(child, list) else {}
        _put(node, key, child)
        node = child
    _put(node, keys[-1], value)
    return top


def count_points(axes: list[Axis]) -> int:
    return math.prod(len(axis.values) for axis in axes)


def expand_points(data: dict) -> list[Point]:
    """Every point of the sweep: the base mapping with one combination of the swept values.
    The number of points is checked before any is made."""
    axes = sweep_axes(data.get("sweep"))
    total = count_points(axes)
    if total > MAX_POINTS:
        sizes = " x ".join(str(len(axis.values)) for axis in axes)
        raise SweepError(f"the sweep has {sizes} = {total:,} points, more than {MAX_POINTS:,}; split it into "
                         f"several scenarios", ("sweep",))
    base = {k: v for k, v in data.items() if k != "sweep"}
    if axes:
        _check_swept_fields(axes, base)
    points = []
    for index, combination in enumerate(itertools.product(*(range(len(a.values)) for a in axes))):
        point, values, sources = base, {}, {}
        for axis, j in zip(axes, combination):
            for key, value in zip(axis.keys, axis.values[j]):
                point = _with_value(point, key, value)
                values[key] = value
                sources[key] = axis.sources[j][key]
        points.append(Point(index, values, point, sources))
    return points


def _check_swept_fields(axes: list[Axis], base: dict) -> None:
    """A swept field that the schema does not have is refused before the points are made."""
    first = base
    for axis in axes:
        for key, value in zip(axis.keys, axis.values[0]):
            try:
                first = _with_value(first, key, value)
            except SweepError as error:
                raise SweepError(str(error), axis.sources[0][key][:-1]) from None
    for axis in axes:
        for key in axis.keys:
            parts = key.split(".")
            for depth in range(1, len(parts) + 1):
                model = model_at(tuple(parts[:depth - 1]), first)
                if model is None:
                    break  # a mapping of free keys (driver options, mix ops): checked when validated
                if parts[depth - 1] not in model.model_fields and not parts[depth - 1].isdigit():  # (an item)
                    raise SweepError(unknown_key(parts[depth - 1], list(model.model_fields)), axis.sources[0][key][:-1])


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> tuple[dict, dict[tuple, str]]:
    """The scenario with ``KEY=VALUE`` overrides applied (values read as YAML), and for each
    overridden path the override that set it. ``sweep.KEY=[...]`` replaces a sweep axis;
    overriding a swept field fixes it to that one value."""
    data = copy.deepcopy(data)
    origins: dict[tuple, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        label = f"--set {item}"
        if not sep or not key:
            raise SweepError(f"{label}: use --set KEY=VALUE, e.g. --set image.layers=8", ())
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if key.startswith("sweep."):
            swept = key.removeprefix("sweep.")
            sweep = dict(data.get("sweep") or {})
            sweep[swept] = value
            data["sweep"] = sweep
            origins[("sweep", swept)] = label
            continue
        sweep = data.get("sweep") or {}
        if key in sweep:
            data["sweep"] = {k: v for k, v in sweep.items() if k != key}
        elif any(isinstance(g, dict) and key in g for g in sweep.get(ZIP) or []):
            raise SweepError(f"{label}: {key} moves with others in a zip group; "
                             "override the group with --set sweep.zip=...", ())
        try:
            set_dotted(data, key, value)
        except SweepError as error:
            raise SweepError(f"{label}: {error}", ()) from None
        origins[tuple(int(k) if k.isdigit() else k for k in key.split("."))] = label
    return data, origins


def union_kinds() -> set[str]:
    """Every ``kind`` of the image and workload unions (pydantic puts them in error locations)."""
    return {member.model_fields["kind"].default for info in Scenario.model_fields.values()
            for member in _members(info.annotation) if "kind" in member.model_fields}


# -- reading the schema --------------------------------------------------------------------------

def model_at(path: tuple, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of the scenario mapping."""
    model: type[BaseModel] | None = Scenario
    node = data
    items: tuple[Any, str] | None = None  # (annotation, name) of the list field just entered
    for part in path:
        if isinstance(part, str) and part.isdigit() and items is not None:  # a dotted key's list index
            part = int(part)
        if isinstance(part, int):  # an item of a list of models: the model of that item
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if items is not None:
                model = _model_of(items[0], node, items[1])
            continue
        info = model.model_fields.get(part) if model else None
        if info is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        items = (info.annotation, part) if typing.get_origin(info.annotation) is list else None
        model = _model_of(info.annotation, node if items is None else None, part)
    return model


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's value (or a list field's items) may be: unions and lists unwrapped."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [member for arg in typing.get_args(annotation) for member in _members(arg)]


def _model_of(annotation: Any, node: Any, name: str) -> type[BaseModel] | None:
    members = _members(annotation)
    if len(members) <= 1:
        return members[0] if members else None
    kind = node.get("kind", default_kind(name, node)) if isinstance(node, dict) else DEFAULT_KINDS.get(name)
    return next((m for m in members if m.model_fields["kind"].default == kind), None)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', origin)}[{args}]"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _bounds(info) -> str:
    text = []
    for constraint in info.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("pattern", "matches")):
            value = getattr(constraint, attr, None)
            if value is not None:
                text.append(f"{symbol} {value}")
    return ", ".join(text)


def describe_fields(model: type[BaseModel] = Scenario, prefix: str = "") -> list[dict]:
    """One entry per field (nested models flattened to dotted paths)."""
    rows = []
    for name, info in model.model_fields.items():
        path = prefix + name
        members = _members(info.annotation)
        if name == "options" and model is DriverSpec:
            rows.append(_row(path, info))
            for driver, cls in REGISTRY.items():
                for option, option_info in cls.Options.model_fields.items():
                    rows.append(_row(f"{path}.{option}  (driver {driver})", option_info))
        elif members and typing.get_origin(info.annotation) is not list:
            if len(members) > 1:
                rows.append(_row(path, info))
            for member in members:
                kind = member.model_fields.get("kind")
                sub = f"{path}[kind={kind.default}]." if len(members) > 1 else f"{path}."
                rows += describe_fields(member, sub)
        elif members:  # a list of models (of one of several kinds)
            rows.append(_row(path, info))
            for member in members:
                kind = member.model_fields.get("kind")
                rows += describe_fields(member, f"{path}[][kind={kind.default}]." if len(members) > 1 else f"{path}[].")
        else:
            rows.append(_row(path, info))
    return rows


def _row(path: str, info) -> dict:
    default = info.get_default(call_default_factory=True) if not info.is_required() else "(required)"
    if isinstance(default, BaseModel):
        default = ""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    unit = extra.get("unit", "-")
    unit = unit if unit != "-" else ""
    description = info.description or ""
    if unit in HUMAN_UNITS:
        description += f" ({HUMAN_UNITS[unit]})"
    return {"field": path, "type": _type_name(info.annotation), "unit": unit, "bounds": _bounds(info),
            "default": default, "description": description}


def schema_text() -> str:
    """The documented schema, for ``cowsim schema``."""
    rows = describe_fields()
    lines = ["Scenario file fields (YAML). Sizes in bytes and times in seconds, or in human units.",
             "A field in [kind=...] applies when its mapping has that kind.", ""]
    for row in rows:
        default = "" if row["default"] in ("", {}, []) else f" = {row['default']}"
        unit = f" [{row['unit']}]" if row["unit"] else ""
        bounds = f" ({row['bounds']})" if row["bounds"] else ""
        lines.append(f"{row['field']}: {row['type']}{default}{unit}{bounds}")
        lines.append(f"    {row['description']}")
    lines += ["", "sweep:  {FIELD: [values...], zip: [{FIELD: [...], FIELD: [...]}]}",
              "    Points are the cartesian product of the axes in the order written (the last varies",
              "    fastest); a zip group is one axis whose fields move together (lists of equal length).",
              "    Every point runs `replicates` times. Random streams are seeded from (seed, replicate,",
              "    component) and not from the point, so every point of a sweep sees the same image and",
              "    workload draws (common random numbers): differences between points are the parameters'."]
    return "\n".join(lines)


def _mappings(node: Any) -> Iterator[dict]:
    """Every mapping of a JSON tree, each before what it holds (which the caller may rewrite as
    it gets it: its values are read after)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _mappings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _mappings(value)


def json_schema() -> dict:
    """JSON Schema of a scenario file, for editors; human-unit fields also accept strings."""
    schema = Scenario.model_json_schema()

    for node in _mappings(schema):
        if node.get("unit") in HUMAN_UNITS and "type" in node:
            number = {k: node.pop(k) for k in list(node)
                      if k in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")}
            node["anyOf"] = [number, {"type": "string", "description": HUMAN_UNITS[node["unit"]]}]
        elif node.get("unit") in HUMAN_UNITS and "anyOf" in node:
            node["anyOf"].append({"type": "string", "description": HUMAN_UNITS[node["unit"]]})
    _loader_leniencies(schema)
    return schema


def _loader_leniencies(schema: dict) -> None:
    """What the loader accepts beyond pydantic's schema: a mapping of a union may leave ``kind``
    out (its default kind applies), so the kinds are alternatives (``anyOf``) rather than exactly
    one (``oneOf``: ``{layers: 2}`` fits a synthetic and a probe image alike); and a field with
    alias choices (a file image's ``from:``) may be written by any of its names."""
    for node in _mappings(schema):
        if "discriminator" in node and "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
            del node["discriminator"]
    for model in (FileImage, NamedFile):
        definition = schema.get("$defs", {}).get(model.__name__)
        if definition is None:
            continue
        for name, info in model.model_fields.items():
            choices = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else []
            others = [str(choice) for choice in choices if choice != name]
            for other in others:
                definition["properties"][other] = definition["properties"][name]
            if others and name in definition.get("required", []):
                definition["required"] = [r for r in definition["required"] if r != name]
                definition["anyOf"] = [{"required": [choice]} for choice in [name, *others]]
