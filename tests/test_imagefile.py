"""Real images: docker save tars and OCI layouts read from tar headers, checked against really
extracting their layers; the shipped Debian listing; clear errors for broken archives."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import api
from sim.cli import main
from sim.drivers import REGISTRY
from sim.errors import ScenarioError
from sim.imagefile import ImageFormatError, load_image

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / "scenarios" / "data" / "debian-bookworm.csv.gz"

# Each layer: (kind, path, payload) rows in archive order. Whiteouts and opaque markers are
# written as Docker writes them (.wh.NAME, .wh..wh..opq).
LAYERS = [
    [("dir", "etc", None), ("file", "etc/passwd", 100), ("file", "etc/old", 50),
     ("dir", "usr/bin", None), ("file", "usr/bin/a", 300), ("hardlink", "usr/bin/b", "usr/bin/a"),
     ("symlink", "bin", "usr/bin"), ("file", "var/cache/apt/pkg1", 1000), ("file", "var/cache/apt/sub/x", 10),
     ("file", "var/lib/data", 200), ("file", "opt/tree/deep/f", 5), ("fifo", "run/initctl", None)],
    [("whiteout", "etc/old", None), ("opaque", "var/cache/apt", None), ("file", "var/cache/apt/pkg2", 20),
     ("file", "etc/passwd", 120), ("whiteout", "opt/tree", None), ("hardlink", "usr/bin/c", "usr/bin/a"),
     ("symlink", "lib", "usr/lib"), ("file", "opt/new", 7)],
    [("file", "var/cache/apt/sub/y", 33), ("whiteout", "usr/bin/b", None), ("opaque", "etc", None),
     ("file", "etc/hosts", 9), ("file", "./usr/bin/d", 4096), ("dir", "var/lib/", None)],
]


def layer_tar(rows, compress: bool = False) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for kind, path, payload in rows:
            head, _, base = path.rpartition("/")
            info = tarfile.TarInfo(path)
            data = None
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "file":
                data = os.urandom(payload)
                info.size = payload
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "whiteout":
                info.name = f"{head}/.wh.{base}" if head else f".wh.{base}"
            elif kind == "opaque":
                info.name = f"{path}/.wh..wh..opq"
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    data = raw.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def docker_save(path: Path, layers=LAYERS, blobs: bool = False) -> Path:
    """A ``docker save`` tar: ``<id>/layer.tar`` per layer, or (Docker 25+) ``blobs/sha256/<digest>``."""
    with tarfile.open(path, "w") as archive:
        names = []
        for index, rows in enumerate(layers):
            data = layer_tar(rows)
            name = f"blobs/sha256/{hashlib.sha256(data).hexdigest()}" if blobs else f"{index:064x}/layer.tar"
            add_bytes(archive, name, data)
            names.append(name)
        add_bytes(archive, "config.json", b"{}")
        manifest = [{"Config": "config.json", "RepoTags": ["test:latest"], "Layers": names}]
        add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    return path


def write_blob(root: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(root: Path, layers=LAYERS) -> Path:
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptors = []
    for index, rows in enumerate(layers):
        compressed = index % 2 == 1  # gzip and plain layers in one image
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compressed else "")
        descriptors.append(write_blob(root, layer_tar(rows, compressed), media))
    config = write_blob(root, b'{"architecture": "amd64", "os": "linux"}', "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "config": config, "layers": descriptors}
    entry = write_blob(root, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return root


def extracted_view(layer_tars: list[bytes], root: Path) -> dict[str, tuple[str, int]]:
    """Really extract the layers in order, applying whiteouts and opaque directories as the
    overlay2 driver's layer apply does; then walk the tree: path -> (kind, size), where a
    symlink is a file of its target's length (lstat) and a hard link has its data's size."""
    root.mkdir()
    for data in layer_tars:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members = archive.getmembers()
            kept = []
            for member in members:
                head, _, base = member.name.removeprefix("./").rstrip("/").rpartition("/")
                target = root / head
                if base == ".wh..wh..opq":
                    for child in target.iterdir() if target.is_dir() else []:
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                elif base.startswith(".wh."):
                    gone = target / base[4:]
                    if gone.is_dir() and not gone.is_symlink():
                        shutil.rmtree(gone)
                    elif os.path.lexists(gone):
                        gone.unlink()
                else:
                    kept.append(member)
                    # An entry replaces what was there (tarfile would write through a symlink).
                    existing = root / member.name.removeprefix("./").rstrip("/")
                    if os.path.islink(existing) or (os.path.lexists(existing) and not member.isdir()
                                                    and not existing.is_dir()):
                        existing.unlink()
            archive.extractall(root, members=kept, filter="tar")
    view = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            relative = os.path.relpath(full, root)
            view[relative] = ("dir", 0) if os.path.isdir(full) and not os.path.islink(full) else ("file", info.st_size)
    return view


def model_view(image) -> dict[str, tuple[str, int]]:
    return {path: (kind, size) for path, (kind, size, _) in image.merged.items() if path}


@pytest.mark.parametrize("fmt", ["docker_save", "oci_dir", "oci_tar"])
def test_merged_view_matches_extracting_the_layers(tmp_path, fmt):
    if fmt == "docker_save":
        path = docker_save(tmp_path / "image.tar")
    else:
        path = oci_layout(tmp_path / "layout")
        if fmt == "oci_tar":
            with tarfile.open(tmp_path / "layout.tar", "w") as archive:
                archive.add(path, arcname=".")
            path = tmp_path / "layout.tar"
    image = load_image(path)
    expected = extracted_view([layer_tar(rows) for rows in LAYERS], tmp_path / "rootfs")
    assert model_view(image) == expected
    # The features under test really occur: whiteouts, opaque dirs, hard and symbolic links.
    assert image.layers[1].whiteouts == {"etc/old", "opt/tree"}
    assert image.layers[1].opaque_dirs == {"var/cache/apt"}
    assert image.layers[0].hardlinks == {"usr/bin/b": "usr/bin/a"}
    assert image.layers[1].hardlinks == {"usr/bin/c": "usr/bin/a"}  # to a lower layer's file
    assert image.symlinks == {"bin": "usr/bin", "lib": "usr/lib"}
    assert "var/cache/apt/pkg1" not in image.merged and "etc/passwd" not in image.merged
    # A hard link's data counts once in the layer's size, as Docker counts it.
    assert image.layers[0].size == 100 + 50 + 300 + len("usr/bin") + 1000 + 10 + 200 + 5
    assert image.layers[1].size == 20 + 120 + len("usr/lib") + 7


def test_docker_save_names_layers_and_image(tmp_path):
    image = load_image(docker_save(tmp_path / "image.tar"))
    assert image.name == "test:latest"
    assert [layer.name for layer in image.layers] == [f"{i:064x}"[:12] for i in range(3)]
    path = docker_save(tmp_path / "blobs.tar", blobs=True)  # Docker 25+ layout
    newer = load_image(path)
    with tarfile.open(path) as archive:
        listed = json.load(archive.extractfile("manifest.json"))[0]["Layers"]
    assert [layer.name for layer in newer.layers] == [name.split("/")[-1][:12] for name in listed]
    assert model_view(newer) == model_view(image)


def layer_blobs(layout: Path) -> list[Path]:
    blobs = layout / "blobs" / "sha256"
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((blobs / entry).read_text())
    return [blobs / layer["digest"].split(":")[1] for layer in manifest["layers"]]


def broken_cases(tmp_path: Path):
    save = docker_save(tmp_path / "ok.tar")
    data = save.read_bytes()
    (tmp_path / "truncated.tar").write_bytes(data[: len(data) // 2])
    yield tmp_path / "truncated.tar", "truncated"
    docker_save(tmp_path / "traversal.tar", [[("file", "../escape", 3)]])
    yield tmp_path / "traversal.tar", "leaves the root"
    docker_save(tmp_path / "absolute.tar", [[("file", "/etc/shadow", 3)]])
    yield tmp_path / "absolute.tar", "absolute path"
    docker_save(tmp_path / "badlink.tar", [[("hardlink", "a", "missing")]])
    yield tmp_path / "badlink.tar", "hard link"
    layout = oci_layout(tmp_path / "missing")
    layer_blobs(layout)[1].unlink()
    yield layout, "missing blob"
    layout = oci_layout(tmp_path / "corrupt")
    layer_blobs(layout)[0].write_bytes(b"x" * 10)
    yield layout, "holds 10 bytes"
    (tmp_path / "notar.tar").write_bytes(b"hello\n" * 100)
    yield tmp_path / "notar.tar", "neither a tar archive"
    (tmp_path / "bad.csv").write_text("layer,path,kind,size,mode,target\n0,etc,dir,0,0755,\n0,x,weird,1,0644,\n")
    yield tmp_path / "bad.csv", "bad.csv:3: kind"


def test_broken_images_give_one_line_errors(tmp_path):
    runner = CliRunner()
    for path, words in broken_cases(tmp_path):
        with pytest.raises(ImageFormatError, match=words):
            load_image(path)
        result = runner.invoke(main, ["image", "inspect", str(path)])
        assert result.exit_code == 2, (path, result.output)
        message = result.output.strip()
        assert message.startswith("cowsim: error: ") and "\n" not in message and str(path) in message
        assert "Traceback" not in result.output


def test_inspect_reports_layers_shadowing_and_largest(tmp_path):
    path = docker_save(tmp_path / "image.tar")
    result = CliRunner().invoke(main, ["image", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [row["whiteouts"] for row in report["layers"]] == [0, 2, 1]
    assert report["virtual_size"] == sum(row["bytes"] for row in report["layers"])
    assert report["shadowed_files"] == 1 and report["shadowed"][0]["path"] == "etc/passwd"
    assert report["largest"][0] == {"path": "usr/bin/d", "size": 4096, "layer": 2}
    assert sum(row["files"] for row in report["file_sizes"]) == report["files"]
    text = CliRunner().invoke(main, ["image", "inspect", str(path)])
    assert text.exit_code == 0 and "largest files" in text.output and "usr/bin/d" in text.output


def test_shipped_debian_listing():
    image = load_image(DEBIAN)
    assert DEBIAN.stat().st_size < 2 * 2**20
    assert len(image.layers) == 2
    assert 5000 < len(image.files) and image.merged["usr/bin/python3.11"][2] == 1
    assert image.symlinks["bin"] == "usr/bin"  # merged /usr
    assert image.layers[1].files["var/lib/dpkg/status"] > image.layers[0].files["var/lib/dpkg/status"]


def test_scenario_image_from(tmp_path):
    for spelling in ({"from": str(DEBIAN)}, {"kind": "file", "path": str(DEBIAN)}):
        result = api.run_scenario({"image": spelling, "workload": {"operations": 30}})
        assert result.summary["ops"].iloc[0] == 30
    with pytest.raises(ScenarioError, match="image.layers: unknown field 'layers'"):
        api.run_scenario({"image": {"from": str(DEBIAN), "layers": 3}})


@pytest.mark.parametrize("driver", list(REGISTRY))
def test_debian_image_runs_under_every_driver(driver):
    scenario = {"name": "debian", "driver": {"name": driver}, "image": {"from": str(DEBIAN)},
                "containers": {"count": 2},
                "workload": {"kind": "mix", "operations": 200,
                             "ops": {"read": 0.5, "write": 0.3, "create": 0.1, "stat": 0.1}}}
    summary = api.run_scenario(scenario).summary.iloc[0]
    assert summary["ops"] == 200
    if driver == "vfs":  # every container is a full copy made up front: nothing left to copy up
        assert summary["copy_ups"] == 0
        assert summary["real_bytes"] >= 2 * load_image(DEBIAN).merged_size
    else:
        assert summary["copy_ups"] > 0 and summary["copy_up_bytes"] > 0


@pytest.mark.parametrize("name", ["debian_mix", "debian_trace"])
def test_example_scenarios_validate(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # their paths are relative to the scenario file, not to where cowsim runs
    points = api.validate(ROOT / "scenarios" / f"{name}.yaml")
    assert len(points) in (len(REGISTRY), 2 * len(REGISTRY))
    assert Path(points[0][1].image.path).exists()


def test_scenario_with_a_bad_image_or_trace_stops_before_running(tmp_path):
    deep = docker_save(tmp_path / "deep.tar", [[("file", f"f{i}", 1)] for i in range(126)])
    cases = [({"from": str(tmp_path / "missing.tar")}, {"kind": "mix"}, "image: .*missing.tar: no such file"),
             ({"from": str(deep)}, {"kind": "mix"}, "image: .*allows at most 125 image layers, got 126"),
             ({"from": str(DEBIAN)}, {"kind": "trace", "path": str(tmp_path / "none.strace")},
              "workload.path: .*none.strace: no such trace file")]
    for image, workload, message in cases:
        scenario = tmp_path / "bad.yaml"
        scenario.write_text(json.dumps({"name": "bad", "image": image, "workload": workload}))
        result = CliRunner().invoke(main, ["run", str(scenario), "-o", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and str(scenario) in result.output
        assert re.search(message, result.output), result.output
        assert not (tmp_path / "out").exists()


# Random layer stacks over a small namespace (names keep one type: f* files or links, d* dirs),
# so that every mix of writes, links, whiteouts and opaque directories is a valid archive.
DIRS = ["d0", "d0/d1", "d2"]
FILES = [f"{d}/f{i}" if d else f"f{i}" for d in ["", *DIRS] for i in range(3)]
ACTIONS = st.sampled_from(["none", "none", "file", "symlink", "hardlink", "whiteout"])
DIR_ACTIONS = st.sampled_from(["none", "none", "dir", "whiteout", "opaque"])


@st.composite
def layer_stacks(draw):
    stack = []
    for _ in range(draw(st.integers(1, 4))):
        rows, written = [], []
        for path in DIRS:
            action = draw(DIR_ACTIONS)
            if action != "none":
                rows.append((action, path, None))
        for path in FILES:
            action = draw(ACTIONS)
            if action == "file":
                rows.append(("file", path, draw(st.integers(0, 3000))))
                written.append(path)
            elif action == "symlink":
                rows.append(("symlink", path, draw(st.sampled_from(["f0", "../x", "/etc/passwd", "d0/d1"]))))
            elif action == "hardlink" and written:
                rows.append(("hardlink", path, draw(st.sampled_from(written))))
            elif action == "whiteout":
                rows.append(("whiteout", path, None))
        # As Docker writes a layer: the parent directories of every entry (and an opaque
        # directory itself) come first.
        parents = sorted({"/".join(p.split("/")[:i]) for kind, p, _ in rows
                          for i in range(1, p.count("/") + 1 + (kind == "opaque"))})
        stack.append([("dir", p, None) for p in parents if ("dir", p, None) not in rows] + rows)
    return stack


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stack=layer_stacks())
def test_random_stacks_merge_as_extraction_does(tmp_path_factory, stack):
    tmp = tmp_path_factory.mktemp("stack")
    image = load_image(docker_save(tmp / "image.tar", stack))
    assert model_view(image) == extracted_view([layer_tar(rows) for rows in stack], tmp / "rootfs")
