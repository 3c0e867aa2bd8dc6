"""A hard link's data is held once: in a layer's size, and in the merged view `image inspect` shows."""
from pathlib import Path

from sim.image import Image, Layer
from sim.imagefile import inspect_image, load_image

ROOT = Path(__file__).resolve().parents[1]


def test_a_hard_link_is_counted_once_in_the_merged_view():
    layer = Layer("l0", files={"usr/bin/perl": 1000, "usr/bin/perl5.36": 1000, "etc/x": 10},
                  hardlinks={"usr/bin/perl5.36": "usr/bin/perl"})
    image = Image("i", [layer])
    assert layer.size == 1010 and image.merged_size == 1010 == image.virtual_size


def test_a_link_whose_target_was_replaced_above_keeps_its_data():
    bottom = Layer("l0", files={"a": 100, "b": 100}, hardlinks={"b": "a"})
    top = Layer("l1", files={"a": 5})
    assert Image("i", [bottom, top]).merged_size == 105


def test_the_debian_image_merged_view_is_not_larger_than_its_layers():
    report = inspect_image(load_image(ROOT / "scenarios/data/debian-bookworm.csv.gz"))
    assert report["merged_size"] <= report["virtual_size"]
