"""The command line: a thin layer over :mod:`sim.api`. User errors print one line, exit 2."""
from __future__ import annotations

import json
import os
import signal
import sys
from functools import wraps
from pathlib import Path

import click

from . import api
from .errors import CowsimError
from .image import PROBE_DIR_ENTRIES
from .metrics import METRICS
from .scenario import swept_fields
from .units import format_duration, format_size

# The metrics `cowsim run` prints, with their short headers; values are written in their unit
# (sim.metrics), like everywhere else.
SUMMARY_COLUMNS = {
    "ops": "ops", "copy_ups": "copy-ups", "copy_up_bytes": "copy-up bytes", "first_write_s": "1st write",
    "second_write_s": "2nd write", "latency_p50_s": "p50", "latency_p99_s": "p99",
    "throughput_ops_s": "throughput", "containers_size_bytes": "SIZE", "real_bytes": "on disk",
}


def user_errors(function):
    """Turn the errors a user can cause into one line on stderr and exit code 2: bad input, a
    file or folder that cannot be written (OSError), and Ctrl-C or SIGTERM (exit 130), which a
    sweep answers by keeping its finished runs."""
    @wraps(function)
    def wrapper(*args, **kwargs):
        previous = _terminate_as_interrupt()
        try:
            return function(*args, **kwargs)
        except CowsimError as error:
            click.echo(f"cowsim: error: {error}", err=True)
            sys.exit(error.exit_code)
        except BrokenPipeError:
            # The reader stopped reading (`cowsim image inspect X | head`): nothing to say. Stdout
            # goes to /dev/null so that Python's flush at exit does not complain again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"cowsim: error: {where}{error.strerror or error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("cowsim: interrupted", err=True)
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper


def counted(number: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{number} {noun}{'s' * (number != 1)}"


def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does; returns the handler it replaces."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        return None


def format_table(frame, keys: list[str]) -> str:
    import math
    shown = [c for c in keys if c in frame.columns] + [c for c in SUMMARY_COLUMNS if c in frame.columns]
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            empty = value is None or (isinstance(value, float) and math.isnan(value))
            cells.append("-" if empty else METRICS[column].format(value) if column in METRICS else str(value))
        rows.append(cells)
    header = [SUMMARY_COLUMNS.get(c, c) for c in shown]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cowsim")
def main() -> None:
    """cowsim: what copy-on-write costs under each container storage driver."""


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False), required=False)
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="run folder (default results/<scenario>/<UTC time>/); never overwritten")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a field (value read as YAML), e.g. --set image.layers=8 or "
                   "--set 'sweep.driver.name=[overlay2,btrfs]'")
@click.option("--resume", "resume", type=click.Path(file_okay=False, exists=True),
              help="finish an interrupted run folder: run only the runs it lacks")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="worker processes (default: all cores)")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local processes, or dask.distributed")
@click.option("--scheduler", metavar="ADDRESS",
              help="dask scheduler, e.g. tcp://host:8786 (default: a local cluster of --jobs workers)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar (there is none when stderr is not a terminal)")
@click.option("--report/--no-report", default=True, show_default=True,
              help="write the HTML/Markdown report into <run folder>/report/")
@user_errors
def run(scenario, out, overrides, resume, jobs, executor, scheduler, quiet, report) -> None:
    """Run a scenario file (every point x replicate of its sweep) and write its results folder.

    Each run is written as soon as it finishes; an interrupted sweep keeps them and
    `cowsim run --resume DIR` finishes it. Exit code 1 when some runs failed."""
    from .sweep import default_jobs
    if (scenario is None) == (resume is None):
        raise CowsimError("give a SCENARIO file, or --resume DIR (not both)")
    if resume and (out or overrides):
        raise CowsimError("--resume takes the scenario from the run folder: no -o or --set with it")
    execution = {"executor": executor, "jobs": jobs or default_jobs(), "scheduler": scheduler, "progress": not quiet}
    if resume:
        result = api.resume_run(resume, **execution)
    else:
        result = api.run_scenario(scenario, out, save=True, overrides=overrides, **execution)
    summary = result.summary
    swept = [key for key in swept_fields(result.resolved.get("sweep")) if key != "driver.name"]
    click.echo(summary_text(summary, swept, result.path))
    points = result.manifest.get("points", summary["point"].nunique() if "point" in summary else 0)
    click.echo(f"{counted(len(summary), 'run')} ({counted(points, 'point')}), {result.failed} failed, "
               f"{result.manifest.get('wall_time_s', 0.0):.1f} s; results: {result.path}")
    if result.failed:
        click.echo(f"cowsim: error: {result.failed} of {len(summary)} runs failed: see the status and failure "
                   f"columns of {result.path}/summary.csv", err=True)
        sys.exit(1)
    if report:
        from . import report as reports
        click.echo(f"report: {reports.write_report(result)}")


MAX_TABLE_ROWS = 60
FIRST_ROWS = 20


def summary_text(summary, swept: list[str], path: Path | None) -> str:
    """The run's table when it is short; else its headline metric per driver (rows: the swept
    values, replicates averaged) when that fits, or else its first rows; and where the rest is."""
    keys = list(dict.fromkeys(["point", "replicate", "driver", *swept]))
    if len(summary) <= MAX_TABLE_ROWS:
        return format_table(summary, keys)
    where = f"; the full table: {path / 'summary.csv'}" if path else ""
    metric = next((m for m in ("first_write_s", "throughput_ops_s") if m in summary and summary[m].notna().any()), None)
    if metric and swept and "driver" in summary:
        pivot = summary.pivot_table(index=swept, columns="driver", values=metric, aggfunc="mean", sort=False)
        if len(pivot) <= MAX_TABLE_ROWS and len(pivot.columns) <= 10:
            pivot = pivot.reset_index()
            shown = pivot.astype(object)
            for driver in pivot.columns[len(swept):]:
                shown[driver] = [METRICS[metric].format(v) if v == v else "-" for v in pivot[driver]]
            mean = " (mean of replicates)" if summary.duplicated(["point"]).any() else ""
            title = f"{SUMMARY_COLUMNS[metric]} per driver{mean}, {counted(len(summary), 'run')} in all"
            return f"{title}{where}\n" + format_table(shown, list(shown.columns))
    return (format_table(summary.head(FIRST_ROWS), keys)
            + f"\n... the first {FIRST_ROWS} of {counted(len(summary), 'run')}{where}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a field, as for `cowsim run`")
@user_errors
def validate(scenario, overrides) -> None:
    """Check a scenario file without running it; print the points and runs it expands to."""
    points, runs = api.count_runs(scenario, overrides)
    click.echo(f"{scenario}: valid: {counted(points, 'point')}, {counted(runs, 'run')}")


@main.command()
@click.option("--json-schema", "as_json", is_flag=True, help="emit JSON Schema (for editors)")
def schema(as_json: bool) -> None:
    """The scenario file's fields: type, default, unit, bounds and meaning."""
    from .scenario import json_schema, schema_text
    click.echo(json.dumps(json_schema(), indent=2) if as_json else schema_text())


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), help="report folder (default RUN_DIR/report/)")
@user_errors
def report_command(run_dir: str, out: str | None) -> None:
    """Write a run's report: report.html (self-contained), report.md and PNG figures."""
    from . import report as reports
    click.echo(f"report: {reports.write_report(run_dir, out)}")


PROBE_COLUMNS = {"driver": "driver", "create_container_s": "create container", "first_write_s": "1st write",
                 "create_and_first_s": "create + 1st write", "second_write_s": "2nd write",
                 "copy_up_bytes": "copied up", "lookup_s": "lookup", "copy_up_s": "copy-up"}


@main.command()
@click.option("--driver", "driver_names", required=True, multiple=True,
              help="storage driver, several (overlay2,btrfs or repeated), or all (see `cowsim drivers`)")
@click.option("--file-size", default="1MiB", show_default=True, help="size of the file written, e.g. 64MiB")
@click.option("--layers", default=1, show_default=True, type=int, help="image layers; the file is in the bottom one")
@click.option("--dir-depth", default=1, show_default=True, type=int, help="directories between / and the file")
@click.option("--dir-entries", default=PROBE_DIR_ENTRIES, show_default=True, type=int,
              help="files each layer holds in the file's directory")
@click.option("--cache", type=click.Choice(["cold", "warm"]), default="cold", show_default=True)
@click.option("--profile", default=None, help="host profile name or YAML path (default ssd)")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="driver option, e.g. metacopy=true; with several drivers, given to those that have it")
@click.option("--json", "as_json", is_flag=True, help="print JSON (a list with several drivers)")
@user_errors
def probe(driver_names, file_size, layers, dir_depth, dir_entries, cache, profile, options, as_json) -> None:
    """The cost of one file's first write (with its copy-up) and of its second write, and what
    creating the container cost before them; one row per driver."""
    from .drivers import REGISTRY
    drivers = list(dict.fromkeys(name.strip() for value in driver_names for name in value.split(",") if name.strip()))
    if "all" in drivers:
        drivers = list(REGISTRY)
    parsed = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise CowsimError(f"--option {item!r}: use KEY=VALUE")
        parsed[key] = {"true": True, "false": False}.get(value.lower(), value)
    if len(drivers) > 1:
        for key in parsed:
            if not any(key in REGISTRY[d].Options.model_fields for d in drivers if d in REGISTRY):
                raise CowsimError(f"--option {key}: none of {', '.join(drivers)} has it (see `cowsim drivers`)")
    results = []
    for driver in drivers:
        own = parsed if len(drivers) == 1 else \
            {k: v for k, v in parsed.items() if driver in REGISTRY and k in REGISTRY[driver].Options.model_fields}
        results.append(api.probe(driver, file_size, layers, dir_depth, cache, profile, dir_entries, **own))
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return
    import pandas as pd
    first = results[0]
    click.echo(f"{format_size(first['file_size'])} file, {counted(first['layers'], 'layer')}, dir depth "
               f"{first['dir_depth']}, {first['cache']} cache, {profile or 'ssd'} profile")
    table = pd.DataFrame([{**r, "create_and_first_s": r["create_container_s"] + r["first_write_s"]} for r in results])
    shown = pd.DataFrame({label: [format_duration(v) if key.endswith("_s") else format_size(v)
                                  if key.endswith("bytes") else v for v in table[key]]
                          for key, label in PROBE_COLUMNS.items()})
    click.echo(format_table(shown, list(shown.columns)))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def drivers(as_json: bool) -> None:
    """List the storage drivers, their layer limits and options."""
    from .drivers import REGISTRY
    described = [cls.describe() for cls in REGISTRY.values()]
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    for entry in described:
        sharing = "shared" if entry["shares_page_cache"] else "private"
        click.echo(f"{entry['name']}: {entry['summary']}")
        click.echo(f"    max image layers: {entry['max_layers']}; page cache between containers: {sharing}")
        for name, option in entry["options"].items():
            click.echo(f"    --option {name}={option['default']}: {option['description']}")


@main.command()
@click.argument("run_dir")
@click.argument("baseline")
@click.option("--rtol", default=0.05, show_default=True, type=click.FloatRange(min=0),
              help="relative change that counts (0.05 = 5%)")
@click.option("--metric", "metrics", multiple=True, metavar="NAME", help="compare only these metrics (repeatable)")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="where comparison .md and .json go (default RUN_DIR/comparisons/)")
@click.option("-v", "--verbose", is_flag=True, help="list every unchanged metric, not a count per point")
@click.option("--anyway", is_flag=True, help="compare runs whose scenarios differ besides the swept fields (noted)")
@user_errors
def compare(run_dir, baseline, rtol, metrics, output_dir, verbose, anyway) -> None:
    """Compare a run with a baseline: a run folder, a baseline folder, or the name of a baseline
    saved under benchmarks/baselines/.

    Exits 0 when nothing regressed, 1 on a regression, 2 when the two cannot be compared.
    """
    from . import baseline as baselines
    from .compare import compare as compare_runs
    run, base = baselines.resolve(run_dir), baselines.resolve(baseline)
    if output_dir is None and run.path is not None and (run.path / baselines.SUMMARY).exists():
        raise CowsimError(f"{run_dir} is a baseline: give --output-dir for the comparison files")
    comparison = compare_runs(run, base, rtol=rtol, metrics=list(metrics) or None, anyway=anyway)
    click.echo(comparison.markdown(unchanged=verbose))
    directory = Path(output_dir) if output_dir or run.path is None else run.path / "comparisons"
    markdown, as_json = comparison.write(directory, f"vs-{Path(str(base.path or base.name)).name}")
    click.echo(f"written: {markdown} {as_json}")
    sys.exit(comparison.exit_code)


@main.group()
def baseline() -> None:
    """Save, refresh and check the baselines under benchmarks/baselines/."""


@baseline.command("save")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("name")
@click.option("--root", default="benchmarks/baselines", show_default=True, help="folder of baselines")
@click.option("--force", is_flag=True, help="replace an existing baseline (say why in the commit message)")
@user_errors
def baseline_save(run_dir, name, root, force) -> None:
    """Store RUN_DIR's summary and manifest as baseline NAME."""
    from . import baseline as baselines
    click.echo(f"saved: {baselines.save(baselines.resolve(run_dir), name, root, force)}")


def standard_scenarios(command):
    """The --scenarios and --root options of the commands that run every regression scenario."""
    command = click.option("--root", default="benchmarks/baselines", show_default=True,
                           help="folder of baselines")(command)
    return click.option("--scenarios", default="benchmarks/scenarios", show_default=True,
                        help="folder of scenario files")(command)


@baseline.command("refresh")
@standard_scenarios
@user_errors
def baseline_refresh(scenarios, root) -> None:
    """Re-run every regression scenario and rewrite the baselines whose numbers changed."""
    from . import baseline as baselines
    for name, status in baselines.refresh(scenarios, root):
        click.echo(f"{status:>9}  {Path(root) / name}")


@baseline.command("check")
@standard_scenarios
@user_errors
def baseline_check(scenarios, root) -> None:
    """Re-run every regression scenario; exit 1 when any number moved from its committed baseline."""
    from . import baseline as baselines
    failed = False
    for comparison in baselines.check(scenarios, root):
        click.echo(comparison.headline())
        if comparison.differences:
            failed = True
            click.echo(comparison.markdown(unchanged=False))
    sys.exit(1 if failed else 0)


@main.group()
def image() -> None:
    """Real images: docker save tars, OCI layouts and cowsim listings."""


def inspect_command(group, inspect, command_name: str = "inspect", display: tuple[str, ...] = (), **options):
    """An ``inspect PATH [--json]`` command of ``group`` (or another ``command_name``):
    ``inspect(path, **options)`` gives the report; the decorated function prints it when --json
    is not given, with the ``display`` options (which only change how it is printed)."""
    def decorate(show):
        @wraps(show)
        @user_errors
        def command(path: str, as_json: bool, **values) -> None:
            shown = {name: values.pop(name) for name in display}
            report = inspect(path, **values)
            if as_json:
                click.echo(json.dumps(report, indent=2))
            else:
                show(report, **shown)
        for name, option in reversed(options.items()):
            command = click.option(f"--{name.replace('_', '-')}", name, **option)(command)
        command = click.option("--json", "as_json", is_flag=True, help="print JSON")(command)
        return group.command(command_name)(click.argument("path", type=click.Path())(command))
    return decorate


@inspect_command(image, api.inspect_image, top={"default": 10, "show_default": True, "type": click.IntRange(1),
                                                 "help": "rows of shadowed and largest files"})
def image_inspect(report: dict) -> None:
    """Layers (like docker history), sizes, and the files most expensive to copy up."""
    import pandas as pd

    def table(rows: list[dict], sizes: tuple[str, ...] = ()) -> str:
        shown = [{k: format_size(v) if k in sizes else str(v) for k, v in row.items()} for row in rows]
        return format_table(pd.DataFrame(shown), list(rows[0])) if rows else "(none)"

    click.echo(f"image {report['name']}: {len(report['layers'])} layers, virtual size "
               f"{format_size(report['virtual_size'])}, merged view {format_size(report['merged_size'])} "
               f"({report['files']} files, {report['symlinks']} symlinks, {report['dirs']} directories)")
    click.echo("\n" + table(report["layers"][::-1], ("bytes",)))
    click.echo("\nfile sizes\n" + table(report["file_sizes"], ("bytes",)))
    click.echo("\ndirectory depth of files\n" + table(report["file_depths"]))
    click.echo(f"\nshadowed by later layers: {report['shadowed_files']} files hiding "
               f"{format_size(report['shadowed_bytes'])}\n" + table(report["shadowed"], ("size", "lower_size")))
    click.echo("\nlargest files (most expensive to copy up)\n" + table(report["largest"], ("size",)))


@inspect_command(image, api.image_history, "history", ("no_trunc",),
                 image={"default": None, "help": "with a scenario file: the image of `images:` to show (default: all)"},
                 no_trunc={"is_flag": True, "default": False, "help": "print whole CREATED BY commands and digests"})
def image_history(report: dict, no_trunc: bool = False) -> None:
    """docker history: the steps that built an image (a docker save tar, an OCI layout, a listing,
    or a scenario file's images), top first; <missing>: an image built elsewhere."""
    import pandas as pd

    def cut(text: str, width: int) -> str:
        text = " ".join(text.split())
        return text if no_trunc or len(text) <= width else text[:width - 3] + "..."

    for shown in report["images"]:
        rows = [{"IMAGE": row["image"], "CREATED": row["created"] or "-", "CREATED BY": cut(row["created_by"], 50),
                 "SIZE": format_size(row["size"]),
                 "LAYER": (row["layer"] if no_trunc else row["layer"].removeprefix("sha256:")[:12]) or "-",
                 "COMMENT": cut(row["comment"], 30)} for row in shown["history"]]
        click.echo(f"image {shown['name']}: {shown['layers']} layers, {format_size(shown['size'])}")
        click.echo(format_table(pd.DataFrame(rows), list(rows[0])) if rows else "(no history)")


@main.group()
def trace() -> None:
    """Traces of real programs (strace -f -tt -T) for the `trace` workload."""


@inspect_command(trace, api.inspect_trace, cwd={"default": "/", "show_default": True,
                                                "help": "working directory the traced program started in"})
def trace_inspect(report: dict) -> None:
    """How each syscall line of a trace is used: replayed, bookkeeping, or unusable (and why)."""
    click.echo(f"{report['path']}: {report['lines']} lines, {report['syscalls']} syscalls "
               f"({report['joined']} joined from unfinished/resumed halves), {report['events']} exit/signal lines, "
               f"{report['unparsed']} unparsed lines; recorded {format_duration(report['recorded_s'])}")
    click.echo(f"replayed {report['replayed']} as {report['ops']} operations "
               f"(read {format_size(report['read_bytes'])}, wrote {format_size(report['write_bytes'])}; "
               f"{report['recorded_failures']} failed when recorded)")
    for title, key in (("operations", "op_labels"), ("replayed", "replayed_by_syscall"),
                       ("bookkeeping", "bookkeeping_by_syscall"), ("unusable", "unusable_by_syscall"),
                       ("unusable because", "unusable_reasons")):
        counts = report[key]
        click.echo(f"  {title} ({sum(counts.values())}): " + ", ".join(f"{name} {n}" for name, n in counts.items()))


@main.command()
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="profile to write (default profiles/calibrated-<UTC time>.yaml); the raw CSV goes next to it")
@click.option("--quick", is_flag=True, help="fewer points and repeats (about half a minute)")
@click.option("--from-csv", "measurements", type=click.Path(dir_okay=False), default=None,
              help="fit measurements taken earlier instead of measuring")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="where the scratch layers and loop images go (default: the system temp dir)")
@click.option("--statistic", type=click.Choice(["p25", "median", "min"]), default="p25", show_default=True,
              help="what stands for a point's repeats (noise on a busy host only adds time)")
@user_errors
def calibrate(out, quick, measurements, workdir, statistic) -> None:
    """Measure overlayfs, fuse-overlayfs, btrfs and full copies on this host (root) and fit a profile."""
    import datetime as dt

    from .calibrate import calibrate as run_calibration
    from .calibrate import format_report, validate_profile
    out = out or f"profiles/calibrated-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.yaml"
    result = run_calibration(out, quick=quick, measurements=measurements, workdir=workdir, statistic=statistic,
                             progress=lambda message: click.echo(message, err=True))
    for reason in result.skipped:
        click.echo(f"skipped: {reason}")
    click.echo(format_report(validate_profile(result.profile_path, result.measurements_path, statistic=statistic)))
    click.echo(f"profile: {result.profile_path}\nmeasurements: {result.measurements_path}")


@main.command("validate-profile")
@click.argument("profile")
@click.argument("measurements", type=click.Path(dir_okay=False))
@click.option("--threshold", default=0.25, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="largest |predicted/measured - 1| accepted per point")
@click.option("--driver", "drivers", multiple=True, help="check and show only these drivers' points")
@click.option("--statistic", type=click.Choice(["p25", "median", "min"]), default="p25", show_default=True,
              help="what stands for a point's repeats (use the one the profile was fitted with)")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="PNG of predicted against measured (default <measurements>.validation.png, never overwritten)")
@click.option("--held-out", is_flag=True,
              help="for each experiment family, fit without it (starting from PROFILE, as calibrate starts from "
                   "ssd) and predict it; exit 1 unless 90%% of those points are within 1.5x and none beyond 2x")
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="--held-out: fits run at once, in processes")
@user_errors
def validate_profile(profile, measurements, threshold, drivers, statistic, figure, held_out, jobs) -> None:
    """Simulate the measured experiments with PROFILE; exit 1 when a point is off by more than the threshold."""
    from pathlib import Path

    if held_out:
        from .calibrate import points, read_measurements
        from .calibrate.heldout import format_held_out
        from .calibrate.heldout import held_out as run_held_out
        table = points(read_measurements(measurements), statistic)
        if drivers:
            table = table[table["driver"].isin(drivers)]
        held = run_held_out(table, profile, statistic, progress=lambda message: click.echo(message, err=True),
                            jobs=jobs)
        click.echo(format_held_out(held))
        if not held.ok:
            click.echo("FAIL: the held-out goal is not met", err=True)
            sys.exit(1)
        return
    from .calibrate import format_report, plot
    from .calibrate import validate_profile as run_validation
    result = run_validation(profile, measurements, threshold, statistic)
    if drivers:
        result.table = result.table[result.table["driver"].isin(drivers)]
        result.slopes = result.slopes[result.slopes["driver"].isin(drivers)]
    click.echo(format_report(result))
    base = Path(figure) if figure else Path(measurements).with_suffix(".validation.png")
    target, index = base, 1
    while target.exists():
        target, index = base.with_name(f"{base.stem}-{index}{base.suffix}"), index + 1
    click.echo(f"figure: {plot(result, target)}")
    if not result.ok:
        click.echo(f"FAIL: {len(result.failed)} point(s) off by more than {threshold:.0%}", err=True)
        sys.exit(1)
