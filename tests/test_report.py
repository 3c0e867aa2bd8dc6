"""Reports: the figures a run's sweep calls for, what each figure claims (axes, units, one line per
driver), the ranking table, the files written, and the HTML rendered by a real headless browser."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import pytest
from click.testing import CliRunner

import sim
from sim import report
from sim.cli import main
from sim.plots import DRIVER_STYLE, driver_style

from .waits import HANG_SECONDS

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAIN_DRIVERS = ["overlay2", "overlay", "aufs", "fuse-overlayfs", "btrfs", "zfs", "devicemapper", "vfs"]


def mix_scenario(**overrides) -> dict:
    data = {"name": "mix_small", "seed": 5, "replicates": 2,
            "image": {"kind": "synthetic", "layers": 3, "files_per_layer": 60, "file_size": "16KiB", "dir_depth": 2},
            "workload": {"kind": "mix", "operations": 300, "workers": 2},
            "sweep": {"driver.name": ["overlay2", "btrfs", "vfs"], "containers.count": [1, 3]}}
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The README's main job, run as a user runs it: the CLI writes the run and its report."""
    out = tmp_path_factory.mktemp("main") / "run"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/copyup_file_size.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report' / 'report.html'}" in result.output
    return out


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory):
    return sim.run_scenario(mix_scenario(), tmp_path_factory.mktemp("mix") / "run")


def by_name(figures) -> dict:
    return {f.name: f.figure for f in figures}


def tick_texts(axis) -> list[str]:
    axis.get_figure(root=True).draw_without_rendering()  # tick labels exist once laid out
    return [label.get_text() for label in axis.get_ticklabels()]


def test_main_job_ends_with_a_report_of_valid_pngs(main_job):
    folder = main_job / "report"
    expected = {"copyup_vs_file_size.png", "disk_usage_vs_file_size.png"}
    assert expected <= {p.name for p in folder.glob("*.png")}
    for name in expected:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        pixels = matplotlib.image.imread(folder / name)
        assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600
        assert pixels.std() > 0.05  # not a blank canvas
    markdown = (folder / "report.md").read_text()
    assert "![copyup_vs_file_size](copyup_vs_file_size.png)" in markdown
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list(folder.glob("*.png")))
    assert "src='http" not in html and 'src="http' not in html  # nothing fetched from elsewhere


def test_copyup_figure_is_log_log_with_one_line_per_driver(main_job):
    figure = by_name(report.figures(main_job))["copyup_vs_file_size"]
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "size" in ax.get_xlabel() and "first write" in ax.get_ylabel()
    assert len(ax.get_lines()) == len(MAIN_DRIVERS)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == MAIN_DRIVERS
    for line, driver in zip(ax.get_lines(), MAIN_DRIVERS):
        assert line.get_color() == DRIVER_STYLE[driver]["color"]
        assert len(line.get_xdata()) == 7  # every file size of the sweep
    # Units on the ticks: sizes on x, durations on y.
    assert {"4 KiB", "1 MiB", "1 GiB"} <= set(tick_texts(ax.xaxis))
    assert any(text.endswith(" ms") for text in tick_texts(ax.yaxis))
    title = figure.get_suptitle()
    assert "held fixed" in title and "1 layer" in title and "cold cache" in title and "file size" not in title


def test_copyup_figure_shows_union_drivers_copying_the_whole_file(main_job):
    """The figure is the data: union drivers' first write grows with the file, btrfs' does not."""
    ax = by_name(report.figures(main_job))["copyup_vs_file_size"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    overlay2, btrfs = lines["overlay2"].get_ydata(), lines["btrfs"].get_ydata()
    assert overlay2[-1] / overlay2[0] > 100
    assert btrfs[-1] / btrfs[0] < 2


def test_disk_usage_figure_reads_space_with_three_panels(main_job):
    figure = by_name(report.figures(main_job))["disk_usage_vs_file_size"]
    labels = [ax.get_ylabel() for ax in figure.axes]
    assert labels[0].startswith("SIZE") and labels[1].startswith("virtual size") and "real bytes" in labels[2]
    for ax in figure.axes:
        assert len(ax.get_lines()) == len(MAIN_DRIVERS)
    run = sim.load_run(main_job)
    total = run.space[(run.space["kind"] == "total") & (run.space["driver"] == "vfs")]
    vfs_real = dict(zip(figure.axes[2].get_lines()[-1].get_xdata(), figure.axes[2].get_lines()[-1].get_ydata()))
    assert sorted(vfs_real.values()) == sorted(total["real_bytes"].astype(float))


def test_ranking_orders_drivers_by_first_write(main_job):
    rank = report.ranking(main_job)
    table = rank.table
    assert list(table["rank"]) == list(range(1, len(MAIN_DRIVERS) + 1))
    assert table["first_write_s"].is_monotonic_increasing
    assert table["vs_best"].iloc[0] == 1.0 and (table["vs_best"] >= 1).all()
    assert rank.points == 7 and "lower is better" in rank.criterion
    # copy-up of whole files makes every union driver slower than every snapshot driver
    order = list(table["driver"])
    assert max(order.index(d) for d in ("btrfs", "zfs", "devicemapper")) < \
        min(order.index(d) for d in ("overlay2", "overlay", "aufs", "fuse-overlayfs"))


def test_mix_run_gets_throughput_cdf_disk_and_cache_figures(mix_run):
    figures = by_name(report.figures(mix_run))
    assert {"throughput_vs_count", "disk_usage_vs_count", "cache_vs_count",
            "latency_cdf_count-1", "latency_cdf_count-3"} <= set(figures)
    drivers = ["overlay2", "btrfs", "vfs"]
    throughput = figures["throughput_vs_count"]
    assert [ax.get_ylabel() for ax in throughput.axes] == ["throughput", "operation latency, p99"]
    assert throughput.axes[0].get_xlabel() == "containers started from the image [count]"
    assert [t.get_text() for t in throughput.axes[0].get_legend().get_texts()][0] == "overlay2"
    # two replicates: a min-max band per driver besides its line
    assert len(throughput.axes[0].get_lines()) == 3 and len(throughput.axes[0].collections) == 3
    cdf = figures["latency_cdf_count-3"]
    kinds = {ax.get_title().split(" (")[0] for ax in cdf.axes}
    assert "read" in kinds and "write" in kinds
    for ax in cdf.axes:
        low, high = ax.get_xlim()
        assert (ax.get_xscale() == "log") == (high > 10 * low) and ax.get_xlabel() == "latency"
        assert [line.get_label() for line in ax.get_lines()] == drivers
        assert all(line.get_ydata()[-1] == 1.0 for line in ax.get_lines())
    assert "containers started from the image = 3" in cdf.get_suptitle()


def test_mix_ranking_is_by_throughput(mix_run):
    rank = report.ranking(mix_run)
    assert rank.metric == "throughput_ops_s" and rank.table["throughput_ops_s"].is_monotonic_decreasing
    assert rank.points == 2


def test_a_run_without_sweep_gets_bar_charts(tmp_path):
    run = sim.run_scenario(mix_scenario(sweep={}, replicates=1), tmp_path / "run")
    figures = by_name(report.figures(run))
    assert {"headline", "disk_usage"} <= set(figures)
    bars = figures["headline"].axes[0].patches
    assert len(bars) == 1 and bars[0].get_facecolor()[:3] == pytest.approx(
        matplotlib.colors.to_rgb(driver_style("overlay2")["color"]))


def test_swept_sizes_are_parsed_from_human_units(main_job):
    v = report.view(main_job)
    assert sorted(v.summary["image.file_size"].unique())[:2] == [4096, 65536]
    assert v.keys[0].unit == "bytes"


def test_cli_report_errors_are_one_line(tmp_path, main_job):
    runner = CliRunner()
    missing = runner.invoke(main, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "not a cowsim run folder" in missing.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = runner.invoke(main, ["report", str(main_job), "-o", str(tmp_path / "mine")])
    assert refused.exit_code == 2 and "not a cowsim report" in refused.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_cli_report_rewrites_an_earlier_report_elsewhere(tmp_path, main_job):
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["report", str(main_job), "-o", str(tmp_path / "rep")])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.html").exists()
    assert not list(tmp_path.glob(".rep.partial-*"))


def test_no_report_flag(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: tiny\nimage: {kind: probe, file_size: 4KiB}\nworkload: {kind: copyup_probe}\n")
    result = CliRunner().invoke(main, ["run", str(scenario), "-o", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "report:" not in result.output and not (tmp_path / "run" / "report").exists()


# -- the HTML in a real browser -------------------------------------------------------------------
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
# Sets a marker on <body> once the page has loaded: how many images decoded with a real width.
CHECK = ("<script>window.addEventListener('load', function () {"
         " var imgs = Array.from(document.images);"
         " var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;"
         " document.body.setAttribute('data-images', ok + '/' + imgs.length); });</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_html_report_renders_every_image_in_headless_chromium(main_job, tmp_path):
    page = tmp_path / "page.html"
    page.write_text((main_job / "report" / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
               page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr[-2000:]
    marker = re.search(r'data-images="(\d+)/(\d+)"', done.stdout)
    assert marker, "the page never fired load: " + done.stdout[:500]
    loaded, total = map(int, marker.groups())
    assert total == len(list((main_job / "report").glob("*.png"))) and total >= 2
    assert loaded == total
    assert "Drivers ranked for this workload" in done.stdout


def test_a_sweep_over_names_puts_them_in_sweep_order_and_out_of_the_title(tmp_path):
    run = sim.run_scenario({"name": "names", "image": {"kind": "probe", "file_size": "1MiB", "layers": 4},
                            "workload": {"kind": "copyup_probe"},
                            "sweep": {"driver.name": ["overlay2", "btrfs"], "cache": ["warm", "cold"]}},
                           tmp_path / "run")
    figure = by_name(report.figures(run))["copyup_vs_cache"]
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["warm", "cold"] and ax.get_xlabel() == "cache at start"
    assert "cache" not in figure.get_suptitle().split("held fixed:")[1]
    overlay2 = ax.get_lines()[0].get_ydata()
    assert overlay2[0] < overlay2[1]  # a warm cache makes the first write cheaper


def test_reports_render_with_agg_and_never_import_pyplot(main_job, tmp_path):
    """No window can open and no interactive backend is needed, whatever MPLBACKEND says."""
    code = ("import sys; from sim import report; report.write_report(sys.argv[1], sys.argv[2]); "
            "assert 'matplotlib.pyplot' not in sys.modules; assert 'matplotlib.backends.backend_agg' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code, str(main_job), str(tmp_path / "rep")], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "TkAgg"})
    assert done.returncode == 0, done.stderr[-1000:]


# -- figures that read at a glance ----------------------------------------------------------------
def test_the_overlap_check_catches_a_deliberately_broken_figure():
    """The check the figure tests rely on can fail: labels written on top of each other are found,
    and fit_tick_labels makes them readable."""
    from matplotlib.figure import Figure

    from sim.plots import fit_tick_labels, overlapping_tick_labels
    figure = Figure(figsize=(4, 3))
    ax = figure.subplots()
    ax.set_xticks([1, 1.05, 1.1, 2, 3], ["16 MiB", "64 MiB", "256 MiB", "1 GiB", "4 GiB"])
    assert ("", "16 MiB", "64 MiB") in overlapping_tick_labels(figure)
    fit_tick_labels(figure)
    assert overlapping_tick_labels(figure) == []
    assert {label.get_text() for label in ax.get_xticklabels()} >= {"16 MiB", "1 GiB"}


def test_no_figure_has_overlapping_tick_labels(main_job, tmp_path):
    from sim.plots import overlapping_tick_labels
    run = sim.run_scenario(ROOT / "scenarios/debian_trace.yaml", tmp_path / "trace")
    for fig in [*report.figures(main_job), *report.figures(run)]:
        assert overlapping_tick_labels(fig.figure) == [], fig.name


def test_axes_carry_human_labels_never_field_names(tmp_path):
    run = sim.run_scenario(mix_scenario(sweep={"driver.name": ["overlay2", "btrfs"],
                                               "workload.volume_fraction": [0.0, 0.5]},
                                        containers={"count": 1, "volumes": [{"name": "v", "mount": "/data"}]}),
                           tmp_path / "run")
    for fig in report.figures(run):
        for ax in fig.figure.axes:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert "." not in label and "_" not in label, (fig.name, label)
    ax = by_name(report.figures(run))["throughput_vs_volume_fraction"].axes[0]
    assert ax.get_xlabel() == "share of operations on files in the volumes"
    assert {"0%", "50%"} <= set(tick_texts(ax.xaxis))


def test_programs_are_categories_drawn_as_points_with_short_names(tmp_path):
    """Two traced programs are not a scale: no line joins them, and the ticks name the files."""
    run = sim.run_scenario(ROOT / "scenarios/debian_trace.yaml", tmp_path / "trace",
                           overrides=["sweep.driver.name=[overlay2, btrfs]"])
    ax = by_name(report.figures(run))["throughput_vs_path"].axes[0]
    assert ax.get_xlabel() == "traced program"
    assert all(line.get_linestyle() == "None" for line in ax.get_lines())
    ticks = [t.replace("\n", "") for t in tick_texts(ax.xaxis)]
    assert ticks == ["python3-startup.strace.gz", "dpkg-install-hello.strace.gz"]


def test_bunched_snapshot_drivers_get_a_close_up_and_the_caption_names_coinciding_lines(main_job):
    figs = {f.name: f for f in report.figures(main_job)}
    copyup = figs["copyup_vs_file_size"]
    assert len(copyup.figure.axes) == 2
    close_up = copyup.figure.axes[1]
    assert close_up.get_title().startswith("close-up:") and close_up.get_yscale() == "linear"
    shown = {line.get_label() for line in close_up.get_lines()}
    assert {"btrfs", "zfs", "devicemapper"} <= shown and not shown & {"overlay2", "fuse-overlayfs"}
    low, high = close_up.get_ylim()
    assert high / low < 2  # the close-up spans a narrow band, where they differ
    # the union drivers that copy up alike are named together (overlay2 and overlay at least)
    assert re.search(r"overlay2(, [a-z-]+)* and [a-z-]+ give the same values, drawn as one line", copyup.caption)
    assert "SIZE (writable layers): all 8 drivers give the same values" in figs["disk_usage_vs_file_size"].caption


# -- tables ---------------------------------------------------------------------------------------
def test_two_programs_are_ranked_apart_and_their_failures_explained(tmp_path):
    run = sim.run_scenario(ROOT / "scenarios/debian_trace.yaml", tmp_path / "trace",
                           overrides=["sweep.driver.name=[overlay2, aufs, btrfs]"])
    ranks = report.rankings(run)
    assert [rank.held for rank in ranks] == ["traced program = python3-startup.strace.gz",
                                             "traced program = dpkg-install-hello.strace.gz"]
    assert all(rank.points == 1 and len(rank.table) == 3 for rank in ranks)
    failed = report.failed_operations(report.view(run))
    aufs_exdev = failed[(failed["error"] == "EXDEV") & (failed["op"] == "rename")]
    assert len(aufs_exdev) == 1 and aufs_exdev["aufs"].iloc[0] > 0 and aufs_exdev["overlay2"].iloc[0] == 0
    assert "redirect_dir" in aufs_exdev["why"].iloc[0] and aufs_exdev["for example"].iloc[0].startswith("/")
    markdown = Path(report.write_report(run)).with_name("report.md").read_text()
    assert markdown.count("## Drivers ranked for this workload: traced program = ") == 2
    assert "## Failed operations" in markdown and "when recorded" in markdown


def test_a_long_run_prints_a_pivot_and_where_the_full_table_is(tmp_path):
    sizes = "[4KiB, 8KiB, 16KiB, 32KiB, 64KiB, 128KiB, 256KiB, 512KiB, 1MiB]"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/copyup_file_size.yaml"), "-o",
                                       str(tmp_path / "run"), "--no-report", "--set", f"sweep.image.file_size={sizes}"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"1st write per driver, 72 runs in all; the full table: {tmp_path / 'run' / 'summary.csv'}"
    assert lines[1].split() == ["image.file_size", *MAIN_DRIVERS] and len(lines) == 2 + 9 + 1
    assert lines[-1].startswith("72 runs (72 points), 0 failed")


def test_one_run_is_said_in_the_singular(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: tiny\nimage: {kind: probe, file_size: 4KiB}\nworkload: {kind: copyup_probe}\n")
    assert CliRunner().invoke(main, ["validate", str(scenario)]).output.endswith("valid: 1 point, 1 run\n")
    result = CliRunner().invoke(main, ["run", str(scenario), "-o", str(tmp_path / "run"), "--no-report"])
    assert "\n1 run (1 point), 0 failed" in result.output
