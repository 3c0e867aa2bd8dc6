"""Images from real artefacts: a ``docker save`` tar, an OCI image layout (a directory, or a tar of
one), or a listing in cowsim's manifest format (``layer,path,kind,size,mode,target`` CSV, plain or
gzip-compressed, as ``scenarios/data/make_debian_image.py`` writes it).

Only tar headers are read, never file contents: each layer's paths, sizes, kinds, hard links and
symbolic links. ``.wh.NAME`` becomes a whiteout of ``NAME`` and ``.wh..wh..opq`` makes its
directory opaque, as Docker's layer format says. Device nodes and FIFOs become empty files.
Anything malformed (truncated or corrupt archives, missing or mismatching blobs, names that
leave the root) raises :class:`ImageFormatError` with one line naming the file and the layer.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import IO

from .errors import CowsimError
from .files import IMAGE_JSON_BYTES, ReadError, check_regular, read_capped
from .image import DIR, FILE, Image, Layer, ancestors
from .scenario import MAX_IMAGE_ENTRIES, path_problem
from .units import MAX_FILE_SIZE

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MANIFEST_KINDS = ("file", "dir", "symlink", "hardlink", "whiteout", "opaque")
# Layers of one image: no driver mounts more than 127; reading a layer looks at those below it.
MAX_LAYERS = 1000


class ImageFormatError(CowsimError):
    """An image file that cannot be read: ``PATH: [layer X: ]what is wrong``."""


def _reason(error: Exception) -> str:
    """An exception's message on one line (tarfile's "could not be opened" lists every method)."""
    text = str(error)
    if "could not be opened successfully" in text:
        return "neither a tar archive nor a gzip, bzip2 or xz compressed one"
    return " ".join(text.split()) or type(error).__name__


def clean_name(name: str, where: str) -> str:
    """A member name as a relative path (``./usr/bin/`` -> ``usr/bin``); refuses names that
    would land outside the root (absolute, or with ``..``)."""
    if name.startswith("/"):
        raise ImageFormatError(f"{where}: absolute path {name!r} in a layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageFormatError(f"{where}: path {name!r} leaves the root (..)")
    path = "/".join(parts)
    problem = path_problem(path)
    if problem:
        raise ImageFormatError(f"{where}: {shown(path[:80])}...: {problem}")
    return path


def shown(path: str) -> str:
    """A member name as it can be printed: bytes that are not UTF-8 as \\xNN, newlines, escape
    sequences and other control characters escaped (a name must not rewrite the terminal)."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class LayerBuilder:
    """Collects one layer's entries in archive order (a later entry replaces an earlier one)."""

    def __init__(self, name: str, where: str, lower: Image | None):
        self.layer = Layer(name=name)
        self.where = where
        self.lower = lower
        # entries in the layers below and this one: an image is held in memory whole
        self.entries = 0 if lower is None else sum(layer.entries for layer in lower.layers)

    def _drop(self, path: str) -> None:
        layer = self.layer
        for collection in (layer.files, layer.symlinks, layer.hardlinks):
            collection.pop(path, None)
        layer.dirs.discard(path)
        layer.whiteouts.discard(path)

    def add(self, path: str, kind: str, size: int = 0, target: str = "") -> None:
        layer = self.layer
        self.entries += 1
        if self.entries > MAX_IMAGE_ENTRIES:
            raise ImageFormatError(f"{self.where}: more than {MAX_IMAGE_ENTRIES:,} entries in the image "
                                   f"(about 350 bytes of memory each)")
        if not 0 <= size <= MAX_FILE_SIZE:
            raise ImageFormatError(f"{self.where}: {shown(path)}: a size of {size:,} bytes, more than "
                                   f"{MAX_FILE_SIZE:,} (1 TiB), the largest file simulated")
        if path == "":
            if kind in ("dir", "opaque"):
                if kind == "opaque":
                    layer.opaque_dirs.add("")
                return
            raise ImageFormatError(f"{self.where}: a {kind} at the root of the layer")
        if kind == "opaque":
            layer.opaque_dirs.add(path)
            return
        self._drop(path)
        if kind == "dir":
            layer.dirs.add(path)
        elif kind == "whiteout":
            layer.whiteouts.add(path)
        elif kind == "symlink":
            layer.files[path] = len(target.encode())
            layer.symlinks[path] = target
        elif kind == "hardlink":
            layer.files[path] = self._link_size(path, target)
            layer.hardlinks[path] = target
        else:
            layer.files[path] = size

    def _link_size(self, path: str, target: str) -> int:
        """A hard link's size: its target's, in this layer or (rarely) in the layers below."""
        if target in self.layer.files:
            return self.layer.files[target]
        found = self.lower.merged.get(target) if self.lower is not None else None
        if found is not None and found[0] == FILE:
            return found[1]
        raise ImageFormatError(f"{self.where}: hard link {path!r} points to {target!r}, which is not a file")

    def add_member(self, member: tarfile.TarInfo) -> None:
        path = clean_name(member.name, self.where)
        head, _, base = path.rpartition("/")
        if base == OPAQUE:
            return self.add(head, "opaque")
        if base.startswith(WHITEOUT + WHITEOUT):
            return None  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image
        if base.startswith(WHITEOUT):
            name = base[len(WHITEOUT):]
            return self.add(f"{head}/{name}" if head else name, "whiteout")
        if member.isdir():
            return self.add(path, "dir")
        if member.issym():
            return self.add(path, "symlink", target=member.linkname)
        if member.islnk():
            return self.add(path, "hardlink", target=clean_name(member.linkname, self.where))
        # Regular files; device nodes and FIFOs hold no data.
        return self.add(path, "file", member.size if member.isreg() else 0)

    def finish(self) -> Layer:
        layer = self.layer
        # A whiteout and an entry of the same path in one layer (Docker never writes both):
        # the whiteout removes the lower entry first, then the layer's own entry stands; for a
        # directory that is what an opaque directory means.
        for path in [p for p in layer.whiteouts if p in layer.files]:
            layer.whiteouts.discard(path)
        below = {a for p in [*layer.files, *layer.dirs, *layer.whiteouts, *layer.opaque_dirs] for a in ancestors(p)}
        for path in [p for p in layer.whiteouts if p in layer.dirs or p in below]:
            layer.whiteouts.discard(path)
            layer.opaque_dirs.add(path)
        try:
            layer.__post_init__()
        except ValueError as error:
            raise ImageFormatError(f"{self.where}: {error}") from None
        return layer


def read_layer_tar(fileobj: IO[bytes], name: str, where: str, lower: Image | None) -> Layer:
    """One layer from a (possibly compressed) tar stream, reading headers only."""
    magic = fileobj.read(4)
    fileobj.seek(0)
    if magic == ZSTD_MAGIC:
        raise ImageFormatError(f"{where}: zstd-compressed layers are not supported (use gzip or none)")
    builder = LayerBuilder(name, where, lower)
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
            member = archive.next()
            while member is not None:
                builder.add_member(member)
                member = archive.next()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as error:
        raise ImageFormatError(f"{where}: truncated or not a tar archive: {_reason(error)}") from None
    return builder.finish()


# -- where the archive's files are: a directory, or a tar -------------------------------------------
class DirectoryStore:
    def __init__(self, root: Path):
        self.root = root

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def open(self, name: str) -> IO[bytes]:
        return open(self.root / name, "rb")


class TarStore:
    """Files inside an outer tar (``docker save`` output, or an OCI layout saved as a tar)."""

    def __init__(self, archive: tarfile.TarFile, where: str):
        self.archive = archive
        self.members = {}
        for member in archive.getmembers():
            if member.isfile():
                self.members[clean_name(member.name, where)] = member

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        return self.archive.extractfile(self.members[name])


def _read_json(store, name: str, where: str):
    if not store.has(name):
        raise ImageFormatError(f"{where}: missing {name}")
    with store.open(name) as handle:
        try:
            return json.loads(read_capped(handle, IMAGE_JSON_BYTES, f"{where}: {name}", "the document"))
        except ReadError as error:
            raise ImageFormatError(str(error)) from None
        except (ValueError, UnicodeDecodeError) as error:
            raise ImageFormatError(f"{where}: {name} is not valid JSON: {_reason(error)}") from None
        except RecursionError:
            raise ImageFormatError(f"{where}: {name} is nested too deeply") from None


def _blob_name(digest: str, where: str) -> str:
    algorithm, _, hexdigest = str(digest).partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise ImageFormatError(f"{where}: unsupported or malformed digest {digest!r}")
    return f"blobs/sha256/{hexdigest}"


def _check_blob(store, name: str, descriptor: dict, where: str) -> None:
    """A blob must exist and match the size and digest its descriptor gives."""
    if not store.has(name):
        raise ImageFormatError(f"{where}: missing blob {descriptor.get('digest')}")
    hasher, size = hashlib.sha256(), 0
    with store.open(name) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
            size += len(chunk)
    if "size" in descriptor and size != descriptor["size"]:
        raise ImageFormatError(f"{where}: blob {descriptor['digest']} holds {size} bytes, "
                               f"its descriptor says {descriptor['size']}")
    if "sha256:" + hasher.hexdigest() != descriptor.get("digest"):
        raise ImageFormatError(f"{where}: blob {descriptor.get('digest')} does not match its digest")


def _stack(store, layer_refs: list[tuple[str, str, str]], where: str, image_name: str,
           config: Config | None = None) -> Image:
    """The image from its layer files, bottom first: (file name in the store, layer name, its
    digest or "" when the artefact names none), with what its config says."""
    if len(layer_refs) > MAX_LAYERS:
        raise ImageFormatError(f"{where}: {len(layer_refs):,} layers, more than {MAX_LAYERS:,}")
    config = config or Config()
    diff_ids = config.diff_ids if len(config.diff_ids) == len(layer_refs) else [digest for _, _, digest in layer_refs]
    layers: list[Layer] = []
    for index, ((name, label, _), diff_id) in enumerate(zip(layer_refs, diff_ids)):
        if not store.has(name):
            raise ImageFormatError(f"{where}: missing layer {name}")
        lower = Image(image_name, list(layers)) if layers else None
        with store.open(name) as handle:
            layer = read_layer_tar(handle, label, f"{where}: layer {index} ({label})", lower)
        if not diff_id:  # an old `docker save` layer.tar without a config to name it: its own digest
            with store.open(name) as handle:
                diff_id = "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
        layer.diff_id = diff_id
        layers.append(layer)
    if not layers:
        raise ImageFormatError(f"{where}: the image has no layers")
    return Image(image_name, layers, config.history, config.image_id)


@dataclass
class Config:
    """What an image's config says that cowsim uses: its ID (the config's digest), the digests
    of its layers' uncompressed tars (``rootfs.diff_ids``) and its history."""

    image_id: str = ""
    diff_ids: list[str] = dataclass_field(default_factory=list)
    history: list[dict] = dataclass_field(default_factory=list)


HISTORY_FIELDS = {"created": str, "created_by": str, "comment": str, "author": str, "empty_layer": bool}


def _read_config(store, name: str, where: str) -> Config:
    """An image config (docker save's ``Config``, an OCI manifest's ``config``); a config the
    archive lacks is an empty one (docker save tars made by hand often have none)."""
    if not store.has(name):
        return Config()
    with store.open(name) as handle:
        image_id = "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
    document = _read_json(store, name, where)
    if not isinstance(document, dict):
        raise ImageFormatError(f"{where}: {name}: the image config is not a JSON object")
    rootfs = document.get("rootfs") if isinstance(document.get("rootfs"), dict) else {}
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageFormatError(f"{where}: {name}: rootfs.diff_ids is not a list of digests")
    history = document.get("history") or []
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise ImageFormatError(f"{where}: {name}: history is not a list of entries")
    entries = []
    for index, entry in enumerate(history):
        for key, kind in HISTORY_FIELDS.items():
            if key in entry and not isinstance(entry[key], kind):
                raise ImageFormatError(f"{where}: {name}: history[{index}].{key} is not a {kind.__name__}")
        entries.append({key: entry[key] for key in HISTORY_FIELDS if key in entry})
    return Config(image_id, list(diff_ids), entries)


def _docker_save(store, where: str, image_name: str) -> Image:
    manifest = _read_json(store, "manifest.json", where)
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict) \
            or not isinstance(manifest[0].get("Layers"), list):
        raise ImageFormatError(f"{where}: manifest.json: expected a list of images with Layers")
    entry = manifest[0]
    tags = entry.get("RepoTags") or [image_name]
    refs = []
    for name in entry["Layers"]:
        name = clean_name(str(name), f"{where}: manifest.json")
        # Older Docker: <id>/layer.tar; Docker 25+: blobs/sha256/<digest> (the tar's own digest).
        blob = name.startswith("blobs/sha256/")
        label = name.split("/")[-1] if blob else name.split("/")[0]
        refs.append((name, label[:12], "sha256:" + name.split("/")[-1] if blob else ""))
    config = _read_config(store, clean_name(str(entry.get("Config") or ""), f"{where}: manifest.json"), where) \
        if entry.get("Config") else None
    return _stack(store, refs, where, str(tags[0]), config)


def _oci_manifest(store, where: str) -> dict:
    """The image manifest the layout's index.json names (following nested indexes)."""
    if not store.has("oci-layout"):
        raise ImageFormatError(f"{where}: missing oci-layout (not an OCI image layout)")
    index = _read_json(store, "index.json", where)
    seen = 0
    while True:
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not manifests or not isinstance(manifests[0], dict) or "digest" not in manifests[0]:
            raise ImageFormatError(f"{where}: index lists no manifest")
        descriptor = manifests[0]
        name = _blob_name(descriptor["digest"], where)
        _check_blob(store, name, descriptor, where)
        document = _read_json(store, name, where)
        seen += 1
        if isinstance(document, dict) and "layers" in document:
            return document
        if seen > 8:
            raise ImageFormatError(f"{where}: indexes nest too deep")
        index = document


def _oci_layout(store, where: str, image_name: str) -> Image:
    manifest = _oci_manifest(store, where)
    if not isinstance(manifest["layers"], list):
        raise ImageFormatError(f"{where}: the image manifest's layers is not a list of descriptors")
    if len(manifest["layers"]) > MAX_LAYERS:
        raise ImageFormatError(f"{where}: {len(manifest['layers']):,} layers, more than {MAX_LAYERS:,}")
    refs = []
    for descriptor in manifest["layers"]:
        if not isinstance(descriptor, dict) or "digest" not in descriptor:
            raise ImageFormatError(f"{where}: a layer descriptor has no digest")
        name = _blob_name(descriptor["digest"], where)
        _check_blob(store, name, descriptor, where)
        refs.append((name, descriptor["digest"].split(":")[1][:12], descriptor["digest"]))
    config = None
    descriptor = manifest.get("config")
    if isinstance(descriptor, dict) and "digest" in descriptor:
        config = _read_config(store, _blob_name(descriptor["digest"], where), where)
    return _stack(store, refs, where, image_name, config)


# -- cowsim's listing format ------------------------------------------------------------------------
def read_listing(path: Path) -> Image:
    """An image from a ``layer,path,kind,size,mode,target`` CSV (``.csv`` or ``.csv.gz``)."""
    where = str(path)
    opener = gzip.open if path.suffix == ".gz" else open
    finished: list[Layer] = []  # the layers below the current one, each finished once
    current: LayerBuilder | None = None
    try:
        with opener(path, "rt", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != ["layer", "path", "kind", "size", "mode", "target"]:
                raise ImageFormatError(f"{where}:1: expected the header layer,path,kind,size,mode,target")
            for row in reader:
                line = f"{where}:{reader.line_num}"
                if len(row) != 6:
                    raise ImageFormatError(f"{line}: expected 6 fields, got {len(row)}")
                layer_text, name, kind, size_text, _mode, target = row
                if kind not in MANIFEST_KINDS:
                    raise ImageFormatError(f"{line}: kind: {kind!r} is not one of {', '.join(MANIFEST_KINDS)}")
                try:
                    index, size = int(layer_text), int(size_text or 0)
                except ValueError:
                    raise ImageFormatError(f"{line}: layer and size must be whole numbers") from None
                if index < 0 or size < 0:
                    raise ImageFormatError(f"{line}: layer and size must not be negative")
                known = len(finished) + (current is not None)
                if index != known - 1:
                    if index != known:
                        raise ImageFormatError(f"{line}: layer {index} follows layer {known - 1} (a layer's rows "
                                               f"come together, layers in order)")
                    if index >= MAX_LAYERS:
                        raise ImageFormatError(f"{line}: layer {index}: more than {MAX_LAYERS:,} layers")
                    if current is not None:
                        finished.append(current.finish())
                    lower = Image(path.name, list(finished)) if finished else None
                    current = LayerBuilder(f"layer{index}", f"{where}: layer {index}", lower)
                if kind == "hardlink":
                    target = clean_name(target, line)
                current.add(clean_name(name, line), kind, size, target)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as error:
        raise ImageFormatError(f"{where}: cannot read the listing: {_reason(error)}") from None
    if current is None:
        raise ImageFormatError(f"{where}: the listing has no entries")
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    stack = [*finished, current.finish()]
    for layer in stack:  # a content digest stands in for the layer's blob digest
        layer.name = Image(name, [layer]).digest()[:12]
    return Image(name, stack)


def load_image(path: str | Path) -> Image:
    """An image from a ``docker save`` tar, an OCI layout (directory or tar) or a listing."""
    path = Path(path)
    where = str(path)
    if path.is_dir():
        return _oci_layout(DirectoryStore(path), where, path.name)
    if not path.exists():
        raise ImageFormatError(f"{where}: no such file or directory")
    try:
        check_regular(path, what="image file")
    except ReadError as error:
        raise ImageFormatError(str(error)) from None
    if path.name.endswith((".csv", ".csv.gz")):
        return read_listing(path)
    try:
        archive = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ImageFormatError(f"{where}: not a docker save tar, an OCI layout or a listing: "
                               f"{_reason(error)}") from None
    with archive:
        try:
            store = TarStore(archive, where)
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise ImageFormatError(f"{where}: truncated or corrupt archive: {_reason(error)}") from None
        name = path.name.removesuffix(".tar")
        if store.has("manifest.json"):
            return _docker_save(store, where, name)
        if store.has("oci-layout"):
            return _oci_layout(store, where, name)
        raise ImageFormatError(f"{where}: neither manifest.json (docker save) nor oci-layout (OCI) inside")


# -- inspection -------------------------------------------------------------------------------------
SIZE_BUCKETS = (0, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20)


def _bucket_label(index: int) -> str:
    from .units import format_size
    if index == 0:
        return "0"
    low = SIZE_BUCKETS[index - 1]
    if index == len(SIZE_BUCKETS):
        return f">= {format_size(low)}"
    return f"{format_size(max(low, 1))} - {format_size(SIZE_BUCKETS[index])}"


def inspect_image(image: Image, top: int = 10) -> dict:
    """What ``cowsim image inspect`` shows: layers, sizes, distributions, shadowed and largest files
    (their names escaped where they are not printable, see :func:`shown`)."""
    import bisect

    layers = []
    for index, layer in enumerate(image.layers):
        layers.append({"layer": index, "digest": shown(layer.name), "entries": layer.entries,
                       "files": len(layer.files) - len(layer.symlinks) - len(layer.hardlinks),
                       "dirs": len(layer.dirs), "symlinks": len(layer.symlinks), "hardlinks": len(layer.hardlinks),
                       "whiteouts": len(layer.whiteouts), "opaque_dirs": len(layer.opaque_dirs),
                       "bytes": layer.size})
    merged = image.merged
    links = image.symlinks
    regular = [(p, s, i) for p, (k, s, i) in merged.items() if k == FILE and p not in links]
    # File sizes: [0], (0, 1K), [1K, 4K) ... one bucket per row, with counts and bytes.
    counts, totals = Counter(), Counter()
    for _, size, _ in regular:
        bucket = 0 if size == 0 else bisect.bisect_right(SIZE_BUCKETS, size)
        counts[bucket] += 1
        totals[bucket] += size
    sizes = [{"bucket": _bucket_label(b), "files": counts[b], "bytes": totals[b]} for b in sorted(counts)]
    depth = Counter(p.count("/") for p, _, _ in regular)
    depths = [{"depth": d, "files": depth[d]} for d in sorted(depth)]
    shadowed = []
    for index in range(1, len(image.layers)):
        below = Image(image.name, image.layers[:index]).merged
        for path, size in image.layers[index].files.items():
            found = below.get(path)
            if found is not None and found[0] == FILE:
                shadowed.append({"path": shown(path), "layer": index, "size": size, "lower_layer": found[2],
                                 "lower_size": found[1]})
    largest = sorted(regular, key=lambda row: (-row[1], row[0]))[:top]
    return {
        "name": image.name, "layers": layers, "virtual_size": image.virtual_size,
        "merged_size": image.merged_size, "files": len(regular), "symlinks": len(links),
        "dirs": sum(1 for k, _, _ in merged.values() if k == DIR),
        "file_sizes": sizes, "file_depths": depths,
        "shadowed_files": len(shadowed), "shadowed_bytes": sum(r["lower_size"] for r in shadowed),
        "shadowed": sorted(shadowed, key=lambda r: (-r["lower_size"], r["path"]))[:top],
        "largest": [{"path": shown(p), "size": s, "layer": i} for p, s, i in largest],
    }


__all__ = ["ImageFormatError", "load_image", "read_listing", "read_layer_tar", "inspect_image", "clean_name"]
