"""docker pull and container start-up (sim/pull.py): what a pull fetches, how long it takes,
what extraction costs each driver, and that a scenario without a node block is as before."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.api import validate
from sim.drivers import get_driver
from sim.engine import Engine
from sim.host import Host
from sim.image import Image, Layer
from sim.plan import CPU, DISK_READ, LOCK, UNLOCK, WRITE, WRITEBACK
from sim.profile import load_profile
from sim.pull import EXISTS, FETCHED, Puller, pull_alone
from sim.runner import simulate
from sim.scenario import NodeSpec

MIB = 2**20


def layer(name: str, size: int, files: int = 4) -> Layer:
    return Layer(name=name, files={f"{name}/f{i}": size // files for i in range(files)})


def host_for(driver: str = "overlay2") -> Host:
    profile = load_profile("ssd")
    return Host(get_driver(driver)(None, profile), Engine(profile))


def test_a_layer_already_on_the_node_is_not_fetched_again():
    base = [layer("base0", 8 * MIB), layer("base1", 4 * MIB)]
    first = Image("app1", [*base, layer("app1", 2 * MIB)])
    second = Image("app2", [*base, layer("app2", 3 * MIB)])
    puller = pull_alone("overlay2", [first, second, second])
    statuses = [(record.image, record.layer, record.status) for record in puller.layers]
    assert statuses == [("app1", 0, FETCHED), ("app1", 1, FETCHED), ("app1", 2, FETCHED),
                        ("app2", 0, EXISTS), ("app2", 1, EXISTS), ("app2", 2, FETCHED),
                        ("app2", 0, EXISTS), ("app2", 1, EXISTS), ("app2", 2, EXISTS)]  # pulled again: nothing
    fetched = [r.fetched_bytes for r in puller.layers]
    assert fetched[3:5] == [0, 0] and fetched[6:] == [0, 0, 0]
    assert fetched[5] == int(3 * MIB * 0.42)
    # the link carried each layer once
    assert puller.link.bytes_read == sum(fetched) == int(8 * MIB * .42) + int(4 * MIB * .42) + int(2 * MIB * .42) \
        + int(3 * MIB * .42)


def test_concurrent_pulls_share_a_layer_being_fetched():
    base = layer("base", 32 * MIB)
    images = [Image(f"app{i}", [base, layer(f"app{i}", MIB)]) for i in range(3)]
    host = host_for()
    puller = Puller(host, NodeSpec(images_present=False))
    for image in images:
        host.env.process(puller.pull(image, "host"))
    host.env.run()
    fetched_base = [r for r in puller.layers if r.layer == 0 and r.status == FETCHED]
    assert len(fetched_base) == 1
    assert set(host.images) == {"app0", "app1", "app2"}


@pytest.mark.parametrize("driver", ["overlay2", "btrfs", "vfs"])
def test_pull_time_grows_with_bytes(driver):
    times = []
    for size in (4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB):
        image = Image("app", [layer(f"l{i}", size // 4) for i in range(4)])
        times += pull_alone(driver, [image]).pull_s
    assert all(a < b for a, b in zip(times, times[1:])), times


def far_registry(round_trip: float = 0.15):
    """The ssd profile with a distant registry: a request's latency counts as much as its bytes."""
    profile = load_profile("ssd")
    return profile.model_copy(update={"registry": profile.registry.model_copy(update={"round_trip": round_trip})})


def download_makespan(max_concurrent_downloads: int, profile=None, layers: int = 8,
                      size: int = 16 * MIB) -> tuple[float, float]:
    """(when the last download ended, the pull's time) for an image of equal layers."""
    image = Image("app", [layer(f"l{i}", size) for i in range(layers)])
    puller = pull_alone("overlay2", [image], NodeSpec(images_present=False,
                                                      max_concurrent_downloads=max_concurrent_downloads), profile)
    return max(r.download_start_s + r.download_s for r in puller.layers), puller.pull_s[0]


def test_pull_time_falls_with_concurrent_downloads_until_bandwidth_is_the_limit():
    profile = far_registry()
    registry = profile.registry
    downloads, pulls = zip(*(download_makespan(n, profile) for n in (1, 2, 3, 4, 8, 16)))
    assert all(a > b for a, b in zip(downloads[:5], downloads[1:5])), downloads  # 1 -> 8: faster each time
    assert all(a > b for a, b in zip(pulls[:5], pulls[1:5])), pulls
    # beyond the layers' count nothing is left to overlap; and never faster than the link
    assert downloads[4] == pytest.approx(downloads[5]) and pulls[4] == pytest.approx(pulls[5])
    fetched = 8 * int(16 * MIB * 0.42)
    assert downloads[5] >= fetched / registry.bandwidth
    # once every layer is in flight the link's bandwidth is the limit: the per-request latencies overlap
    per_blob = registry.blob_requests * (registry.round_trip + registry.request_overhead)
    manifest = registry.manifest_requests * (registry.round_trip + registry.request_overhead)
    assert downloads[4] == pytest.approx(manifest + per_blob + fetched / registry.bandwidth, rel=1e-9)
    assert downloads[0] == pytest.approx(manifest + 8 * (per_blob + fetched / 8 / registry.bandwidth), rel=1e-9)


def test_too_many_downloads_at_once_delay_the_first_extraction():
    """Layers sharing the link fairly all arrive late together, and extraction goes bottom-up:
    with a near registry, decompressing a layer costs about what its requests' latency does,
    and the pull is fastest at a few downloads at once, not at all of them."""
    pulls = [download_makespan(n)[1] for n in (1, 3, 8)]
    assert pulls[1] < pulls[0] and pulls[1] < pulls[2], pulls


def extraction(driver: str, layers: int, image_size: int = 64 * MIB) -> tuple[float, int]:
    """(seconds of extraction summed over layers, bytes the extraction wrote) of an image of
    ``image_size`` bytes split into ``layers`` layers."""
    image = Image("app", [layer(f"l{i}", image_size // layers) for i in range(layers)])
    puller = pull_alone(driver, [image])
    blobs = sum(r.fetched_bytes for r in puller.layers)
    return sum(r.extract_s for r in puller.layers), sum(r.written_bytes for r in puller.layers) - blobs


def test_vfs_extraction_grows_with_layers_times_size_overlay2_with_size_only():
    size = 64 * MIB
    for layers in (1, 2, 4, 8, 16):
        _, overlay2_written = extraction("overlay2", layers, size)
        _, vfs_written = extraction("vfs", layers, size)
        assert overlay2_written == size
        # layer k copies the k layers below (k/layers of the image each): size x (layers + 1) / 2
        assert vfs_written == pytest.approx(size * (layers + 1) / 2, rel=1e-6)
    overlay2_s = [extraction("overlay2", n, size)[0] for n in (1, 4, 16)]
    vfs_s = [extraction("vfs", n, size)[0] for n in (1, 4, 16)]
    assert overlay2_s[2] < 1.5 * overlay2_s[0]
    assert vfs_s[2] > 4 * vfs_s[0]
    # twice the image, twice the work, whatever the driver
    assert extraction("vfs", 8, 2 * size)[1] == 2 * extraction("vfs", 8, size)[1]


@pytest.mark.parametrize("driver", ["overlay2", "overlay", "aufs", "fuse-overlayfs", "btrfs", "zfs", "devicemapper",
                                    "vfs"])
def test_each_driver_makes_a_pulled_layers_place_its_own_way(driver):
    """A new directory (union drivers), a snapshot of the parent (btrfs, zfs, devicemapper), the
    layers below hard-linked (overlay) or copied whole (vfs); then the same untar for all."""
    profile = load_profile("ssd")
    costs = profile.costs
    image = Image("app", [layer(f"l{i}", MIB, files=8) for i in range(3)])
    made = get_driver(driver)(None, profile)
    create = made.create_layer(image, 2).steps
    cpu = sum(step[2] for step in create if step[0] == CPU)
    expected = {"btrfs": costs.btrfs_snapshot, "zfs": costs.zfs_clone, "devicemapper": costs.dm_thin_create,
                "overlay": costs.layer_create + 2 * image.layers[0].entries * costs.hardlink}
    if driver == "vfs":  # the two layers below read and written again
        assert [step[2] for step in create if step[0] in (DISK_READ, WRITEBACK)] == [2 * MIB, 2 * MIB]
    else:
        assert cpu == pytest.approx(expected.get(driver, costs.layer_create))
        # CPU only, devicemapper's under its DeviceSet lock
        assert [step[0] for step in create if step[0] != CPU] == ([LOCK, UNLOCK] if driver == "devicemapper" else [])
    untar = made.untar_layer(image, 2).steps
    assert [step[0] for step in untar] == [CPU, WRITE, WRITEBACK]
    assert untar[0][2] == image.layers[2].entries * costs.metadata_update and untar[2][2] == MIB


def scenario(**node) -> dict:
    return {"name": "cold", "seed": 1, "image": {"layers": 3, "files_per_layer": 40, "file_size": "64KiB"},
            "containers": {"count": 3}, "workload": {"kind": "mix", "operations": 60}, "node": node}


def run(data: dict):
    ((_, point),) = validate(data)
    return simulate(point)


def test_a_node_without_its_images_pulls_once_and_starts_every_container():
    result = run(scenario(images_present=False, arrival_interval="1s", first_read_fraction=0.1))
    summary, ops = result.summary, result.ops
    # the pull is over before the second container arrives: it finds the image on the node
    assert summary["pulls"] == 1 and summary["layers_fetched"] == 3 and summary["layers_existing"] == 0
    pulled = ops[ops.op == "download"]["bytes"].sum()
    assert summary["pull_fetched_bytes"] == pulled > 0
    startups = ops[ops.op == "startup"].sort_values("container")
    assert list(startups["start_s"]) == [0.0, 1.0, 2.0]
    running = startups["start_s"] + startups["latency_s"]
    assert summary["all_running_s"] == pytest.approx(running.max() - 0.0)
    # each container: pulled (the first), created, started, read its first files, in that order
    for cid in ("0", "1", "2"):
        mine = ops[ops.container == cid]
        order = [op for op in mine.sort_values("start_s", kind="stable")["op"] if op in
                 ("pull", "create_container", "start_container", "first_read")]
        expected = ["pull"] if cid == "0" else []
        assert order[:len(expected) + 2] == [*expected, "create_container", "start_container"]
        assert set(order[len(expected) + 2:]) == {"first_read"}
    assert summary["ops"] == 60  # the start-up is setup, not the workload


def test_containers_arriving_together_share_one_pull():
    summary = run(scenario(images_present=False)).summary
    assert summary["pulls"] == 3 and summary["layers_fetched"] == 3 and summary["layers_existing"] == 6


def test_a_node_with_its_images_does_not_pull():
    result = run(scenario(arrival_interval="0.5s"))
    assert result.summary["pulls"] == 0 and result.summary["pull_fetched_bytes"] == 0
    assert math.isnan(result.summary["pull_mean_s"])
    assert not (result.ops.op == "download").any()


def test_without_a_node_block_the_run_is_as_before():
    data = scenario()
    del data["node"]
    plain = run(data)
    defaults = run(scenario())
    assert plain.summary == defaults.summary
    assert "pulls" not in plain.summary and not plain.ops.op.isin(["startup", "pull"]).any()
    assert NodeSpec().starts_containers is False


def fleet(**node) -> dict:
    """Two applications on one base, one container each, arriving far apart; the base is never run."""
    fixed = {"size_distribution": "fixed", "overwrite_fraction": 0, "delete_fraction": 0}
    images = [{"name": "base", "layers": 2, "files_per_layer": 20, "file_size": "64KiB", **fixed},
              {"name": "app1", "base": "base", "layers": 1, "files_per_layer": 5, "file_size": "64KiB", **fixed},
              {"name": "app2", "base": "base", "layers": 1, "files_per_layer": 7, "file_size": "64KiB", **fixed}]
    return {"name": "fleet", "seed": 2, "images": images,
            "containers": {"groups": [{"image": "app1"}, {"image": "app2"}]},
            "node": {"images_present": False, "arrival_interval": "30s", **node}, "remove_images_at_end": ["base"],
            "workload": {"kind": "mix", "operations": 20}}


def test_a_base_pulled_for_one_image_is_not_fetched_for_the_next():
    result = run(fleet())
    summary, ops = result.summary, result.ops
    layer = 20 * 64 * 1024
    fetched = ops[ops.op == "download"].set_index("path")["bytes"].to_dict()
    assert fetched == {"app1@0": int(layer * 0.42), "app1@1": int(layer * 0.42), "app1@2": int(5 * 65536 * 0.42),
                       "app2@2": int(7 * 65536 * 0.42)}
    assert summary["layers_fetched"] == 4 and summary["layers_existing"] == 2
    assert summary["pull_fetched_bytes"] == sum(fetched.values())
    # the bytes on the node: each layer once, the base's two shared by both applications
    assert summary["images_real_bytes"] == 2 * layer + 5 * 65536 + 7 * 65536
    pulls = ops[ops.op == "pull"].set_index("container")["latency_s"]
    assert pulls["1"] < pulls["0"]  # the second pull fetched one small layer


def test_the_report_draws_the_start_up(tmp_path):
    from sim import report
    data = fleet()
    data["sweep"] = {"driver.name": ["overlay2", "vfs"]}
    figures = {figure.name for figure in report.figures(sim.run_scenario(data))}
    assert {"startup_timeline", "startup"} <= figures
    data["sweep"]["node.max_concurrent_downloads"] = [1, 3]
    figures = {figure.name for figure in report.figures(sim.run_scenario(data))}
    assert "startup_vs_max_concurrent_downloads" in figures


@settings(max_examples=30)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.floats(0, 2)), min_size=1, max_size=8),
       st.integers(1, 4))
def test_every_layer_is_fetched_once_whatever_the_pulls(pulls, downloads):
    """Images on 4 bases of 1..4 layers with 0..2 layers of their own, pulled at random times
    and overlapping: each distinct layer crosses the link once, and every pull ends with its
    layers on the node."""
    bases = [[layer(f"b{b}.{i}", (b + 1) * MIB) for i in range(b + 1)] for b in range(4)]
    own: dict[tuple[int, int], list[Layer]] = {}
    host = host_for()
    puller = Puller(host, NodeSpec(images_present=False, max_concurrent_downloads=downloads))

    def later(image, at):
        yield host.env.timeout(at)
        yield from puller.pull(image, "host")

    images = []
    for base, extra, at in pulls:
        stack = own.setdefault((base, extra), [layer(f"a{base}.{extra}.{i}", MIB // 2) for i in range(extra)])
        image = Image(f"app{base}.{extra}", bases[base] + stack)
        images.append(image)
        host.env.process(later(image, at))
    host.env.run()
    distinct = {id(lay): lay for image in images for lay in image.layers}
    assert puller.link.bytes_read == sum(int(lay.size * 0.42) for lay in distinct.values())
    assert sum(1 for r in puller.layers if r.status == FETCHED) == len(distinct)
    assert set(distinct) == {id(lay) for lay in host.layers}
    assert len(puller.pull_s) == len(pulls)


@pytest.mark.parametrize("driver, serialised", [("devicemapper", True), ("zfs", False)])
def test_devicemapper_makes_one_thin_device_at_a_time(driver, serialised):
    """dockerd's DeviceSet mutex is held over each thin device's creation (deviceset.go AddDevice):
    three containers created at once finish one creation apart; zfs clones share the cores."""
    host = host_for(driver)
    image = Image("app", [layer("base", MIB)])
    env = host.env
    env.run(env.process(host.prepare_image(image)))
    started = env.now
    ends: list[float] = []

    def create(cid):
        yield from host.create_container(cid, image)
        ends.append(env.now - started)

    for cid in range(3):
        env.process(create(cid))
    env.run()
    one = 2 * host.driver.snapshot_s()  # the -init device and the container's
    expected = [one, 2 * one, 3 * one] if serialised else [one, one, 2 * one]  # two cores, first come first served
    assert ends == pytest.approx(expected, rel=1e-6)
