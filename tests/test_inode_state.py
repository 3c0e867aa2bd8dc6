"""Per-file state follows the inode (issue 13, item 7): after any sequence of operations, renames
of files and of directories included, every driver's copy-ups, copy-up bytes, ``docker ps -s``
SIZE and real bytes equal those of a plain reference written here, which knows files only by
inode and names only as pointers to them."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.drivers import get_driver
from sim.operation import Op
from sim.image import DIR, FILE, Image, Layer
from sim.plan import READ
from sim.profile import load_profile

PAGE = 4096


def linked_image() -> Image:
    """Two layers: files of several blocks, a hard link across directories (``b/g2`` is
    ``a/c/g``), a rewrite, a whiteout and an opaque directory."""
    return Image("linked", [
        Layer("l0", files={"a/f": 100, "a/c/g": 300_000, "b/g2": 300_000, "b/h": 70_000, "e/old": 3, "i": 1},
              hardlinks={"b/g2": "a/c/g"}),
        Layer("l1", files={"a/f": 200_000, "a/c/k": 30, "e/new": 7}, whiteouts={"i"}, opaque_dirs={"e"}),
    ])


PATHS = ["a", "a/f", "a/c", "a/c/g", "a/c/k", "b", "b/g2", "b/h", "e", "e/new", "n", "n/f", "m", "m/f", "m/c",
         "m/c/g", "b/n"]
OFFSETS, LENGTHS = [0, 5000, 70_000, 200_000, 299_000], [0, 1, 4096, 70_000]
OPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(PATHS), st.sampled_from(OFFSETS), st.sampled_from(LENGTHS)),
    st.tuples(st.sampled_from(["create", "append", "truncate", "open_trunc"]), st.sampled_from(PATHS),
              st.just(0), st.sampled_from(LENGTHS + [250_000])),
    st.tuples(st.sampled_from(["unlink", "mkdir", "rmdir", "chmod"]), st.sampled_from(PATHS), st.just(0), st.just(0)),
    st.tuples(st.just("rename"), st.sampled_from(PATHS), st.sampled_from(PATHS), st.just(0)),
)


def as_op(kind, path, arg, nbytes):
    if kind == "rename":
        return Op("rename", path, target=arg)
    if kind == "truncate":
        return Op("truncate", path, nbytes=nbytes)
    return Op(kind, path, arg, nbytes)


def round_up(value, unit):
    return -(-value // unit) * unit


@dataclass
class File:
    size: int
    up: bool = False        # in the container's diff (union: an upper inode; snapshot: touched)
    new: bool = False       # snapshot: every block private (created, or truncated to nothing)
    shared: int | None = None  # snapshot: the size at its first non-empty write, shared with the image
    private: set = field(default_factory=set)  # snapshot: blocks written since
    metacopy: bool = False  # union: only its metadata is up
    written: int | None = None  # union reflink: bytes written since the clone (None: not a clone)


class Reference:
    """Files by inode, names by path: the bookkeeping of every driver, written plainly."""

    def __init__(self, image: Image, driver: str, options: dict):
        self.driver, self.options = driver, options
        self.union = driver in ("overlay2", "overlay", "aufs", "fuse-overlayfs")
        self.names: dict[str, object] = {}
        self.dirs: set[str] = set()
        self.files: dict[object, File] = {}
        self.image_files: dict[object, int] = {}
        for path, (kind, size, index) in image.merged.items():
            if kind == DIR:
                self.dirs.add(path)
                continue
            inode = ("image", index, image.layers[index].hardlinks.get(path, path))
            self.names[path] = inode
            self.files.setdefault(inode, File(size))
            self.image_files[inode] = size
        self.fresh = 0
        self.copy_ups = self.copy_up_bytes = 0

    # -- per driver ------------------------------------------------------------------------------
    def block_for(self, size):
        if self.driver == "btrfs":
            return PAGE
        if self.driver == "zfs":
            return min(self.options.get("recordsize", 128 * 1024), round_up(max(size, 1), PAGE))
        return self.options.get("block_size", 64 * 1024)

    def _new_inode(self, size):
        self.fresh += 1
        inode = ("new", self.fresh)
        self.files[inode] = File(size, up=True, new=True)
        return inode

    def _bring_up(self, path, with_data=True, metadata_only=False):
        """The first change to a file: a union copy-up (a new inode), or a snapshot's diff."""
        inode = self.names[path]
        state = self.files[inode]
        if not self.union:
            state.up = True
            return inode
        if state.up and not state.metacopy:
            return inode
        if state.up:  # metacopy: the data follows now, unless only metadata again
            if metadata_only:
                return inode
            state.metacopy = False
        else:
            inode = self._new_inode(state.size if with_data or metadata_only else 0)
            self.names[path] = inode
            self.files[inode].new = False
            state = self.files[inode]
            state.metacopy = metadata_only
        self.copy_ups += 1
        if with_data and not metadata_only and state.size:
            if self.options.get("reflink"):
                state.written = 0
            else:
                self.copy_up_bytes += state.size
        return inode

    def _write(self, path, offset, nbytes):
        inode = self._bring_up(path)
        state = self.files[inode]
        if self.union:
            if state.written is not None and nbytes:
                state.written += round_up(offset + nbytes, PAGE) - offset // PAGE * PAGE
        elif self.driver != "vfs" and not state.new and nbytes:
            if state.shared is None:
                state.shared = state.size
            block = self.block_for(state.shared)
            last = -(-state.shared // block) - 1
            broken = {i for i in range(offset // block, min((offset + nbytes - 1) // block, last) + 1)} - state.private
            state.private |= broken
            if broken:
                self.copy_ups += 1
                self.copy_up_bytes += len(broken) * block
        state.size = max(state.size, offset + nbytes)

    def _truncate(self, path, size, with_data=True):
        inode = self._bring_up(path, with_data=with_data)
        state = self.files[inode]
        state.size = size
        if not self.union and size == 0:
            state.new, state.shared, state.private = True, None, set()

    def _drop(self, path):
        inode = self.names.pop(path, None)
        if inode is not None and inode not in self.names.values():
            del self.files[inode]

    def apply(self, kind, path, arg, nbytes):
        """Apply an operation the driver carried out (the namespace test checks which fail)."""
        if kind == "create" and path in self.names:
            kind = "open_trunc"
        if kind == "create":
            self.names[path] = self._new_inode(0)
            self._write(path, 0, nbytes)
        elif kind == "write":
            self._write(path, arg, nbytes)
        elif kind == "append":
            self._write(path, self.files[self.names[path]].size, nbytes)
        elif kind == "truncate":
            self._truncate(path, nbytes)
        elif kind == "open_trunc":
            self._truncate(path, 0, with_data=False)
            self._write(path, 0, nbytes)
        elif kind == "unlink":
            self._drop(path)
        elif kind == "mkdir":
            self.dirs.add(path)
        elif kind == "rmdir":
            self.dirs.discard(path)
        elif kind == "chmod" and path in self.names:
            self._bring_up(path, metadata_only=bool(self.options.get("metacopy")))
        elif kind == "rename" and path == arg:
            return
        elif kind == "rename" and path in self.dirs:
            moved = lambda p: arg + p[len(path):]  # noqa: E731
            inside = lambda p: p == path or p.startswith(path + "/")  # noqa: E731
            self.dirs = {moved(p) if inside(p) else p for p in self.dirs if p != arg}
            self.names = {moved(p) if inside(p) else p: inode for p, inode in self.names.items()}
        elif kind == "rename":
            if self.names.get(arg) == self.names[path] and not self.union:
                return  # two names of one inode: nothing happens
            inode = self._bring_up(path)
            del self.names[path]
            self._drop(arg)
            self.dirs.discard(arg)
            self.names[arg] = inode

    # -- what is compared ----------------------------------------------------------------------
    def size_bytes(self):
        return sum(f.size for f in self.files.values() if f.up and not f.metacopy)

    def real_bytes(self):
        if self.driver == "vfs":  # the -init copy and the container's own: each inode once
            return sum(self.image_files.values()) + sum(f.size for f in self.files.values())
        if self.union:
            return sum(f.size - (0 if f.written is None else max(0, f.size - f.written))
                       for f in self.files.values() if f.up and not f.metacopy)
        total = 0
        for f in self.files.values():
            if f.new:
                total += round_up(f.size, self.block_for(f.size))
            elif f.shared is not None:
                block = self.block_for(f.shared)
                total += len(f.private) * block + max(0, round_up(f.size, block) - round_up(f.shared, block))
        return total

    def listing(self):
        return {**{d: (DIR, 0) for d in self.dirs}, **{p: (FILE, self.files[i].size) for p, i in self.names.items()}}


DRIVER_OPTIONS = [
    ("overlay2", {}), ("overlay2", {"reflink": True}), ("overlay2", {"redirect_dir": True}),
    ("overlay2", {"metacopy": True}), ("overlay2", {"volatile": True}),
    ("overlay2", {"reflink": True, "redirect_dir": True, "metacopy": True}),
    ("overlay2", {"redirect_dir": True, "metacopy": True, "volatile": True}),
    ("overlay", {}), ("overlay", {"reflink": True}), ("aufs", {}),
    ("fuse-overlayfs", {}), ("fuse-overlayfs", {"reflink": True, "volatile": True}),
    ("btrfs", {}), ("zfs", {}), ("zfs", {"recordsize": 16384}), ("devicemapper", {}),
    ("devicemapper", {"block_size": 128 * 1024}), ("vfs", {}),
]


def run_against_reference(driver, options, ops):
    image = linked_image()
    model = get_driver(driver)(options, load_profile("ssd"))
    model.create_container(0, image)
    view = model.views[0]
    reference = Reference(image, driver, options)
    assert view.listing() == reference.listing()
    for kind, path, arg, nbytes in ops:
        plan = model.apply(0, as_op(kind, path, arg, nbytes))
        before = (reference.copy_ups, reference.copy_up_bytes)
        if not plan.error:
            reference.apply(kind, path, arg, nbytes)
        step = (kind, path, arg, nbytes, plan.error)
        assert view.listing() == reference.listing(), step
        assert (plan.copy_ups, plan.copy_up_bytes) == (reference.copy_ups - before[0],
                                                       reference.copy_up_bytes - before[1]), step
        space = model.space(0)
        assert space["size_bytes"] == reference.size_bytes(), step
        assert space["real_bytes"] == reference.real_bytes(), step


@pytest.mark.parametrize("driver, options", DRIVER_OPTIONS)
@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=20))
@example(ops=[("write", "a/c/g", 0, 1), ("rename", "a/c", "m/c", 0), ("write", "m/c/g", 70_000, 4096)])
@example(ops=[("mkdir", "n", 0, 0), ("create", "n/f", 0, 70_000), ("rename", "n", "m", 0), ("write", "m/f", 0, 1)])
@example(ops=[("write", "a/c/g", 0, 1), ("write", "b/g2", 0, 1), ("append", "b/g2", 0, 1)])
@example(ops=[("chmod", "a/f", 0, 0), ("create", "n", 0, 1), ("rename", "n", "a/f", 0), ("write", "a/f", 0, 1)])
@example(ops=[("unlink", "a/f", 0, 0), ("mkdir", "a/f", 0, 0)])  # the directory hides the image file's bytes
@example(ops=[("unlink", "b/g2", 0, 0), ("mkdir", "b/g2", 0, 0), ("write", "a/c/g", 0, 1)])  # and its link
def test_copy_ups_and_bytes_follow_the_inode(driver, options, ops):
    run_against_reference(driver, options, ops)


@pytest.mark.parametrize("driver, options", DRIVER_OPTIONS)
def test_directory_rename_repro(driver, options):
    """Issue 13's repro: mkdir n; create n/f (200 kB); rename n -> m; write m/f. No copy-up,
    and the real bytes are the new file's (aufs refuses the directory rename: EXDEV)."""
    image = Image("one", [Layer("l0", files={"x": 10})])
    model = get_driver(driver)(options, load_profile("ssd"))
    model.create_container(0, image)
    plans = [model.apply(0, op) for op in (Op("mkdir", "n"), Op("create", "n/f", 0, 200_000),
                                           Op("rename", "n", target="m"), Op("write", "m/f", 0, 10))]
    renamed = driver != "aufs"
    assert [p.error for p in plans] == ["", "", "" if renamed else "EXDEV", "" if renamed else "ENOENT"]
    assert sum(p.copy_ups for p in plans) == sum(p.copy_up_bytes for p in plans) == 0
    space = model.space(0)
    assert space["size_bytes"] == 200_000
    reference = Reference(image, driver, options)
    reference.names["n/f"] = reference._new_inode(200_000)
    assert space["real_bytes"] == reference.real_bytes()


@pytest.mark.parametrize("driver, options", [("overlay2", {"reflink": True, "redirect_dir": True}),
                                             ("btrfs", {}), ("zfs", {}), ("devicemapper", {})])
def test_lower_directory_rename_keeps_what_was_written(driver, options):
    """A written image file keeps its private blocks (or its clone) when its directory moves:
    writing it again in the same place copies nothing (a clone counts each write's pages)."""
    image = Image("big", [Layer("l0", files={"d/f": 1_000_000})])
    model = get_driver(driver)(options, load_profile("ssd"))
    model.create_container(0, image)
    first = model.apply(0, Op("write", "d/f", 0, 10))
    real = model.space(0)["real_bytes"]
    assert model.apply(0, Op("rename", "d", target="m")).error == ""
    again = model.apply(0, Op("write", "m/f", 0, 10))
    assert first.copy_ups == 1 and again.copy_ups == again.copy_up_bytes == 0
    assert model.space(0)["real_bytes"] == real + (PAGE if options.get("reflink") else 0) < 1_000_000


@pytest.mark.parametrize("driver", ["overlay2", "overlay", "aufs", "fuse-overlayfs", "btrfs", "zfs", "devicemapper",
                                    "vfs"])
def test_image_hard_links(driver):
    """``b/g2`` is a hard link of ``a/c/g``. A union copy-up makes a new inode and breaks the
    link (Docker mounts overlayfs with index=off): the other name keeps the image's file and
    copies up on its own first write. Snapshot drivers and vfs keep the image's inode: both
    names see the write, its blocks break once, and SIZE counts the file once."""
    image = linked_image()
    model = get_driver(driver)({}, load_profile("ssd"))
    model.create_container(0, image)
    view = model.views[0]
    model.apply(0, Op("append", "a/c/g", 0, 10))
    second = model.apply(0, Op("write", "b/g2", 0, 10))
    union = driver in ("overlay2", "overlay", "aufs", "fuse-overlayfs")
    assert view.stat("b/g2").size == (300_000 if union else 300_010)
    assert view.stat("a/c/g").size == 300_010
    assert second.copy_ups == (1 if union else 0 if driver == "vfs" else 1)
    if not union and driver != "vfs":
        assert model.apply(0, Op("write", "a/c/g", 0, 10)).copy_ups == 0  # block 0 broke through b/g2
    assert model.space(0)["size_bytes"] == (600_010 if union else 300_010)


def test_lower_hard_links_share_their_pages():
    """Before any write, two names of one image inode read the same pages."""
    model = get_driver("overlay2")({}, load_profile("ssd"))
    model.create_container(0, linked_image())
    reads = [[step[2] for step in model.apply(0, Op("read", path, 0, 10)).steps if step[0] == READ]
             for path in ("a/c/g", "b/g2")]
    assert len(reads[0]) == 1 and reads[0] == reads[1]
