"""The scenario schema, in one place: every field with its unit, bounds and meaning.

A scenario file is YAML; sizes, durations and rates are written in human units (``64MiB``,
``2ms``, ``500MB/s``) and parsed by :mod:`sim.units`. ``sweep:`` maps dotted field paths to lists
whose cartesian product gives the points; each point runs ``replicates`` times.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from .drivers import REGISTRY
from .units import Duration, Rate, Size

OPS_IN_MIX = ("read", "write", "append", "create", "delete", "stat", "rename", "truncate", "chmod")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DriverSpec(Strict):
    name: str = Field("overlay2", description="storage driver: " + ", ".join(REGISTRY))
    options: dict[str, Any] = Field(default_factory=dict, description="driver options (see `cowsim drivers`)")

    @model_validator(mode="after")
    def _known(self) -> DriverSpec:
        if self.name not in REGISTRY:
            raise ValueError(f"unknown driver {self.name!r}: use one of {', '.join(REGISTRY)}")
        REGISTRY[self.name].Options.model_validate(self.options)
        return self


class SyntheticImage(Strict):
    kind: Literal["synthetic"] = "synthetic"
    layers: int = Field(5, ge=1, description="image layers [count]")
    files_per_layer: int = Field(200, ge=0, le=10_000_000, description="files each layer adds [count]")
    size_distribution: Literal["fixed", "lognormal", "empirical"] = Field("lognormal", description="file-size distribution")
    file_size: Size = Field(16384, gt=0, description="fixed size, or median of the lognormal [bytes]")
    sigma: float = Field(1.5, ge=0, le=5, description="shape of the lognormal (sigma of log size) [1]")
    size_table: list[tuple[Size, float]] = Field(default_factory=list, description="empirical rows [size, weight]")
    dir_depth: int = Field(3, ge=0, le=64, description="files lie 1..dir_depth directories below the root [levels]")
    fanout: int = Field(4, ge=1, le=1000, description="subdirectories per directory [count]")
    overwrite_fraction: float = Field(0.05, ge=0, le=1, description="share of lower files each layer rewrites [1]")
    delete_fraction: float = Field(0.01, ge=0, le=1, description="share of lower files each layer deletes (whiteouts) [1]")


class ProbeImage(Strict):
    kind: Literal["probe"] = "probe"
    file_size: Size = Field(2**20, ge=0, description="size of the target file [bytes]")
    layers: int = Field(1, ge=1, description="image layers; the target lies in the bottom one [count]")
    dir_depth: int = Field(1, ge=0, le=256, description="directories between the root and the target [levels]")


class FileImage(Strict):
    kind: Literal["file"] = "file"
    path: str = Field(validation_alias=AliasChoices("path", "from"),
                      description="a `docker save` tar, an OCI layout (directory or tar) or a cowsim listing "
                                  "(.csv/.csv.gz); `from:` is the same field")


ImageSpec = Annotated[Union[SyntheticImage, ProbeImage, FileImage], Field(discriminator="kind")]


class VolumeSpec(Strict):
    name: str = Field(description="volume name; containers naming the same volume share it")
    mount: str = Field(description="mount point inside the container, e.g. /data")
    kind: Literal["named", "bind"] = Field("named", description="named: filled from the image directory on first mount; bind: starts empty")

    @field_validator("mount")
    @classmethod
    def _relative(cls, value: str) -> str:
        value = value.strip("/")
        if not value:
            raise ValueError("a volume cannot be mounted at /")
        return value


class ContainersSpec(Strict):
    count: int = Field(1, ge=1, le=100_000, description="containers started from the image [count]")
    volumes: list[VolumeSpec] = Field(default_factory=list, description="volumes every container mounts")
    remove_at_end: bool = Field(False, description="delete the containers when the workload ends (volumes stay)")


class CopyupProbe(Strict):
    kind: Literal["copyup_probe"] = "copyup_probe"
    files: int = Field(1, ge=1, description="files per container given a first and a second write [count]")
    write_size: Size = Field(1, ge=1, description="bytes each write writes [bytes]")
    fsync: bool = Field(True, description="fsync before close")


class Mix(Strict):
    kind: Literal["mix"] = "mix"
    ops: dict[str, float] = Field(default_factory=lambda: {"read": 0.7, "write": 0.15, "append": 0.05, "stat": 0.05, "create": 0.05},
                                  description="probability of each operation: " + ", ".join(OPS_IN_MIX))
    file_choice: Literal["uniform", "zipf"] = Field("zipf", description="how files are picked")
    zipf_s: float = Field(1.1, gt=0, le=5, description="Zipf exponent [1]")
    request_size: Size = Field(4096, gt=0, description="bytes per read/write/append [bytes]")
    create_size: Size = Field(4096, ge=0, description="bytes written into a new file [bytes]")
    fsync: bool = Field(False, description="writes fsync before close")
    mode: Literal["closed", "open"] = Field("closed", description="closed loop (workers) or open loop (arrivals)")
    workers: int = Field(1, ge=1, le=10_000, description="closed loop: concurrent workers per container [count]")
    think_time: Duration = Field(0.0, ge=0, description="closed loop: pause between a worker's operations [s]")
    arrival_rate: float = Field(100.0, gt=0, description="open loop: operations per second per container [1/s]")
    operations: int | None = Field(1000, ge=1, description="stop after this many operations in all [count]")
    duration: Duration | None = Field(None, gt=0, description="stop after this much simulated time [s]")
    volume_fraction: float = Field(0.0, ge=0, le=1, description="share of operations on files in the volumes [1]")

    @field_validator("ops")
    @classmethod
    def _probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(OPS_IN_MIX)
        if unknown:
            raise ValueError(f"unknown operation {sorted(unknown)[0]!r}: use {', '.join(OPS_IN_MIX)}")
        if any(p < 0 for p in value.values()) or sum(value.values()) <= 0:
            raise ValueError("probabilities must be non-negative and not all zero")
        return value

    @model_validator(mode="after")
    def _stop(self) -> Mix:
        if self.operations is None and self.duration is None:
            raise ValueError("give operations or duration (or both)")
        return self


class Trace(Strict):
    kind: Literal["trace"] = "trace"
    path: str = Field(description="`strace -f -tt -T` output (plain or .gz) of the program whose file I/O each container replays")
    cwd: str = Field("/", description="working directory the traced program started in (for its relative paths)")
    think_scale: float = Field(1.0, ge=0, le=1e6, description="multiplies the recorded time between file operations (0: back to back) [1]")
    start_interval: Duration = Field(0.0, ge=0, description="container i starts its replay i times this later [s]")

    @field_validator("cwd")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"cwd must be an absolute path, got {value!r}")
        return value


WorkloadSpec = Annotated[Union[CopyupProbe, Mix, Trace], Field(discriminator="kind")]


class Scenario(Strict):
    """One experiment: a host, a driver, an image, containers and their workload."""

    name: str = Field("scenario", description="scenario name (results go to results/<name>/)", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = Field("", description="what the scenario asks")
    seed: int = Field(0, ge=0, description="root of every random stream")
    replicates: int = Field(1, ge=1, le=10_000, description="runs per point, each with its own seed [count]")
    profile: str = Field("ssd", description="host profile: nvme, ssd, hdd, or a path to a profile YAML")
    cache: Literal["cold", "warm"] = Field("cold", description="cold: empty caches at start; warm: image files and dentries cached")
    driver: DriverSpec = Field(default_factory=DriverSpec)
    image: ImageSpec = Field(default_factory=SyntheticImage)
    containers: ContainersSpec = Field(default_factory=ContainersSpec)
    workload: WorkloadSpec = Field(default_factory=Mix)
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field -> values; points are their cartesian product")
    keep_ops: bool = Field(True, description="write the per-operation table ops.parquet")

    @model_validator(mode="before")
    @classmethod
    def _default_kinds(cls, data: Any) -> Any:
        # ``kind`` may be left out: a synthetic image (a file image when it says ``from:``) and a
        # mix workload.
        if isinstance(data, dict):
            for key, kind in (("image", "synthetic"), ("workload", "mix")):
                if isinstance(data.get(key), dict) and "kind" not in data[key]:
                    kind = "file" if key == "image" and "from" in data[key] else kind
                    data = {**data, key: {"kind": kind, **data[key]}}
        return data

    @model_validator(mode="after")
    def _layers_fit(self) -> Scenario:
        layers = getattr(self.image, "layers", None)
        if layers is not None:
            REGISTRY[self.driver.name].check_layers(layers)
        return self




def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested mappings, creating the mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def expand_points(data: dict) -> list[tuple[dict, dict]]:
    """(swept values, full scenario mapping without ``sweep``) for each point of the sweep."""
    import copy
    import itertools

    sweep = data.get("sweep") or {}
    base = {k: v for k, v in data.items() if k != "sweep"}
    keys = list(sweep)
    points = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        point = copy.deepcopy(base)
        for key, value in zip(keys, values):
            set_dotted(point, key, value)
        points.append((dict(zip(keys, values)), point))
    return points
