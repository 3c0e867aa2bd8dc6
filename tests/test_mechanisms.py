"""The mechanisms of drivers.md, each visible in the numbers."""
import numpy as np
import pytest

import sim
from sim.drivers import Op, get_driver
from sim.engine import Engine
from sim.host import Host, Mount
from sim.image import synthetic_image
from sim.profile import load_profile
from sim.records import SETUP_OPS

UNION = ["overlay2", "overlay", "aufs", "fuse-overlayfs"]
SNAPSHOT = ["btrfs", "zfs", "devicemapper"]
ALL = UNION + SNAPSHOT + ["vfs"]
MiB = 2**20


@pytest.mark.parametrize("driver", UNION)
def test_union_first_write_grows_linearly_with_file_size(driver):
    sizes = [16 * MiB, 32 * MiB, 64 * MiB, 128 * MiB]
    firsts = [sim.probe(driver, file_size=s)["first_write_s"] for s in sizes]
    steps = np.diff(firsts) / np.diff(sizes)  # seconds per byte between successive sizes
    assert steps.min() > 0
    assert steps.max() / steps.min() == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("driver", ALL)
def test_second_write_pays_no_copy_up(driver):
    result = sim.probe(driver, file_size=8 * MiB, layers=3, dir_depth=3)
    assert result["second_copy_up_bytes"] == 0
    assert result["second_write_s"] < result["first_write_s"]


@pytest.mark.parametrize("driver, options", [("overlay2", {"reflink": True}), ("fuse-overlayfs", {"reflink": True}),
                                             ("btrfs", {}), ("zfs", {}), ("devicemapper", {})])
def test_first_write_does_not_grow_with_file_size_when_cloning_or_block_cow(driver, options):
    small = sim.probe(driver, file_size=1 * MiB, **options)
    huge = sim.probe(driver, file_size=1024 * MiB, **options)
    assert huge["first_write_s"] == pytest.approx(small["first_write_s"], rel=0.03)
    plain_union = sim.probe("overlay2", file_size=1024 * MiB)
    assert plain_union["first_write_s"] > 50 * huge["first_write_s"]


@pytest.mark.parametrize("driver", ["overlay2", "aufs", "fuse-overlayfs"])
def test_cold_union_lookups_grow_with_layer_depth(driver):
    lookups = [sim.probe(driver, file_size=4096, layers=n, dir_depth=2)["lookup_s"] for n in (1, 2, 4, 8, 16, 64)]
    assert all(b > a for a, b in zip(lookups, lookups[1:]))
    warm = [sim.probe(driver, file_size=4096, layers=n, dir_depth=2, cache="warm")["lookup_s"] for n in (1, 64)]
    # A warm dentry cache does not touch the layers; aufs (udba=reval) revalidates each cached
    # component against every branch: 3 components, 63 more branches.
    revalidation = 3 * 63 * load_profile("ssd").costs.aufs_revalidate if driver == "aufs" else 0.0
    assert warm[1] - warm[0] == pytest.approx(revalidation, abs=1e-12)


@pytest.mark.parametrize("driver", SNAPSHOT + ["vfs", "overlay"])
def test_lookups_do_not_grow_with_layers_without_a_layer_walk(driver):
    # one file per layer beside the target: the merged directory stays small as layers are added
    lookups = [sim.probe(driver, file_size=4096, layers=n, dir_depth=2, dir_entries=1)["lookup_s"] for n in (1, 8, 64)]
    if driver == "btrfs":  # its one tree grows with the files the layers add: a leaf more, not 64 layers
        assert max(lookups) < 2.5 * min(lookups)
    else:
        assert max(lookups) == pytest.approx(min(lookups))


def test_fuse_cold_lookups_cost_more_per_layer_than_the_kernel():
    def per_layer(driver):
        one, many = (sim.probe(driver, file_size=4096, layers=n, dir_depth=2)["lookup_s"] for n in (1, 33))
        return (many - one) / 32
    assert per_layer("fuse-overlayfs") > per_layer("overlay2")


@pytest.mark.parametrize("driver", UNION)
def test_copy_up_grows_with_directory_depth(driver):
    copy_ups = [sim.probe(driver, file_size=4096, layers=2, dir_depth=d)["copy_up_s"] for d in (0, 1, 2, 4, 8, 16)]
    assert all(b > a for a, b in zip(copy_ups, copy_ups[1:]))


@pytest.mark.parametrize("driver, options, expected", [
    ("devicemapper", {}, 64 * 1024), ("devicemapper", {"block_size": "512KiB"}, 512 * 1024),
    ("zfs", {}, 128 * 1024), ("btrfs", {}, 4096), ("overlay2", {}, 10 * MiB), ("vfs", {}, 0),
    ("zfs", {"recordsize": "1MiB"}, MiB)])
def test_bytes_copied_by_a_one_byte_first_write(driver, options, expected):
    assert sim.probe(driver, file_size=10 * MiB, **options)["copy_up_bytes"] == expected


def test_zfs_small_files_are_one_block_of_their_own_size():
    assert sim.probe("zfs", file_size=10 * 1024)["copy_up_bytes"] == 12 * 1024
    assert sim.probe("zfs", file_size=64 * 1024)["copy_up_bytes"] == 64 * 1024


def test_devicemapper_block_copy_costs_more_with_bigger_blocks():
    small = sim.probe("devicemapper", file_size=10 * MiB)
    big = sim.probe("devicemapper", file_size=10 * MiB, block_size="2MiB")
    assert big["copy_up_s"] > small["copy_up_s"]


def test_volatile_skips_the_copy_up_fsync_and_metacopy_the_data():
    plain = sim.probe("overlay2", file_size=4 * MiB)
    volatile = sim.probe("overlay2", file_size=4 * MiB, volatile=True)
    assert volatile["copy_up_s"] < plain["copy_up_s"]
    assert volatile["second_write_s"] < plain["second_write_s"]  # fsync(2) is a no-op too


def _host(driver="overlay2", files=200, layers=3, **options):
    profile = load_profile("ssd")
    engine = Engine(profile)
    host = Host(get_driver(driver)(options, profile), engine)
    image = synthetic_image(np.random.default_rng(0), layers=layers, files_per_layer=files, dir_depth=2, fanout=3)
    return host, image


def _run(host, generator):
    host.env.process(generator)
    host.env.run()


@pytest.mark.parametrize("driver", ["overlay2", "btrfs", "vfs"])
def test_metacopy_chmod_copies_no_data(driver):
    host, image = _host("overlay2", metacopy=True)
    _run(host, host.create_container(0, image))
    path = max(image.files, key=lambda p: image.merged[p][1])
    plan = host.plan(0, Op("chmod", path))
    assert plan.copy_ups == 1 and plan.copy_up_bytes == 0
    plan = host.plan(0, Op("write", path, 0, 1))
    assert plan.copy_up_bytes == image.merged[path][1]  # the data follows at the first data write


def test_vfs_container_creation_grows_with_image_size():
    def create_seconds(files):
        host, image = _host("vfs", files=files)
        _run(host, host.create_container(0, image))
        return host.records.frame().query("op == 'create_container'")["latency_s"].iloc[0]
    small, big = create_seconds(200), create_seconds(800)
    assert big > 3 * small


def test_vfs_prepare_image_grows_with_layers_times_size():
    def prepare_seconds(layers):
        host, image = _host("vfs", files=200, layers=layers)
        _run(host, host.prepare_image(image))
        return host.records.frame()["latency_s"].iloc[0], host.driver.image_real_bytes(image), image.virtual_size
    (t2, real2, virtual2), (t8, real8, virtual8) = prepare_seconds(2), prepare_seconds(8)
    assert real8 / virtual8 > 2 * real2 / virtual2  # each layer is a full copy of its parent
    assert t8 > 4 * t2


def test_volume_writes_never_copy_up_and_survive_the_container():
    host, image = _host("overlay2")
    volume_dir = image.files[0].split("/")[0]  # a named volume over an image directory starts as its copy
    mount = Mount("data", volume_dir)

    def scenario():
        yield from host.create_container(0, image, [mount])
        yield from host.create_container(1, image, [mount])
        in_volume = [p for p in image.files if p.startswith(volume_dir + "/")][0]
        elsewhere = [p for p in image.files if not p.startswith(volume_dir + "/")][0]
        yield from host.run_op(0, 0, Op("write", in_volume, 0, 10, sync=True))
        yield from host.run_op(0, 0, Op("create", f"{volume_dir}/new", 0, 4096, sync=True))
        yield from host.run_op(0, 0, Op("write", elsewhere, 0, 10, sync=True))
        yield from host.remove_container(0)
        # The second container sees what the first one wrote to the shared volume.
        yield from host.run_op(1, 0, Op("read", f"{volume_dir}/new", 0, 4096))

    _run(host, scenario())
    ops = host.records.frame()
    writes = ops[ops["op"].isin(["write", "create"])]
    in_volume = writes["path"].str.startswith(volume_dir + "/")
    assert (writes[in_volume]["copy_ups"] == 0).all()
    assert (writes[~in_volume]["copy_ups"] == 1).all()
    assert ops[ops["op"] == "read"]["error"].iloc[0] == ""
    assert 0 not in host.driver.views  # the writable layer is gone with the container
    assert "data" in host.volumes and host.volume_fs.views[("vol", "data")].stat("new") is not None


@pytest.mark.parametrize("driver", ALL)
def test_removing_a_container_frees_its_writable_layer(driver):
    run = sim.run_scenario({"name": "rm", "driver": {"name": driver}, "containers": {"count": 2, "remove_at_end": True},
                            "image": {"layers": 2, "files_per_layer": 50},
                            "workload": {"ops": {"write": 1.0}, "operations": 40}})
    ops = run.ops
    assert (ops["op"] == "remove_container").sum() == 2
    assert run.space.query("kind == 'container'")["size_bytes"].sum() > 0  # measured before removal


@pytest.mark.parametrize("driver", ALL)
def test_docker_ps_totals_count_the_image_once(driver):
    run = sim.run_scenario({"name": "ps", "driver": {"name": driver}, "containers": {"count": 3},
                            "image": {"layers": 3, "files_per_layer": 100},
                            "workload": {"ops": {"write": 0.5, "create": 0.5}, "operations": 60}})
    space = run.space
    containers = space[space["kind"] == "container"]
    image = space[space["kind"] == "image"].iloc[0]
    total = space[space["kind"] == "total"].iloc[0]
    assert (containers["virtual_bytes"] == containers["size_bytes"] + image["virtual_bytes"]).all()
    assert total["size_bytes"] == containers["size_bytes"].sum()
    assert total["virtual_bytes"] == containers["size_bytes"].sum() + image["virtual_bytes"]
    assert total["virtual_bytes"] < containers["virtual_bytes"].sum()  # virtual sizes are never summed
    assert total["real_bytes"] == space[space["kind"] != "total"]["real_bytes"].sum()


def test_what_drivers_really_hold():
    def real(driver):
        run = sim.run_scenario({"name": "real", "driver": {"name": driver}, "containers": {"count": 2},
                                "image": {"layers": 3, "files_per_layer": 100, "file_size": "256KiB", "sigma": 0},
                                "workload": {"ops": {"write": 1.0}, "operations": 50, "request_size": 1}})
        containers = run.space.query("kind == 'container'")
        return containers["real_bytes"].sum(), containers["size_bytes"].sum()
    overlay_real, overlay_size = real("overlay2")
    btrfs_real, btrfs_size = real("btrfs")
    vfs_real, _ = real("vfs")
    assert overlay_real == overlay_size  # whole files after copy-up
    assert btrfs_size == overlay_size and btrfs_real < overlay_real / 10  # only the touched 4 KiB blocks
    assert vfs_real > 10 * overlay_real  # two full copies of the image per container


def test_shared_page_cache_reads_the_image_once():
    def disk_reads(driver):
        run = sim.run_scenario({"name": "cache", "driver": {"name": driver}, "containers": {"count": 4},
                                "image": {"layers": 2, "files_per_layer": 50},
                                "workload": {"ops": {"read": 1.0}, "operations": 2000, "file_choice": "uniform",
                                             "request_size": "1MiB"}})
        return run.summary["disk_read_bytes"].iloc[0]
    shared, private = disk_reads("overlay2"), disk_reads("btrfs")
    assert private > 2.5 * shared
    zfs = disk_reads("zfs")  # the ARC is shared between clones
    assert zfs < 1.2 * shared and private > 2.5 * zfs
    assert disk_reads("fuse-overlayfs") > 2.5 * shared  # a per-mount FUSE cache


@pytest.mark.parametrize("driver", ALL)
def test_every_driver_runs_the_same_workload_through_the_same_engine(driver):
    run = sim.run_scenario({"name": "all", "seed": 5, "driver": {"name": driver}, "containers": {"count": 2},
                            "image": {"layers": 3, "files_per_layer": 80},
                            "workload": {"ops": {"read": .3, "write": .2, "append": .1, "create": .1, "delete": .1,
                                                 "stat": .1, "rename": .05, "chmod": .05}, "operations": 300}})
    ops = run.ops[~run.ops["op"].isin(SETUP_OPS)]
    assert len(ops) == 300
    assert (ops["error"] == "").mean() > 0.9
    reference = sim.run_scenario({"name": "all", "seed": 5, "driver": {"name": "overlay2"}, "containers": {"count": 2},
                                  "image": {"layers": 3, "files_per_layer": 80},
                                  "workload": {"ops": {"read": .3, "write": .2, "append": .1, "create": .1,
                                                       "delete": .1, "stat": .1, "rename": .05, "chmod": .05},
                                               "operations": 300}}).ops
    reference = reference[~reference["op"].isin(SETUP_OPS)]
    # Same seed: the same operations on the same files, whatever the driver.
    key = ["container", "op", "path"]
    assert sorted(map(tuple, ops[key].values)) == sorted(map(tuple, reference[key].values))


def test_layer_limits_are_enforced():
    from sim.drivers import LayerLimitError
    with pytest.raises(LayerLimitError, match="aufs allows at most 125 image layers, got 126"):
        get_driver("aufs").check_layers(126)
    with pytest.raises(LayerLimitError, match="overlay2 allows at most 125"):
        get_driver("overlay2").check_layers(128)
    get_driver("overlay2").check_layers(125)


def test_disk_latency_variability_comes_from_the_disk_stream(tmp_path):
    profile = tmp_path / "jittery.yaml"
    profile.write_text(load_profile("ssd").model_copy(update={"name": "jittery"}).model_dump_json()
                       .replace('"latency_cv":0.0', '"latency_cv":0.5'))
    spec = {"name": "jitter", "profile": str(profile), "replicates": 2, "image": {"kind": "probe", "file_size": "1MiB"},
            "workload": {"kind": "copyup_probe"}}
    first, second = sim.run_scenario(spec).summary, sim.run_scenario(spec).summary
    assert first["first_write_s"].tolist() == second["first_write_s"].tolist()  # same seed, same numbers
    assert first["first_write_s"].iloc[0] != first["first_write_s"].iloc[1]  # replicates differ
    steady = sim.run_scenario({**spec, "profile": "ssd"}).summary
    assert steady["first_write_s"].iloc[0] == steady["first_write_s"].iloc[1]
