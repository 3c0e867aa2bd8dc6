"""What pulling an image costs (issue 15): extraction through each driver's own path against the
layer count of an image of fixed size, and the pull's time against max_concurrent_downloads
for a near and a far registry.

    python -m benchmarks.pull_extraction             # writes docs/pull-extraction.png
    python -m benchmarks.pull_extraction -o FILE.png

Every point pulls one image on an empty node of its own (``sim.pull.pull_alone``, the ``ssd``
profile, gzip); the image's files are split evenly between its layers.
"""
from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.figure_command import figure_command
from sim.drivers import REGISTRY
from sim.image import Image, Layer
from sim.plots import driver_style
from sim.profile import Profile, load_profile
from sim.pull import pull_alone
from sim.scenario import NodeSpec

MiB = 2**20
LAYERS = (1, 2, 4, 8, 16, 32)
DOWNLOADS = (1, 2, 3, 4, 6, 8, 12)
IMAGE_BYTES = 256 * MiB
FILES = 2048  # in all, split between the layers


def image(layers: int, image_bytes: int = IMAGE_BYTES, files: int = FILES) -> Image:
    """``image_bytes`` in ``files`` equal files, split evenly between ``layers`` layers."""
    per_layer = files // layers
    size = image_bytes // (per_layer * layers)
    return Image(f"img{layers}", [Layer(name=f"l{index}", files={f"l{index}/d{f % 16}/f{f}": size
                                                                for f in range(per_layer)})
                                  for index in range(layers)])


def extraction_s(driver: str, layers: int) -> float:
    """Seconds of registration summed over the layers: each from its parent registered and its
    blob downloaded until it is registered itself (decompression beside the untar)."""
    return sum(record.extract_s for record in pull_alone(driver, [image(layers)]).layers)


def registry(round_trip: float) -> Profile:
    profile = load_profile("ssd")
    return profile.model_copy(update={"registry": profile.registry.model_copy(update={"round_trip": round_trip})})


def pull_s(downloads: int, profile: Profile) -> tuple[float, float]:
    """(the pull's time, when its last download ended) for an image of 8 layers."""
    puller = pull_alone("overlay2", [image(8)], NodeSpec(images_present=False, max_concurrent_downloads=downloads),
                        profile)
    return puller.pull_s[0], max(r.download_start_s + r.download_s for r in puller.layers)


def figure(path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6))
    left, right = fig.subplots(1, 2)
    for driver in REGISTRY:
        style = driver_style(driver)
        left.plot(LAYERS, [extraction_s(driver, n) for n in LAYERS], marker=style["marker"], color=style["color"],
                  linestyle=style["linestyle"], label=driver)
    left.set(xscale="log", yscale="log", xlabel="layers (the same 256 MiB image split between them)",
             ylabel="extraction time, summed over layers [s]",
             title="Extracting a pulled image: vfs copies each parent,\nsnapshot drivers pay a snapshot a layer")
    left.set_xticks(LAYERS, [str(n) for n in LAYERS])
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7, ncol=2)
    for round_trip, colour in ((0.02, "#1f77b4"), (0.15, "#d62728")):
        profile = registry(round_trip)
        rows = [pull_s(n, profile) for n in DOWNLOADS]
        name = f"round trip {round_trip * 1000:.0f} ms"
        right.plot(DOWNLOADS, [total for total, _ in rows], "-o", color=colour, label=f"{name}: pull")
        right.plot(DOWNLOADS, [last for _, last in rows], ":", color=colour, label=f"{name}: last download ends")
        fetched = sum(int(layer.size * NodeSpec().compressed_fraction) for layer in image(8).layers)
        right.axhline(fetched / profile.registry.bandwidth, color="#999", linewidth=0.8)
    right.text(DOWNLOADS[-1], fetched / load_profile("ssd").registry.bandwidth, "bytes / bandwidth", fontsize=7,
               ha="right", va="bottom")
    right.set(xlabel="max_concurrent_downloads", ylabel="seconds",
              title="Pulling 8 layers (256 MiB, gzip, 1 Gbit/s, overlay2)")
    right.set_xticks(DOWNLOADS)
    right.set_ylim(bottom=0)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    return figure_command("pull_extraction", __doc__, "pull-extraction.png", figure, argv)


if __name__ == "__main__":
    sys.exit(main())
