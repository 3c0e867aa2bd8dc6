"""Many images on one node (issue 15): content-addressed layers shared between images built on
the same bases, `docker ps -s`, `docker image ls` and `docker system df` against hand-computed
figures, `docker rm` / `docker rmi` / `docker image prune -a` and what they give back, and
`docker history` of real and synthetic images."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

import sim
from sim import api, report
from sim.cli import main
from sim.drivers import get_driver
from sim.engine import Engine
from sim.host import Host
from sim.image import Image, Layer
from sim.imagefile import load_image
from sim.profile import load_profile
from sim.runner import build_images
from sim.scenario import Scenario
from tests.refusals import one_line
from tests.test_imagefile import LAYERS, add_bytes, docker_save, layer_tar, oci_layout, write_blob

ROOT = Path(__file__).resolve().parents[1]
FIXED = {"size_distribution": "fixed", "overwrite_fraction": 0, "delete_fraction": 0}


def fleet() -> dict:
    """3 bases and 12 application images on them, 8 of which run containers.

    base0: 2 layers x 10 files x 1000 B = 20,000 B; base1: 3 x 10 x 2000 = 60,000; base2: 1 x 20 x 500 =
    10,000. app{i} is on base{i % 3} with 1 + i % 2 layers of 5 files of 100 x (i + 1) bytes."""
    images = [
        {"name": "base0", "layers": 2, "files_per_layer": 10, "file_size": 1000, **FIXED},
        {"name": "base1", "layers": 3, "files_per_layer": 10, "file_size": 2000, **FIXED},
        {"name": "base2", "layers": 1, "files_per_layer": 20, "file_size": 500, **FIXED},
    ]
    for i in range(12):
        images.append({"name": f"app{i}", "base": f"base{i % 3}", "layers": 1 + i % 2, "files_per_layer": 5,
                       "file_size": 100 * (i + 1), **FIXED})
    groups = [{"image": f"app{i}", "count": 1 + i % 3} for i in range(8)]
    return {"name": "fleet", "seed": 3, "images": images, "containers": {"groups": groups},
            "workload": {"kind": "mix", "operations": 300, "ops": {"write": 0.5, "append": 0.2, "read": 0.3}}}


# By hand: each application image's own layers, (1 + i % 2) x 5 x 100 x (i + 1) bytes.
OWN = {"app0": 500, "app1": 2000, "app2": 1500, "app3": 4000, "app4": 2500, "app5": 6000, "app6": 3500,
       "app7": 8000, "app8": 4500, "app9": 10000, "app10": 5500, "app11": 12000}
BASE = {"base0": 20000, "base1": 60000, "base2": 10000}
IMAGE_SIZE = {**BASE, **{name: BASE[f"base{int(name[3:]) % 3}"] + own for name, own in OWN.items()}}
LAYERS_ON_NODE = 90000 + 60000          # the three bases once, plus every application's own layers
UNUSED = 4500 + 10000 + 5500 + 12000     # app8..app11 run no container; every base is used by some app


@pytest.fixture(scope="module")
def fleet_run():
    return sim.run_scenario(fleet())


def test_docker_image_ls_and_system_df_of_twelve_images_on_three_bases(fleet_run):
    df = fleet_run.df
    assert set(df["when"]) == {"end"}
    images = df[df["kind"] == "image"].set_index("name")
    assert images["size_bytes"].to_dict() == IMAGE_SIZE  # docker image ls: each image whole
    for name, row in images.iterrows():
        if name.startswith("base"):  # every layer of a base is shared with its applications
            assert (row["shared_bytes"], row["unique_bytes"]) == (BASE[name], 0)
        else:
            assert (row["shared_bytes"], row["unique_bytes"]) == (IMAGE_SIZE[name] - OWN[name], OWN[name])
        assert row["reclaimable_bytes"] == (OWN[name] if name in ("app8", "app9", "app10", "app11") else 0)
    groups = {f"app{i}": 1 + i % 3 for i in range(8)}
    assert images["containers"].to_dict() == {name: groups.get(name, 0) for name in IMAGE_SIZE}
    rows = df[df["kind"] != "image"].set_index("kind")
    assert (rows.loc["images", "count"], rows.loc["images", "active"]) == (15, 8)
    assert rows.loc["images", "size_bytes"] == LAYERS_ON_NODE  # not the sum of the images' sizes
    assert sum(IMAGE_SIZE.values()) > LAYERS_ON_NODE
    assert rows.loc["images", "reclaimable_bytes"] == UNUSED
    # Docker prints the layers' size less the unique size of each image in use (app0..app7's own
    # layers): the bases, shared by images in use, would count as reclaimable though no prune frees them
    assert rows.loc["images", "docker_reclaimable_bytes"] == LAYERS_ON_NODE - sum(OWN[f"app{i}"] for i in range(8)) \
        == 122000
    sizes = fleet_run.space.query("kind == 'container'")["size_bytes"]
    assert rows.loc["containers", "count"] == sum(groups.values()) == len(sizes)
    assert rows.loc["containers", "size_bytes"] == sizes.sum() > 0
    assert rows.loc["total", "size_bytes"] == LAYERS_ON_NODE + sizes.sum()
    assert rows.loc["total", "reclaimable_bytes"] == UNUSED
    # overlay2 stores a layer's files as they are: real bytes are the sizes, each layer once
    assert rows.loc["images", "real_bytes"] == LAYERS_ON_NODE


def test_the_report_shows_the_node_disk(fleet_run):
    node, images = report.disk_tables(fleet_run.df)
    assert [row[2] for row in node.rows] == ["images", "containers", "volumes", "logs", "total"]
    assert node.rows[0][5:8] == ["146 KiB", "31.2 KiB", "119 KiB"]  # size, reclaimable, Docker's figure
    assert len(images.rows) == 15 and images.rows[-1] == ["app11", "21.5 KiB", "9.77 KiB", "11.7 KiB", "0"]


def test_docker_ps_s_rules_per_container(fleet_run):
    space = fleet_run.space
    containers = space[space["kind"] == "container"]
    expected_images = [f"app{i}" for i in range(8) for _ in range(1 + i % 3)]
    assert list(containers["image"]) == expected_images
    for _, row in containers.iterrows():
        # SIZE is the writable layer; virtual = SIZE + the container's own image, whole
        assert row["virtual_bytes"] - row["size_bytes"] == IMAGE_SIZE[row["image"]]
    total = space[space["kind"] == "total"].iloc[0]
    assert total["size_bytes"] == containers["size_bytes"].sum()
    # virtual sizes are never summed: every SIZE plus each layer on the node once
    assert total["virtual_bytes"] == containers["size_bytes"].sum() + LAYERS_ON_NODE
    assert total["virtual_bytes"] < containers["virtual_bytes"].sum()
    assert total["real_bytes"] == containers["real_bytes"].sum() + LAYERS_ON_NODE


def test_each_container_works_in_its_own_image(fleet_run):
    images = {name: set(image.files) for name, (image, _) in
              build_images(Scenario.model_validate(fleet()), 0).items()}
    ops = fleet_run.ops
    reads = ops[(ops["op"] == "read") & (ops["error"] == "")]
    owner = fleet_run.space.query("kind == 'container'").set_index("container")["image"]
    assert len(reads) > 20
    for _, op in reads.iterrows():  # a read of an image file names a file of that container's image
        assert op["path"] in images[owner[op["container"]]] or op["path"].rpartition("/")[2].startswith("new")


def test_layers_are_shared_and_laid_once():
    built = build_images(Scenario.model_validate(fleet()), 0)
    base0, app0, app3 = (built[name][0] for name in ("base0", "app0", "app3"))
    assert app0.layers[:2] == base0.layers and app3.layers[:2] == base0.layers  # the same Layer objects
    assert app0.layers[2] is not app3.layers[2]
    assert app0.chain_ids[:2] == base0.chain_ids and app0.chain_ids[2] != app3.chain_ids[2]
    assert len({layer.digest for image, _ in built.values() for layer in image.layers}) == 6 + 18
    again = build_images(Scenario.model_validate({**fleet(), "driver": {"name": "btrfs"}}), 0)
    assert [layer.digest for layer in again["app5"][0].layers] == [layer.digest for layer in built["app5"][0].layers]
    ops = sim.run_scenario(fleet()).ops
    laid = ops[ops["op"] == "prepare_image"].set_index("path")["bytes"]
    assert laid["base0"] == 20000 and laid["app0"] == 500 and laid["app3"] == 4000  # a base once


def test_chain_id_follows_docker():
    bottom, top = Layer("a", files={"x": 1}), Layer("b", files={"y": 2})
    image = Image("i", [bottom, top])
    expected = "sha256:" + hashlib.sha256(f"{bottom.digest} {top.digest}".encode()).hexdigest()
    assert image.chain_ids == [bottom.digest, expected]
    assert Image("j", [top]).chain_ids == [top.digest]  # the same diff on another parent: another layer


def test_real_images_sharing_layers_are_stored_once(tmp_path):
    """Two docker save tars whose bottom two layers are the same: on one node, those layers are
    held once, as their chain IDs agree."""
    tars = [layer_tar(rows) for rows in LAYERS]  # (file contents are random: made once, saved twice)
    first = save_tars(tmp_path / "one.tar", tars)
    second = save_tars(tmp_path / "two.tar", tars[:2] + [layer_tar([("file", "srv/other", 77)])])
    data = {"name": "two-real", "images": [{"name": "one", "from": str(first)}, {"name": "two", "from": str(second)}],
            "containers": {"groups": [{"image": "one"}, {"image": "two"}]}, "workload": {"operations": 20}}
    built = build_images(Scenario.model_validate(data), 0)
    assert built["one"][0].layers[:2] == built["two"][0].layers[:2]
    run = sim.run_scenario(data)
    images = run.df.set_index(["kind", "name"])
    shared = load_image(first).layers[0].size + load_image(first).layers[1].size
    assert images.loc[("image", "two"), "shared_bytes"] == shared
    assert images.loc[("images", ""), "size_bytes"] == load_image(first).virtual_size + 77


def save_tars(path, tars: list[bytes]):
    """A docker save tar (Docker 25+ layout) of these layer tars, without a config."""
    with tarfile.open(path, "w") as archive:
        names = [f"blobs/sha256/{hashlib.sha256(data).hexdigest()}" for data in tars]
        for name, data in zip(names, tars):
            add_bytes(archive, name, data)
        add_bytes(archive, "manifest.json", json.dumps([{"RepoTags": [path.stem], "Layers": names}]).encode())
    return path


@pytest.mark.parametrize("driver", ["overlay2", "vfs", "btrfs"])
def test_real_bytes_count_shared_layers_once(driver):
    data = {**fleet(), "driver": {"name": driver}, "workload": {"operations": 10}}
    run = sim.run_scenario(data)
    images = run.df[run.df["kind"] == "image"]
    on_node = run.df.set_index("kind").loc["images", "real_bytes"]
    assert on_node < images["real_bytes"].sum()
    if driver == "vfs":  # each layer a full copy of the view below it: more than the diffs
        assert on_node > LAYERS_ON_NODE
    else:
        assert on_node == LAYERS_ON_NODE


def small(**changes) -> dict:
    images = [{"name": "base", "layers": 2, "files_per_layer": 10, "file_size": 1000, **FIXED},
              {"name": "app1", "base": "base", "layers": 1, "files_per_layer": 4, "file_size": 1000, **FIXED},
              {"name": "app2", "base": "base", "layers": 1, "files_per_layer": 3, "file_size": 1000, **FIXED}]
    return {"name": "rm", "images": images, "workload": {"operations": 40},
            "containers": {"groups": [{"image": "app1", "count": 2}], "remove_at_end": True,
                           "volumes": [{"name": "data", "mount": "/d0"}]}, **changes}


def df_of(run, when: str):
    return run.df[run.df["when"] == when].set_index(["kind", "name"])


def test_docker_rm_drops_writable_layers_and_keeps_volumes():
    run = sim.run_scenario(small())
    before, after = df_of(run, "workload end"), df_of(run, "end")
    assert before.loc[("containers", ""), "count"] == 2 and after.loc[("containers", ""), "count"] == 0
    assert after.loc[("containers", ""), "size_bytes"] == 0
    volume = before.loc[("volumes", ""), "size_bytes"]
    assert volume > 0 and after.loc[("volumes", ""), "size_bytes"] == volume  # volumes stay
    assert (before.loc[("volumes", ""), "reclaimable_bytes"], after.loc[("volumes", ""), "reclaimable_bytes"]) \
        == (0, volume)  # mounted by nobody now: docker volume prune would free it
    # with no container left, every layer is reclaimable; the images are all still there
    assert before.loc[("images", ""), "reclaimable_bytes"] == 3000  # app2's own layer only
    assert after.loc[("images", ""), "reclaimable_bytes"] == after.loc[("images", ""), "size_bytes"] == 27000


def test_docker_rmi_frees_only_layers_no_other_image_holds():
    run = sim.run_scenario(small(remove_images_at_end=["app1"]))
    after = df_of(run, "end")
    assert "app1" not in after.index.get_level_values("name")
    assert after.loc[("images", ""), "size_bytes"] == 20000 + 3000  # base and app2 keep the base's layers
    removed = run.ops[run.ops["op"] == "remove_image"]
    assert list(removed["path"]) == ["app1"] and list(removed["bytes"]) == [4000]
    run = sim.run_scenario(small(remove_images_at_end=["base"]))  # its layers are all app1's and app2's too
    after = df_of(run, "end")
    assert list(run.ops[run.ops["op"] == "remove_image"]["bytes"]) == [0]
    assert after.loc[("images", ""), "size_bytes"] == 27000
    assert after.loc[("image", "app2"), "shared_bytes"] == 20000  # still shared, with app1


def test_image_prune_removes_every_unused_image():
    kept = small(prune_images_at_end=True)
    kept["containers"] = {**kept["containers"], "remove_at_end": False}
    run = sim.run_scenario(kept)
    after = df_of(run, "end")
    assert sorted(after.xs("image", level="kind").index) == ["app1"]  # base and app2 pruned; app1 runs
    assert after.loc[("images", ""), "size_bytes"] == 24000 and after.loc[("images", ""), "reclaimable_bytes"] == 0
    run = sim.run_scenario(small(prune_images_at_end=True))  # no container left: everything goes
    after = df_of(run, "end")
    assert after.loc[("images", ""), "count"] == 0 and after.loc[("images", ""), "size_bytes"] == 0
    assert after.loc[("total", ""), "size_bytes"] == after.loc[("volumes", ""), "size_bytes"]


def test_host_refuses_to_remove_an_image_a_container_runs():
    profile = load_profile("ssd")
    engine = Engine(profile)
    host = Host(get_driver("overlay2")(None, profile), engine)
    image = Image("one", [Layer("l0", files={"a": 1})])

    def body():
        yield from host.prepare_image(image)
        yield from host.create_container(0, image)
    engine.env.process(body())
    engine.env.run()
    with pytest.raises(ValueError, match="run by a container"):
        next(host.remove_image("one"))


def test_one_image_scenarios_keep_their_tables():
    """image: gives one image under its own name; its system df is the space table's total."""
    run = sim.run_scenario({"name": "one", "image": {"layers": 3, "files_per_layer": 20},
                            "containers": {"count": 2}, "workload": {"operations": 50}})
    total = run.space[run.space["kind"] == "total"].iloc[0]
    df = run.df.set_index("kind")
    assert df.loc["image", "name"] == "synthetic"
    assert df.loc["total", "size_bytes"] == total["virtual_bytes"]
    assert df.loc["total", "real_bytes"] == total["real_bytes"]


# -- docker history --------------------------------------------------------------------------

HISTORY = [
    {"created": "2026-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
    {"created": "2026-01-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": True},
    {"created": "2026-01-02T00:00:00Z", "created_by": "RUN /bin/sh -c apt-get install -y x # buildkit",
     "comment": "buildkit.dockerfile.v0"},
    {"created": "2026-01-02T00:00:01Z", "created_by": "ENV A=1", "empty_layer": True},
    {"created": "2026-01-02T00:00:02Z", "created_by": "COPY app /srv # buildkit"},
    {"created": "2026-01-02T00:00:03Z", "created_by": "CMD [\"/srv/app\"]", "empty_layer": True},
]


def saved_with_history(path, history=HISTORY):
    """A docker save tar (old layout) whose config has the history and rootfs.diff_ids Docker writes."""
    tars = [layer_tar(rows) for rows in LAYERS]
    diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "history": history,
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(path, "w") as archive:
        names = []
        for index, data in enumerate(tars):
            add_bytes(archive, f"{index:064x}/layer.tar", data)
            names.append(f"{index:064x}/layer.tar")
        add_bytes(archive, config_name, config)
        manifest = [{"Config": config_name, "RepoTags": ["hist:1"], "Layers": names}]
        add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    return path, diff_ids, config_name.removesuffix(".json")


def test_history_of_a_docker_save_tar(tmp_path):
    path, diff_ids, image_id = saved_with_history(tmp_path / "hist.tar")
    report = api.image_history(path)
    (shown,) = report["images"]
    rows = shown["history"]
    assert [row["created_by"] for row in rows] == [entry["created_by"] for entry in HISTORY[::-1]]
    assert [row["image"] for row in rows] == [image_id[:12]] + ["<missing>"] * 5  # built elsewhere
    assert [row["layer"] for row in rows] == ["", diff_ids[2], "", diff_ids[1], "", diff_ids[0]]
    image = load_image(path)
    assert [row["size"] for row in rows] == [0, image.layers[2].size, 0, image.layers[1].size, 0,
                                            image.layers[0].size]
    assert rows[3]["comment"] == "buildkit.dockerfile.v0" and rows[0]["created"] == "2026-01-02T00:00:03Z"
    assert [layer.digest for layer in image.layers] == diff_ids and image.image_id == "sha256:" + image_id


def test_history_of_an_oci_layout_uses_its_config(tmp_path):
    layout = oci_layout(tmp_path / "layout")
    report = api.image_history(layout)
    rows = report["images"][0]["history"]
    assert len(rows) == 3 and all(row["created_by"].endswith("whiteouts") for row in rows)  # no history
    blobs = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / blobs).read_text())
    assert [row["layer"] for row in rows[::-1]] == [d["digest"] for d in manifest["layers"]]
    assert rows[0]["image"] == manifest["config"]["digest"].split(":")[1][:12]


def test_history_without_a_config_digests_the_layer_tars(tmp_path):
    path = docker_save(tmp_path / "plain.tar")
    with tarfile.open(path) as archive:
        expected = ["sha256:" + hashlib.sha256(archive.extractfile(f"{index:064x}/layer.tar").read()).hexdigest()
                    for index in range(len(LAYERS))]
    assert [layer.digest for layer in load_image(path).layers] == expected


def test_history_whose_entries_do_not_match_the_layers_falls_back_to_layers(tmp_path):
    path, _, _ = saved_with_history(tmp_path / "odd.tar", HISTORY[:2])
    rows = api.image_history(path)["images"][0]["history"]
    assert len(rows) == 3 and all(row["layer"] for row in rows)


def test_bad_config_history_is_one_line(tmp_path):
    path, _, _ = saved_with_history(tmp_path / "bad.tar", [{"created_by": 5}])
    result = CliRunner().invoke(main, ["image", "history", str(path)])
    one_line(result, "history[0].created_by is not a str")


def test_history_of_synthetic_images_names_their_bases(tmp_path):
    (tmp_path / "s.yaml").write_text(json.dumps(small()))
    report = api.image_history(tmp_path / "s.yaml", image="app1")
    (shown,) = report["images"]
    assert [row["image"] for row in shown["history"]] == ["app1", "base", "<missing>"]
    assert [row["size"] for row in shown["history"]] == [4000, 10000, 10000]
    assert all(row["layer"].startswith("sha256:") for row in shown["history"])
    everything = api.image_history(tmp_path / "s.yaml")
    assert [entry["name"] for entry in everything["images"]] == ["base", "app1", "app2"]
    result = CliRunner().invoke(main, ["image", "history", str(tmp_path / "s.yaml"), "--image", "app2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "image app2: 3 layers, 22.5 KiB" and lines[1].split() == \
        ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "LAYER", "COMMENT"]
    assert [line.split()[0] for line in lines[2:]] == ["app2", "base", "<missing>"]
    one_line(CliRunner().invoke(main, ["image", "history", str(tmp_path / "s.yaml"), "--image", "ap1"]),
             "no image 'ap1'", "did you mean 'app1'?")


def test_history_json(tmp_path):
    path, _, _ = saved_with_history(tmp_path / "hist.tar")
    result = CliRunner().invoke(main, ["image", "history", str(path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads(json.dumps(api.image_history(path)))


def test_a_config_blob_is_what_names_the_oci_image(tmp_path):
    root = tmp_path / "layout"
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer = write_blob(root, layer_tar(LAYERS[0]), "application/vnd.oci.image.layer.v1.tar")
    config = write_blob(root, json.dumps({"history": [{"created_by": "ADD x"}],
                                          "rootfs": {"diff_ids": [layer["digest"]]}}).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = write_blob(root, json.dumps({"schemaVersion": 2, "config": config, "layers": [layer]}).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    (row,) = api.image_history(root)["images"][0]["history"]
    assert row["created_by"] == "ADD x" and row["image"] == config["digest"].split(":")[1][:12]


def test_synthetic_layers_on_a_real_base(tmp_path):
    """An application built on a real image: its layers are the Debian listing's, then its own;
    a driver's layer limit counts both."""
    debian = str(ROOT / "scenarios" / "data" / "debian-bookworm.csv.gz")
    data = {"name": "on-debian", "images": [{"name": "debian", "from": debian},
                                            {"name": "app", "base": "debian", "layers": 2, "files_per_layer": 30}],
            "containers": {"groups": [{"image": "app", "count": 2}]}, "workload": {"operations": 50}}
    run = sim.run_scenario(data)
    images = run.df[run.df["kind"] == "image"].set_index("name")
    assert images.loc["app", "shared_bytes"] == images.loc["debian", "size_bytes"] == load_image(debian).virtual_size
    (tmp_path / "deep.yaml").write_text(json.dumps({**data, "images": [
        data["images"][0], {"name": "app", "base": "debian", "layers": 124}]}))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "deep.yaml")])
    one_line(result, "deep.yaml:1: images[1]: ", "at most 125 image layers, got 126", "bases' layers included")


def test_node_images_scenario_runs_from_anywhere(monkeypatch, tmp_path):
    """scenarios/node_images.yaml: its real base is found from the scenario's folder, and the prune
    at the end frees exactly what system df called reclaimable when the workload ended."""
    monkeypatch.chdir(tmp_path)
    run = sim.run_scenario(ROOT / "scenarios" / "node_images.yaml",
                           overrides=["sweep.driver.name=[overlay2]", "workload.operations=200"])
    before, after = df_of(run, "workload end"), df_of(run, "end")
    pruned = run.ops[run.ops["op"] == "remove_image"]
    assert sorted(pruned["path"]) == ["alpine", "api4", "debian", "job3", "job4", "python", "web4"]
    assert pruned["bytes"].sum() == before.loc[("images", ""), "reclaimable_bytes"] > 0
    assert after.loc[("images", ""), "size_bytes"] == before.loc[("images", ""), "size_bytes"] - pruned["bytes"].sum()
    assert after.loc[("images", ""), "reclaimable_bytes"] == 0


@settings(max_examples=40)
@given(st.lists(st.integers(min_value=-1, max_value=8), min_size=1, max_size=9),
       st.lists(st.integers(min_value=0, max_value=8), max_size=6), st.randoms(use_true_random=False))
def test_removing_images_frees_each_layer_once(bases, running, rnd):
    """Any forest of images (image i on image bases[i] when that one comes before it): docker rmi
    frees exactly the image's unique size at that moment, reclaimable is what no running image
    holds, and once every image is gone every layer has been freed once."""
    import numpy as np
    from sim.image import synthetic_image
    profile = load_profile("ssd")
    engine = Engine(profile)
    host = Host(get_driver("overlay2")(None, profile), engine)
    images: list[Image] = []
    for index, base in enumerate(bases):
        below = images[base] if 0 <= base < index else None
        images.append(synthetic_image(np.random.default_rng(index), layers=1 + index % 2, files_per_layer=3,
                                      name=f"i{index}", base=below))
    runs = sorted({r for r in running if r < len(images)})
    order = [image.name for image in images]
    rnd.shuffle(order)

    def body():
        for image in images:
            yield from host.prepare_image(image)
        for cid, index in enumerate(runs):
            yield from host.create_container(cid, images[index])
        distinct = sum(size for size, _ in host.layer_bytes().values())
        df = {row["kind"]: row for row in host.system_df() if row["kind"] != "image"}
        in_use = {layer for index in runs for layer in images[index].layers}
        by_identity = {id(layer): layer.size for image in images for layer in image.layers}
        assert df["images"]["size_bytes"] == distinct == sum(by_identity.values())
        assert df["images"]["reclaimable_bytes"] == sum(size for layer, (size, _) in host.layer_bytes().items()
                                                        if layer not in in_use)
        for cid in range(len(runs)):
            yield from host.remove_container(cid)
        freed = 0
        for name in order:
            unique = next(row["unique_bytes"] for row in host.system_df() if row["name"] == name)
            yield from host.remove_image(name)
            step = host.records.table().to_pandas().iloc[-1]
            assert step["op"] == "remove_image" and step["bytes"] == unique
            freed += unique
        assert freed == distinct and not host.layers and not host.images
    engine.env.process(body())
    engine.env.run()


def test_a_sweep_moves_a_field_of_one_listed_image():
    data = {**small(), "sweep": {"images.1.layers": [1, 3]}}
    run = sim.run_scenario(data)
    assert list(run.summary["images.1.layers"]) == [1, 3]
    app1 = run.df[(run.df["kind"] == "image") & (run.df["name"] == "app1") & (run.df["when"] == "workload end")]
    assert list(app1["size_bytes"]) == [24000, 32000]  # the base's 20,000 and 1 or 3 layers of 4 x 1000
    assert data["images"][1]["layers"] == 1  # the scenario itself is not changed


def test_schema_and_validate_cover_the_new_fields():
    text = CliRunner().invoke(main, ["schema"]).output
    for line in ("images[][kind=synthetic].base: str | null = None", "images[][kind=file].path: str = (required)",
                 "containers.groups[].image: str = (required)", "remove_images_at_end: list[str]",
                 "prune_images_at_end: bool = False"):
        assert line in text, line
    result = CliRunner().invoke(main, ["validate", str(ROOT / "scenarios" / "node_images.yaml")])
    assert result.exit_code == 0 and "4 points, 4 runs" in result.output, result.output


@settings(max_examples=60)
@given(files=st.lists(st.lists(st.sampled_from("abcd"), min_size=1, max_size=5), max_size=30),
       dirs=st.lists(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4), max_size=6))
def test_a_layer_adds_its_entries_ancestors_as_one_walk_per_entry_would(files, dirs):
    """Layer.__post_init__ skips entries whose parent's ancestors it has added: the same
    directories, added in the same order (a set's iteration order follows its insertions)."""
    file_paths = {"/".join(parts) + "f": 1 for parts in files}
    dir_paths = {"/".join(parts) for parts in dirs}
    given = set(dir_paths)
    walked = [*file_paths, *given]  # what __post_init__ walks, before it adds to the set
    layer = Layer("l", files=dict(file_paths), dirs=given)
    expected = set(dir_paths)  # made as ``given`` was: the same order so far
    for path in walked:
        parts = path.split("/")
        expected.update("/".join(parts[:end]) for end in range(1, len(parts)))
    assert list(layer.dirs) == list(expected)
