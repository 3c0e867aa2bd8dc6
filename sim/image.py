"""Images as stacks of layer diffs, their merged view, and a seeded synthetic generator.

Paths are relative and slash-separated (``usr/lib/x.so``); the root is ``""``.
A layer is a diff: the files and directories it adds or changes, its whiteouts (deletions of
lower entries) and its opaque directories (which hide everything below them in lower layers).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np

FILE, DIR = "file", "dir"


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> list[str]:
    """Proper ancestors of ``path``, top-down, without the root: ``a/b/c`` -> ``[a, a/b]``."""
    found = []
    end = path.find("/")
    while end != -1:
        found.append(path[:end])
        end = path.find("/", end + 1)
    return found


@lru_cache(maxsize=1 << 16)
def prefixes(path: str) -> tuple[str, ...]:
    """Every component prefix of ``path``, top-down, ending with ``path`` itself (cached: every
    operation's lookup walks them, and workloads revisit the same paths)."""
    return (*ancestors(path), path) if path else ()


def is_below(path: str, top: str) -> bool:
    """True when ``path`` is ``top`` or lies inside it."""
    return top == "" or path == top or path.startswith(top + "/")


@dataclass(slots=True)
class Entry:
    """What a name resolves to in a container's view. Never changed once made: the image's own
    entries (``Image.entries``) are shared by every view of the image."""

    kind: str
    size: int
    layer: int | None  # None: the upper layer; otherwise the image layer index
    lower_path: str  # where the lower data lives (differs after a redirected directory rename)

    def fields(self) -> tuple:
        """``Entry(*entry.fields())`` is a copy; a plain tuple of them is what the lookups memo
        holds (the garbage collector stops tracking such tuples, not Entry objects)."""
        return (self.kind, self.size, self.layer, self.lower_path)


@dataclass(eq=False)
class Layer:
    """One layer diff. Parent directories of every entry exist in the layer (as on disk).

    Symbolic links and hard links are files of ``files`` too, so that every driver copies them
    up like files: a symlink's size is the length of its target (what ``lstat`` reports and what
    a copy-up writes), a hard link's size is its target's. ``symlinks`` and ``hardlinks`` say
    which files they are (path -> target); a hard link's data is stored once, so :attr:`size`
    counts it once, as Docker's layer size does.
    """

    name: str
    files: dict[str, int] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    whiteouts: set[str] = field(default_factory=set)
    opaque_dirs: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)
    # "sha256:<hex>" of the layer's uncompressed tar as a real image names it (its config's
    # rootfs.diff_ids, else its blob's digest); "" for a layer made here: see :attr:`digest`.
    diff_id: str = ""

    @cached_property
    def digest(self) -> str:
        """The layer's content address: its ``diff_id``, or for a layer made here (synthetic, a
        listing's) the sha256 of a description of its entries, so that the same seed gives the same
        digest in any process. Computed when first asked (it reads every entry)."""
        if self.diff_id:
            return self.diff_id
        hasher = hashlib.sha256()
        self.describe(hasher)
        return "sha256:" + hasher.hexdigest()

    def describe(self, hasher) -> None:
        """Feed ``hasher`` a description of every entry, in a stable order."""
        for path in sorted(self.files):
            hasher.update(f"f {path} {self.files[path]}\n".encode())
        for tag, items in (("d", self.dirs), ("w", self.whiteouts), ("o", self.opaque_dirs)):
            for path in sorted(items):
                hasher.update(f"{tag} {path}\n".encode())
        for tag, links in (("s", self.symlinks), ("h", self.hardlinks)):
            for path in sorted(links):
                hasher.update(f"{tag} {path} {links[path]}\n".encode())

    def __post_init__(self) -> None:
        links = [p for p in [*self.symlinks, *self.hardlinks] if p not in self.files]
        if links:
            raise ValueError(f"layer {self.name}: link {links[0]!r} is not among the layer's files")
        complete: set[str] = set()  # directories whose ancestors are all in dirs by now
        for path in [*self.files, *self.dirs, *self.whiteouts, *self.opaque_dirs]:
            parent = parent_of(path)
            if parent not in complete:  # (else adding them again would change nothing)
                self.dirs.update(ancestors(path))
                complete.add(parent)
        self.dirs.update(self.opaque_dirs)
        clash = self.dirs & (self.files.keys() | self.whiteouts)
        if clash:
            raise ValueError(f"layer {self.name}: {sorted(clash)[0]!r} is both a directory and a file or whiteout")
        negative = [path for path, size in self.files.items() if size < 0]
        if negative:
            raise ValueError(f"layer {self.name}: file {negative[0]!r} has a negative size")

    @property
    def size(self) -> int:
        """Bytes the layer holds: every file's, a hard link's data once."""
        return sum(self.files.values()) - sum(self.files[p] for p in self.hardlinks)

    @property
    def entries(self) -> int:
        return len(self.files) + len(self.dirs) + len(self.whiteouts)


class Image:
    """An ordered stack of layers, bottom first, with its merged view computed once."""

    def __init__(self, name: str, layers: list[Layer], history: list[dict] | None = None, image_id: str = ""):
        if not layers:
            raise ValueError(f"image {name}: an image needs at least one layer")
        self.name = name
        self.layers = layers
        # A real image's config: its history entries (created, created_by, empty_layer, comment)
        # and its ID (the config's digest); a synthetic image has neither.
        self.config_history = history or []
        self.image_id = image_id
        # Layers are identified by content-independent ids so that images sharing a layer
        # object share cache keys for it.
        self.layer_ids = [id(layer) for layer in layers]
        self.entries: dict[str, Entry] = {}  # the path table, filled by ``entry``
        self._probe_memo: dict[str, tuple[int, ...]] = {}  # probe_layers of a name in the merged view
        # probe_layers of a name no layer holds, by its parent directory (bounded by directories)
        self._absent_name_probes: dict[str, tuple[int, ...]] = {}
        self._parent_stacks: dict[str, tuple[tuple, ...]] = {}  # ``_parent_layers``, by directory

    @cached_property
    def _merged_and_sizes(self) -> tuple[dict[str, tuple[str, int, int]], list[int]]:
        return self._merge()

    @cached_property  # not a property: every lookup reads it, and a cached one is a plain attribute
    def merged(self) -> dict[str, tuple[str, int, int]]:
        """path -> (kind, size, index of the layer that provides it); directories have size 0."""
        return self._merged_and_sizes[0]

    def entry(self, path: str) -> Entry | None:
        """The path table: a merged path's entry as a container that changed nothing on the way
        to it sees it (``ContainerView.resolve``), made on first use and shared by every view
        (``entries``); None for a name the merged view lacks."""
        found = self.merged.get(path)
        if found is None:
            return None
        entry = self.entries[path] = Entry(*found, path)
        return entry

    @property
    def merged_size_by_layer(self) -> list[int]:
        """File bytes of the merged view of layers 0..k, for each k (what a full copy holds)."""
        return self._merged_and_sizes[1]

    def _merge(self) -> tuple[dict[str, tuple[str, int, int]], list[int]]:
        view: dict[str, tuple[str, int, int]] = {}
        cumulative: list[int] = []
        file_bytes = 0  # of the view so far, kept up to date as entries come and go

        def drop(path: str) -> None:
            nonlocal file_bytes
            kind, size, _ = view.pop(path)
            if kind == FILE:
                file_bytes -= size

        for index, layer in enumerate(self.layers):
            # Only a directory hides a subtree; scanning for it is rare, so it can be linear.
            hidden_dirs = [p for p in layer.whiteouts if view.get(p, (None,))[0] == DIR]
            for hidden in hidden_dirs + sorted(layer.opaque_dirs):
                for path in [p for p in view if p != hidden and is_below(p, hidden)]:
                    drop(path)
            for path in layer.whiteouts:
                if path in view:
                    drop(path)
            for path in sorted(layer.dirs):
                replaced = view.get(path)
                if replaced is not None and replaced[0] == FILE:
                    file_bytes -= replaced[1]
                view[path] = (DIR, 0, index)  # an existing entry keeps its place in the order
            for path, size in layer.files.items():
                replaced = view.get(path)
                if replaced is not None and replaced[0] == DIR:
                    for below in [p for p in view if is_below(p, path)]:
                        drop(below)
                elif replaced is not None:
                    file_bytes -= replaced[1]
                view[path] = (FILE, size, index)
                file_bytes += size
            cumulative.append(file_bytes)
        return view, cumulative

    @cached_property
    def dir_entries(self) -> list[Counter]:
        """Per layer, directory -> the entries the layer's copy of it holds (files, directories and
        whiteouts directly inside it): what a lookup or a readdir in that layer reads. Counted
        once per image, on first use."""
        return [Counter(map(parent_of, (*layer.files, *layer.dirs, *layer.whiteouts))) for layer in self.layers]

    @cached_property
    def dirs_below(self) -> dict[str, tuple[str, ...]]:
        """Directory -> the merged view's directories at or below it (what a directory's coming
        up into a container's upper layer may change the lookups of)."""
        below: dict[str, list[str]] = {}
        for path, (kind, _, _) in self.merged.items():
            if kind == DIR:
                for prefix in prefixes(path):
                    below.setdefault(prefix, []).append(path)
        return {path: tuple(dirs) for path, dirs in below.items()}

    @cached_property
    def merged_dir_entries(self) -> Counter:
        """Directory -> entries of the merged view directly inside it: the directory a snapshot
        driver's own filesystem holds."""
        return Counter(map(parent_of, self.merged))

    @cached_property
    def layer_children(self) -> list[dict[str, list[str]]]:
        """Per layer, directory -> names of the entries directly inside it (what a readdir of
        the layer's copy returns, whiteouts included)."""
        children: list[dict[str, list[str]]] = []
        for layer in self.layers:
            names: dict[str, list[str]] = {}
            for path in (*layer.files, *layer.dirs, *layer.whiteouts):
                parent, _, name = path.rpartition("/")
                names.setdefault(parent, []).append(name)
            children.append(names)
        return children

    @cached_property
    def symlinks(self) -> dict[str, str]:
        """Symbolic links of the merged view: path -> target (as written in the layer)."""
        return {path: self.layers[index].symlinks[path] for path, (kind, _, index) in self.merged.items()
                if kind == FILE and path in self.layers[index].symlinks}

    @cached_property
    def hardlinks(self) -> dict[str, str]:
        """Hard links of the merged view: path -> the name its inode has in its layer (the file the
        tar entry links to). A link to a file of another layer is a file of its own: extracting a
        layer creates only what the layer holds."""
        links: dict[str, str] = {}
        merged = self.merged
        for index, layer in enumerate(self.layers):
            for path, target in layer.hardlinks.items():
                hops = 0
                while target in layer.hardlinks and hops < len(layer.hardlinks):  # a link to a link
                    target, hops = layer.hardlinks[target], hops + 1
                if target != path and target in layer.files and merged.get(path, (None, 0, -1))[2] == index:
                    links[path] = target
        return links

    @cached_property
    def linked_names(self) -> dict[str, tuple[str, ...]]:
        """For each merged file whose inode has other merged names: all of them (few)."""
        groups: dict[tuple[int, str], list[str]] = {}
        for path, target in self.hardlinks.items():
            index = self.merged[path][2]
            names = groups.setdefault((index, target), [])
            if not names and self.merged.get(target, (None, 0, -1))[2] == index:
                names.append(target)  # the link target itself, unless a higher layer replaced it
            names.append(path)
        return {path: tuple(names) for names in groups.values() if len(names) > 1 for path in names}

    def lower_inode(self, layer: int, path: str) -> tuple[int, str]:
        """The inode of the image's file at ``path``, provided by ``layer``: hard links of one
        layer share it (the page cache and a snapshot's blocks belong to it, not to a name)."""
        return (layer, self.hardlinks.get(path, path))

    @cached_property
    def files(self) -> list[str]:
        """Regular files of the merged view, in a stable order."""
        return sorted(path for path, (kind, _, _) in self.merged.items() if kind == FILE)

    @property
    def virtual_size(self) -> int:
        """Bytes of all layers, as Docker counts an image's size (shadowed files included)."""
        return sum(layer.size for layer in self.layers)

    @cached_property
    def merged_size(self) -> int:
        """File bytes of the merged view, a hard link's data once when its target is the file the
        view shows from the same layer (as ``du`` counts it, and a copy that keeps links holds it)."""
        merged, total = self.merged, 0
        for path, (kind, size, index) in merged.items():
            if kind != FILE:
                continue
            target = self.layers[index].hardlinks.get(path)
            if target is not None and merged.get(target, (None, 0, -1))[::2] == (FILE, index):
                continue
            total += size
        return total

    def entries_below(self, top: str) -> list[tuple[str, str, int]]:
        """Merged entries inside directory ``top`` as (path, kind, size)."""
        return [(p, k, s) for p, (k, s, _) in self.merged.items() if p != top and is_below(p, top)]

    def probe_layers(self, path: str) -> tuple[int, ...]:
        """Layer indices a union lookup of ``path``'s last component probes, top-down.

        A layer is probed only where the parent directory exists in it (the kernel keeps a
        lower stack per directory); the walk stops at a file, a whiteout or an opaque directory;
        a name found nowhere probes every candidate layer (negative lookups cost too).
        """
        memo = self._probe_memo.get(path)
        if memo is not None:
            return memo
        parent = parent_of(path)
        if path not in self.merged and path not in self._hidden_names:
            # A name no layer holds (a new file): what is probed depends on the parent alone.
            memo = self._absent_name_probes.get(parent)
            if memo is None:
                memo = self._absent_name_probes[parent] = self._probe(path, parent)
            return memo
        result = self._probe(path, parent)
        if path in self.merged:  # a hidden name (whited out, under an opaque directory) is rare
            self._probe_memo[path] = result
        return result

    def _probe(self, path: str, parent: str) -> tuple[int, ...]:
        probed: list[int] = []
        for index, files, whiteouts, dirs, opaque_dirs, parent_opaque in self._parent_layers(parent):
            probed.append(index)
            # a file, or a whiteout (a directory of the layer wins over a whiteout of the name)
            if path in files or (path in whiteouts and path not in dirs) or path in opaque_dirs or parent_opaque:
                break
        return tuple(probed)

    def _parent_layers(self, parent: str) -> tuple[tuple, ...]:
        """The layers holding directory ``parent`` (every layer for the root), top-down, each as
        (index, its files, whiteouts, directories and opaque directories, whether ``parent`` is
        opaque there): what ``_probe`` tests for every name in ``parent``. Kept per directory of
        the merged view (bounded by the image)."""
        found = self._parent_stacks.get(parent)
        if found is None:
            found = tuple((index, layer.files, layer.whiteouts, layer.dirs, layer.opaque_dirs,
                           parent in layer.opaque_dirs)
                          for index, layer in reversed(list(enumerate(self.layers)))
                          if not parent or parent in layer.dirs)
            if not parent or parent in self.merged:
                self._parent_stacks[parent] = found
        return found

    @cached_property
    def _hidden_names(self) -> frozenset[str]:
        """Names some layer holds that the merged view lacks: whited out, or below a whited-out
        or opaque directory (few, unlike the names every layer holds)."""
        merged = self.merged
        return frozenset(path for layer in self.layers
                         for names in (layer.files, layer.dirs, layer.whiteouts, layer.opaque_dirs)
                         for path in names if path not in merged)

    def history(self, known: dict[int, str] | None = None) -> list[dict]:
        """``docker history``: one row per step that built the image, top first: the image that
        step made (``<missing>``: an image built elsewhere, whose ID the node does not know; the
        top row is this image), when and by what it was created, the bytes its layer holds and
        that layer's digest ("" for a step that made no layer, such as ENV or CMD). ``known``:
        layer index -> the name of another image on the node whose top layer that is (a base).

        A real image's steps are its config's history entries; an image without them (synthetic,
        a listing, a config whose entries do not match its layers) has one step per layer, whose
        created_by says what the layer holds."""
        known = dict(known or {})
        known[len(self.layers) - 1] = self.image_id.removeprefix("sha256:")[:12] or self.name
        entries = self.config_history
        if not entries or sum(not entry.get("empty_layer") for entry in entries) != len(self.layers):
            entries = [{"created_by": f"{len(layer.files):,} files, {len(layer.dirs):,} directories, "
                                      f"{len(layer.whiteouts) + len(layer.opaque_dirs):,} whiteouts"}
                       for layer in self.layers]
        rows, index = [], -1
        for entry in entries:
            empty = bool(entry.get("empty_layer"))
            index += not empty
            layer = None if empty else self.layers[index]
            rows.append({"image": "<missing>", "created": entry.get("created", ""),
                         "created_by": entry.get("created_by", ""), "size": layer.size if layer else 0,
                         "layer": layer.digest if layer else "", "comment": entry.get("comment", ""),
                         "top": index})
        for row in rows:  # an image is known at its last step: the one that made its top layer, or after it
            row["image"] = known.get(row.pop("top"), "<missing>")
        seen: set[str] = set()
        for row in reversed(rows):  # top first; a known image shows on its last step only
            if row["image"] in seen:
                row["image"] = "<missing>"
            seen.add(row["image"])
        return rows[::-1]

    @cached_property
    def chain_ids(self) -> list[str]:
        """Per layer, Docker's chain ID: the digest of the layer with every layer below it
        (``ChainID(L0) = DiffID(L0)``, ``ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))``,
        OCI image spec, config.md). Two images hold the same layer on a node when their chain IDs
        agree: the same diff on another parent is another layer."""
        chain: list[str] = []
        for layer in self.layers:
            chain.append(layer.digest if not chain else
                         "sha256:" + hashlib.sha256(f"{chain[-1]} {layer.digest}".encode()).hexdigest())
        return chain

    def digest(self) -> str:
        """A stable content hash (for manifests and cache keys across processes)."""
        hasher = hashlib.sha256()
        for layer in self.layers:
            layer.describe(hasher)
            hasher.update(b"--\n")
        return hasher.hexdigest()[:16]


SizeDistribution = Literal["fixed", "lognormal", "empirical"]


def sample_sizes(rng: np.random.Generator, count: int, distribution: SizeDistribution, *,
                 size: int = 16384, sigma: float = 1.5,
                 table: Iterable[tuple[int, float]] = ()) -> np.ndarray:
    """``count`` file sizes in bytes: ``fixed`` (all ``size``), ``lognormal`` (median ``size``,
    shape ``sigma``) or ``empirical`` (a table of (size, weight) rows)."""
    if distribution == "fixed":
        return np.full(count, size, dtype=np.int64)
    if distribution == "lognormal":
        return np.maximum(1, rng.lognormal(np.log(size), sigma, count)).astype(np.int64)
    if distribution == "empirical":
        rows = list(table)
        if not rows:
            raise ValueError("an empirical size distribution needs a non-empty table")
        sizes = np.array([r[0] for r in rows], dtype=np.int64)
        weights = np.array([r[1] for r in rows], dtype=float)
        return rng.choice(sizes, size=count, p=weights / weights.sum())
    raise ValueError(f"unknown size distribution {distribution!r}")


def synthetic_image(rng: np.random.Generator, *, layers: int = 5, files_per_layer: int = 200,
                    distribution: SizeDistribution = "lognormal", size: int = 16384,
                    sigma: float = 1.5, table: Iterable[tuple[int, float]] = (),
                    dir_depth: int = 3, fanout: int = 4, overwrite_fraction: float = 0.05,
                    delete_fraction: float = 0.01, name: str = "synthetic", base: Image | None = None) -> Image:
    """A seeded image: files spread over a tree of ``fanout`` directories per level, at depths
    1..``dir_depth``; each layer above the first rewrites ``overwrite_fraction`` of the files
    below it and deletes ``delete_fraction`` of them (whiteouts). On a ``base``, the image's layers
    are the base's (the same objects) followed by ``layers`` new ones, which rewrite and delete
    the base's files too."""
    table = list(table)
    dir_paths: dict[tuple[int, ...], str] = {}  # branches -> the directory's path
    stack: list[Layer] = list(base.layers) if base is not None else []
    existing: list[str] = list(base.files) if base is not None else []
    for index in range(len(stack), len(stack) + layers):
        layer = Layer(name=f"layer{index}")
        if index and existing:
            changed = rng.choice(len(existing), size=min(len(existing), int(len(existing) * overwrite_fraction)),
                                 replace=False)
            deleted = rng.choice(len(existing), size=min(len(existing), int(len(existing) * delete_fraction)),
                                 replace=False)
            for i in sorted(set(deleted.tolist())):
                layer.whiteouts.add(existing[i])
            for i in sorted(set(changed.tolist()) - set(deleted.tolist())):
                layer.files[existing[i]] = 0
        sizes = sample_sizes(rng, files_per_layer + len(layer.files), distribution, size=size, sigma=sigma, table=table)
        depths = rng.integers(1, dir_depth + 1, files_per_layer) if dir_depth else np.zeros(files_per_layer, int)
        branches = rng.integers(0, fanout, (files_per_layer, max(dir_depth, 1)))
        dir_names = [f"d{b}" for b in range(fanout)]
        # Python lists, not NumPy rows: indexing NumPy arrays per element is what cost the time.
        size_list = sizes.tolist()
        for i, (row, depth) in enumerate(zip(branches.tolist(), depths.tolist())):
            key = tuple(row[:depth])
            dirs = dir_paths.get(key)
            if dirs is None:
                dirs = dir_paths[key] = "/".join([dir_names[b] for b in key])
            path = f"{dirs}/l{index}f{i}" if dirs else f"l{index}f{i}"
            layer.files[path] = size_list[i]
        known = set(existing)
        for offset, path in enumerate([p for p, s in layer.files.items() if s == 0 and p in known]):
            layer.files[path] = size_list[files_per_layer + offset]
        layer.__post_init__()
        stack.append(layer)
        existing = [p for p in existing if p not in layer.whiteouts] + [p for p in layer.files if p not in known]
    return Image(name, stack)


# Entries a directory holds in one layer, by default: the median, over the files of the shipped
# Debian bookworm listing (scenarios/data/debian-bookworm.csv.gz), of the entries their directory
# holds in their layer (54; /usr/share/doc holds 89, /usr/bin 275, /var/lib/dpkg/info 420).
PROBE_DIR_ENTRIES = 54


def probe_image(*, file_size: int, layers: int = 1, dir_depth: int = 1, other_file_size: int = 4096,
                target: str = "target", dir_entries: int = PROBE_DIR_ENTRIES) -> tuple[Image, str]:
    """The image ``sim.probe`` uses: the bottom layer holds the target file ``dir_depth``
    directories below the root; every layer holds another file in each of those directories, so
    that every directory is merged across all layers, and ``dir_entries`` files of its own in the
    target's directory (beside the target in the bottom layer)."""
    dirs = [f"d{level}" for level in range(1, dir_depth + 1)]
    target_path = "/".join(dirs + [target])
    target_dir = "/".join(dirs)
    stack = []
    for index in range(layers):
        layer = Layer(name=f"layer{index}")
        if index == 0:
            layer.files[target_path] = file_size
        for level in range(dir_depth):
            parent = "/".join(dirs[:level])
            name = f"other{index}"
            layer.files[f"{parent}/{name}" if parent else name] = other_file_size
        for entry in range(dir_entries):
            name = f"other{index}" if entry == 0 else f"other{index}-{entry}"
            layer.files[f"{target_dir}/{name}" if target_dir else name] = other_file_size
        layer.__post_init__()
        stack.append(layer)
    return Image(f"probe-{layers}l-{dir_depth}d-{dir_entries}e", stack), target_path
