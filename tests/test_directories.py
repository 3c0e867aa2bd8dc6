"""Directory size and metadata layout: what a cold lookup reads follows each driver's mechanism
(issue 13, items 5 and 6; docs/model.md, Drivers)."""
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.drivers import get_driver
from sim.drivers.base import dir_index_keys
from sim.engine import Engine
from sim.image import Image, Layer, probe_image, synthetic_image
from sim.plan import LOOKUP, Plan
from sim.profile import KernelCosts, load_profile

from .recorded import OpResult

ALL = ["overlay2", "overlay", "aufs", "fuse-overlayfs", "btrfs", "zfs", "devicemapper", "vfs"]


def lookup(driver, **image):
    return sim.probe(driver, file_size=4096, **image)["lookup_s"]


def test_btrfs_first_write_is_flat_in_depth_where_ext4_grows():
    """One B-tree: the walk of d1/.../d32 reads the few leaves the chain of small directories
    shares, where ext4 (inside a devicemapper thin device) reads a block and an inode per level."""
    btrfs = [sim.probe("btrfs", file_size=4096, dir_depth=depth)["first_write_s"] for depth in (1, 32)]
    ext4 = [sim.probe("devicemapper", file_size=4096, dir_depth=depth)["first_write_s"] for depth in (1, 32)]
    assert btrfs[1] < 1.5 * btrfs[0]
    assert ext4[1] > 1.5 * ext4[0]


def test_btrfs_leaves_are_shared_by_the_containers_of_an_image():
    """Snapshots share tree blocks: a second container's walk of the same path is served by the
    leaves the first one read."""
    profile = load_profile("ssd")
    driver = get_driver("btrfs")({}, profile)
    image, target = probe_image(file_size=4096, layers=2, dir_depth=4)
    for cid in (0, 1):
        driver.create_container(cid, image)
    engine = Engine(profile)
    first, second = OpResult(), OpResult()
    for cid, result in ((0, first), (1, second)):
        plan = Plan()
        driver.lookup(plan, cid, driver.views[cid], target)
        engine.env.process(engine.execute(plan, result.record))
        engine.env.run()
    assert second.phase_s[LOOKUP] < first.phase_s[LOOKUP] / 2


@pytest.mark.parametrize("entries", [54, 100, 1000])
def test_fuse_cold_lookup_grows_faster_than_layers(entries):
    """load_dir checks each entry met for the first time in every layer below its own: with each
    layer adding names to a populated directory, the work grows with the square of the layers
    (with one entry a layer, reading each layer's copy from disk, linear, still dominates)."""
    lookups = [lookup("fuse-overlayfs", layers=layers, dir_entries=entries) for layers in (8, 16, 32)]
    for fewer, more in zip(lookups, lookups[1:]):
        assert more > 2.2 * fewer


def test_fuse_cold_lookup_grows_with_entries_times_layers():
    by_entries = [lookup("fuse-overlayfs", layers=8, dir_entries=entries) for entries in (1, 100, 1000)]
    assert by_entries[1] > 3 * by_entries[0] and by_entries[2] > 5 * by_entries[1]


@pytest.mark.parametrize("driver", ["overlay2", "aufs"])
def test_kernel_cold_lookup_grows_slowly_with_entries(driver):
    """A hashed (htree) directory: one index block more per level, log of the blocks."""
    lookups = [lookup(driver, layers=8, dir_entries=entries) for entries in (1, 100, 1000, 5000)]
    assert all(more >= fewer * (1 - 1e-9) for fewer, more in zip(lookups, lookups[1:]))
    assert lookups[-1] > lookups[0]
    assert lookups[-1] < 2 * lookups[0]
    fuse = [lookup("fuse-overlayfs", layers=8, dir_entries=entries) for entries in (1, 1000)]
    assert fuse[1] / fuse[0] > 10 * lookups[2] / lookups[0]


@pytest.mark.parametrize("driver", ALL)
def test_directory_size_changes_no_bytes_and_no_warm_lookup(driver):
    """Directory size and layout are read costs: copy-ups, the bytes they copy and a lookup
    served by the dentry cache do not depend on them."""
    small, big = (sim.probe(driver, file_size=2**20, layers=3, dir_depth=3, dir_entries=entries)
                  for entries in (1, 500))
    for key in ("copy_up_bytes", "second_copy_up_bytes"):
        assert small[key] == big[key]
    warm = [sim.probe(driver, file_size=2**20, layers=3, dir_depth=3, dir_entries=entries, cache="warm")["lookup_s"]
            for entries in (1, 500)]
    assert warm[0] == pytest.approx(warm[1])


@pytest.mark.parametrize("driver", ALL)
def test_container_sizes_do_not_depend_on_the_metadata_layout(driver):
    """docker ps -s after the same write is the same in any directory, and so are the real
    bytes of every driver but vfs (whose container copies the image, directories included)."""
    def space(depth, entries):
        scenario = {"name": "space", "driver": {"name": driver},
                    "image": {"kind": "probe", "file_size": "1MiB", "layers": 2, "dir_depth": depth,
                              "dir_entries": entries},
                    "workload": {"kind": "copyup_probe"}}
        row = sim.run_scenario(scenario).space.query("kind == 'container'").iloc[0]
        return row["size_bytes"], row["real_bytes"] if driver != "vfs" else None
    assert space(1, 1) == space(16, 1) == space(1, 500)


def test_a_probe_step_costs_the_cpu_the_driver_reckoned():
    """The engine charges a dentry miss the CPU its driver computed, however many keys it reads
    (fuse-overlayfs's directory loads are not a per-key cost)."""
    engine = Engine(load_profile("ssd"))
    plan = Plan().probe(LOOKUP, ("ctr", 0, "a"), (), 5e-3)
    result = OpResult()
    engine.env.process(engine.execute(plan, result.record))
    engine.env.run()
    assert result.phase_s[LOOKUP] == pytest.approx(5e-3)


def test_fuse_load_dir_follows_make_ovl_node():
    """Three layers hold directory d: a name first met in layer i is checked in layers i..0."""
    layers = [Layer("l0", files={"d/a": 1, "d/b": 1}), Layer("l1", files={"d/a": 1, "d/c": 1}),
              Layer("l2", files={"d/e": 1}, whiteouts={"d/b"})]
    image = Image("three", layers)
    costs = KernelCosts()
    driver = get_driver("fuse-overlayfs")({}, load_profile("ssd"))
    keys, cpu = driver._load_dir(image, "d")
    read = 2 + 2 + 2  # every entry of every copy, the whiteout of b included
    checked = 3 * 1 + 2 * 2 + 1 * 0  # e from layer 2; a, c from layer 1; b is a whiteout, then known
    assert cpu == pytest.approx(read * costs.fuse_dir_entry + checked * costs.fuse_entry_layer_check)
    assert len(keys) == 3 * 2  # per copy: one directory block and one inode-table block


@settings(max_examples=60)
@given(entries=st.integers(0, 10**7), per_block=st.integers(1, 512), fanout=st.integers(2, 1024),
       name=st.text(min_size=1, max_size=20))
def test_dir_index_reads_one_block_per_level(entries, per_block, fanout, name):
    costs = KernelCosts(dir_entries_per_block=per_block, dir_index_fanout=fanout)
    keys = dir_index_keys("tree", "dir", name, entries, costs)
    blocks = -(-entries // per_block)
    levels = 0 if blocks <= 1 else math.ceil(round(math.log(blocks) / math.log(fanout), 9))
    assert len(keys) == max(levels, 1 if blocks > 1 else 0)
    if keys:
        assert keys[0] == dir_index_keys("tree", "dir", name + "x", entries, costs)[0]  # one root for every name
        assert keys == dir_index_keys("tree", "dir", name, entries, costs)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**16), layers=st.integers(1, 4), fanout=st.integers(1, 4))
def test_directory_entries_are_counted_once_per_image(seed, layers, fanout):
    image = synthetic_image(np.random.default_rng(seed), layers=layers, files_per_layer=30, dir_depth=2, fanout=fanout)
    assert image.dir_entries is image.dir_entries  # computed once
    for layer, counted in zip(image.layers, image.dir_entries):
        plain = Counter(path.rpartition("/")[0] for path in [*layer.files, *layer.dirs, *layer.whiteouts])
        assert counted == plain
    assert image.merged_dir_entries == Counter(path.rpartition("/")[0] for path in image.merged)


def test_probe_image_holds_dir_entries_per_layer():
    image, target = probe_image(file_size=1, layers=3, dir_depth=2, dir_entries=7)
    parent = target.rpartition("/")[0]
    assert [counts[parent] for counts in image.dir_entries] == [8, 7, 7]  # the target besides, at the bottom
    assert probe_image(file_size=1, layers=2, dir_depth=2, dir_entries=1)[0].digest() == \
        probe_image(file_size=1, layers=2, dir_depth=2, dir_entries=1)[0].digest()
