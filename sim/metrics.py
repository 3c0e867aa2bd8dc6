"""The summary metrics, in one place: each one's unit and which way is worse.

Every column :func:`sim.runner.summarize` writes is listed here (a test checks it), so that
``cowsim compare`` knows whether a change is a regression, an improvement or neither.
"""
from __future__ import annotations

from dataclasses import dataclass

from .units import format_duration, format_size

HIGHER_IS_WORSE = "higher"  # latencies, times, bytes, counts of work
LOWER_IS_WORSE = "lower"    # throughput, cache hit ratios
NEITHER = "neither"         # describes the run rather than grading it: a change is only "changed"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # s, bytes, ops/s, count, ratio
    worse: str
    description: str

    def format(self, value: float) -> str:
        if value != value:  # NaN: the metric is undefined for this run (e.g. no copy-ups)
            return "-"
        if self.unit == "s":
            return format_duration(value)
        if self.unit == "bytes":
            return format_size(value)
        if self.unit == "ops/s":
            return f"{value:,.1f} ops/s"
        if self.unit == "ratio":
            return f"{value:.4f}"
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"  # a mean of counts may be fractional


# Summary columns renamed since older run folders and baselines were written; they are read under
# their new names, so that those still compare with new runs.
RENAMED = {"events": "operations_executed"}  # it counted operations the engine executed, never events


def _table(*rows: tuple[str, str, str, str]) -> dict[str, Metric]:
    return {name: Metric(name, unit, worse, description) for name, unit, worse, description in rows}


METRICS: dict[str, Metric] = _table(
    ("ops", "count", NEITHER, "workload operations measured (setup excluded)"),
    ("errors", "count", HIGHER_IS_WORSE, "operations that failed with an errno"),
    ("copy_ups", "count", HIGHER_IS_WORSE, "file copy-ups (or first-write block copies)"),
    ("copy_up_bytes", "bytes", HIGHER_IS_WORSE, "bytes copied up"),
    ("copy_up_p50_s", "s", HIGHER_IS_WORSE, "median time spent in copy-up, over operations that copied"),
    ("copy_up_p99_s", "s", HIGHER_IS_WORSE, "99th percentile of copy-up time"),
    ("latency_mean_s", "s", HIGHER_IS_WORSE, "mean operation latency"),
    ("latency_p50_s", "s", HIGHER_IS_WORSE, "median operation latency"),
    ("latency_p95_s", "s", HIGHER_IS_WORSE, "95th percentile operation latency"),
    ("latency_p99_s", "s", HIGHER_IS_WORSE, "99th percentile operation latency"),
    ("throughput_ops_s", "ops/s", LOWER_IS_WORSE, "operations per simulated second"),
    ("makespan_s", "s", HIGHER_IS_WORSE, "from the workload's start to its last operation's end"),
    ("sim_time_s", "s", HIGHER_IS_WORSE, "simulated time of the whole run, setup included"),
    ("setup_s", "s", HIGHER_IS_WORSE, "time of image preparation and container creation/removal"),
    ("disk_read_bytes", "bytes", HIGHER_IS_WORSE, "bytes read from the disk"),
    ("disk_write_bytes", "bytes", HIGHER_IS_WORSE, "bytes written to the disk"),
    ("disk_requests", "count", HIGHER_IS_WORSE, "disk requests issued"),
    ("fsyncs", "count", HIGHER_IS_WORSE, "cache flushes (fsync) the disk served"),
    ("page_cache_hit_ratio", "ratio", LOWER_IS_WORSE, "share of data bytes served from the page cache"),
    ("dentry_hit_ratio", "ratio", LOWER_IS_WORSE, "share of path lookups served from the dentry cache"),
    ("operations_executed", "count", NEITHER,
     "operations the engine executed: the workload's, image preparation, container creation and removal,"
     " warm-up reads"),
    ("containers_size_bytes", "bytes", HIGHER_IS_WORSE, "docker ps -s SIZE summed over containers"),
    ("docker_total_bytes", "bytes", HIGHER_IS_WORSE, "image plus writable layers as docker reports them"),
    ("real_bytes", "bytes", HIGHER_IS_WORSE, "bytes really allocated on the disk (shared extents once)"),
    ("first_write_s", "s", HIGHER_IS_WORSE, "mean latency of a file's first write (copy-up included)"),
    ("second_write_s", "s", HIGHER_IS_WORSE, "mean latency of a file's second write"),
    ("lookup_s", "s", HIGHER_IS_WORSE, "mean path-lookup time of first writes"),
    # a node's start-up (scenario node block): only in the summaries of runs that have one
    ("all_running_s", "s", HIGHER_IS_WORSE, "from the first container's arrival until every container runs"),
    ("startup_mean_s", "s", HIGHER_IS_WORSE, "mean time from a container's arrival until it runs"),
    ("startup_max_s", "s", HIGHER_IS_WORSE, "longest time from a container's arrival until it runs"),
    ("pulls", "count", NEITHER, "image pulls (docker pull) the containers' start-up made"),
    ("pull_mean_s", "s", HIGHER_IS_WORSE, "mean time of a pull, from its manifest to its top layer registered"),
    ("pull_max_s", "s", HIGHER_IS_WORSE, "longest pull"),
    ("layers_fetched", "count", HIGHER_IS_WORSE, "layers downloaded from the registry"),
    ("layers_existing", "count", NEITHER, "layers a pull found on the node or being pulled already"),
    ("pull_fetched_bytes", "bytes", HIGHER_IS_WORSE, "compressed bytes downloaded from the registry"),
    ("pull_written_bytes", "bytes", HIGHER_IS_WORSE, "bytes the pulls wrote: blobs' temporary files and extraction"),
    ("images_real_bytes", "bytes", HIGHER_IS_WORSE, "bytes the images' layers occupy under the driver"),
    # only when the containers print (containers.logging)
    ("log_lines", "count", NEITHER, "stdout lines the log driver wrote, every container's"),
    ("log_written_bytes", "bytes", HIGHER_IS_WORSE, "bytes of log entries written, rotated away or not"),
    ("log_rotations", "count", NEITHER, "log files rotated (max-size reached)"),
)
