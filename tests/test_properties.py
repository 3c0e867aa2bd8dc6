"""Invariants of the model, for any sequence of operations (hypothesis)."""
import dataclasses

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sim
from sim.drivers import REGISTRY, Driver, get_driver
from sim.drivers.union import UnionDriver
from sim.engine import Engine
from sim.fsview import TOP, FsError
from sim.image import DIR, FILE, Entry, Image, Layer, is_below, parent_of, prefixes
from sim.operation import Op
from sim.plan import Plan
from sim.profile import load_profile
from sim.records import SETUP_OPS

from .recorded import OpResult


def small_image() -> Image:
    """Three layers with a rewrite, whiteouts of a file and of a directory, and an opaque dir."""
    return Image("small", [
        Layer("l0", files={"a/f": 100, "a/c/g": 5000, "b/h": 10, "i": 1, "e/old": 3, "w/x": 9}),
        Layer("l1", files={"a/f": 200, "a/c/k": 30, "e/new": 7}, whiteouts={"b/h"}, opaque_dirs={"e"}),
        Layer("l2", files={"b/z/y": 4}, whiteouts={"i", "w"}),
    ])


PATHS = ["a", "a/f", "a/c", "a/c/g", "a/c/k", "a/c/n", "b", "b/h", "b/z", "b/z/y", "b/n", "e", "e/old", "e/new",
         "i", "w", "w/x", "n", "a/n", "a/c/d", "a/f/x"]
OPS = st.one_of(
    st.tuples(st.sampled_from(["create", "write", "append", "truncate", "open_trunc"]), st.sampled_from(PATHS),
              st.integers(0, 300)),
    st.tuples(st.sampled_from(["unlink", "mkdir", "rmdir", "chmod", "stat", "read"]), st.sampled_from(PATHS),
              st.just(0)),
    st.tuples(st.just("rename"), st.sampled_from(PATHS), st.sampled_from(PATHS)),
)


class Reference:
    """A plain filesystem: path -> (kind, size), POSIX errors, no layers at all."""

    def __init__(self, listing):
        self.entries = dict(listing)

    def kind(self, path):
        return DIR if path == "" else self.entries.get(path, (None,))[0]

    def _parent(self, path):
        for i in range(path.count("/")):
            prefix = "/".join(path.split("/")[: i + 1])
            if self.kind(prefix) is None:
                return "ENOENT"
            if self.kind(prefix) != DIR:
                return "ENOTDIR"
        return ""

    def _children(self, path):
        return [p for p in self.entries if parent_of(p) == path]

    def apply(self, kind, path, arg):
        error = self._parent(path)
        if error:
            return error
        current = self.kind(path)
        if kind in ("write", "append", "truncate", "open_trunc", "read", "unlink"):
            if current is None:
                return "ENOENT"
            if current == DIR:
                return "EISDIR"
        if kind in ("chmod", "stat") and current is None:
            return "ENOENT"
        if kind == "create":
            if current == DIR:
                return "EISDIR"
            self.entries[path] = (FILE, arg)
        elif kind == "write":
            self.entries[path] = (FILE, max(self.entries[path][1], arg))
        elif kind == "append":
            self.entries[path] = (FILE, self.entries[path][1] + arg)
        elif kind in ("truncate", "open_trunc"):
            self.entries[path] = (FILE, arg)
        elif kind == "unlink":
            del self.entries[path]
        elif kind == "mkdir":
            if current is not None:
                return "EEXIST"
            self.entries[path] = (DIR, 0)
        elif kind == "rmdir":
            if current is None:
                return "ENOENT"
            if current != DIR:
                return "ENOTDIR"
            if self._children(path):
                return "ENOTEMPTY"
            del self.entries[path]
        elif kind == "rename":
            return self._rename(path, arg, current)
        return ""

    def _rename(self, source, target, kind):
        # Like renameat2: both parents are resolved before the source itself is looked up.
        error = self._parent(target)
        if error:
            return error
        if kind is None:
            return "ENOENT"
        if target != source and is_below(target, source):
            return "EINVAL"
        if target != source and is_below(source, target):
            return "ENOTEMPTY"  # renaming into an ancestor of the source (do_renameat2's trap)
        if source == target:
            return ""  # vfs_rename: the same dentry, nothing to check or do
        existing = self.kind(target)
        if existing == DIR and kind != DIR:
            return "EISDIR"
        if existing not in (None, DIR) and kind == DIR:
            return "ENOTDIR"
        if existing == DIR and self._children(target):
            return "ENOTEMPTY"
        if source == target:
            return ""
        self.entries.pop(target, None)
        for path in [p for p in self.entries if is_below(p, source)]:
            self.entries[target + path[len(source):]] = self.entries.pop(path)
        return ""


def as_op(kind, path, arg):
    if kind == "rename":
        return Op("rename", path, target=arg)
    if kind in ("truncate",):
        return Op(kind, path, nbytes=arg)
    if kind == "write":
        return Op("write", path, 0, arg)
    return Op(kind, path, 0, arg)


DRIVER_OPTIONS = [(name, {}) for name in REGISTRY] + [("overlay2", {"redirect_dir": True}),
                                                      ("overlay2", {"metacopy": True})]


@pytest.mark.parametrize("driver, options", DRIVER_OPTIONS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=25))
def test_merged_view_matches_a_plain_filesystem(driver, options, ops):
    image = small_image()
    profile = load_profile("ssd")
    engine = Engine(profile)
    model = get_driver(driver)(options, profile)
    model.create_container(0, image)
    view = model.views[0]
    union = isinstance(model, UnionDriver)
    reference = Reference(view.listing())
    assert set(reference.entries) == set(image.merged)  # the starting view is the image's
    for kind, path, arg in ops:
        already_up = path in view.upper_files and not view.needs_copy_up(path)
        plan = model.apply(0, as_op(kind, path, arg))
        before = dict(reference.entries)
        expected = reference.apply(kind, path, arg)
        if plan.error == "EXDEV":
            # Renaming a lower directory without redirect_dir: the driver refuses, nothing moves.
            assert kind == "rename"
            reference.entries = before
            assert view.stat(path).kind == DIR
        else:
            assert plan.error == expected, (kind, path, arg)
        assert view.listing() == reference.entries, (kind, path, arg)
        # A union driver never copies up a file already in the writable layer.
        if union and already_up and kind in ("write", "append", "truncate", "open_trunc", "chmod"):
            assert plan.copy_ups == 0
        assert plan.copy_ups <= 1
        # Accounting: the latency is exactly the sum of its phases.
        result = OpResult()
        process = engine.env.process(engine.execute(plan, result.record))
        start = engine.env.now
        engine.env.run(process)
        assert engine.env.now - start == pytest.approx(sum(result.phase_s), abs=1e-12)
    space = model.space(0)
    assert space["size_bytes"] == sum(view.sizes[inode] for inode in set(view.upper_files.values())
                                      if inode not in view.metacopy)
    assert space["virtual_bytes"] == space["size_bytes"] + image.virtual_size


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), containers=st.integers(1, 3), operations=st.integers(1, 120))
def test_run_accounting_adds_up(seed, containers, operations):
    run = sim.run_scenario({"name": "acct", "seed": seed, "containers": {"count": containers},
                            "image": {"layers": 2, "files_per_layer": 30},
                            "workload": {"ops": {"read": .4, "write": .3, "create": .2, "delete": .1},
                                         "operations": operations}})
    ops, summary = run.ops, run.summary.iloc[0]
    work = ops[~ops["op"].isin(SETUP_OPS)]
    assert summary["ops"] == operations == len(work)
    assert summary["copy_up_bytes"] == work["copy_up_bytes"].sum()
    phases = work[["lookup_s", "copy_up_s", "data_s", "fsync_s", "setup_s"]].sum(axis=1)
    assert (phases - work["latency_s"]).abs().max() < 1e-9
    # Every byte copied up is read from the image and written to the writable layer on disk.
    assert summary["disk_write_bytes"] >= summary["copy_up_bytes"]
    # docker ps -s: the total is every container's SIZE, plus the image once in the virtual size
    # (never the sum of virtual sizes), and everything held in the real bytes.
    space = run.space
    rows, total = space[space["kind"] == "container"], space[space["kind"] == "total"].iloc[0]
    image = space[space["kind"] == "image"].iloc[0]
    assert len(rows) == containers
    assert (rows["virtual_bytes"] == rows["size_bytes"] + image["virtual_bytes"]).all()
    assert total["size_bytes"] == rows["size_bytes"].sum() == summary["containers_size_bytes"]
    assert total["virtual_bytes"] == total["size_bytes"] + image["virtual_bytes"]
    assert total["real_bytes"] == space[space["kind"] != "total"]["real_bytes"].sum()


def _lookup(model, view, path):
    """What a lookup of ``path`` returns and adds to a plan, or the errno it raises."""
    plan = Plan()
    try:
        entry = model.lookup(plan, 0, view, path)
    except FsError as error:
        return error.errno_name, plan.steps
    return entry, plan.steps


LOOKED_UP = sorted({p for path in PATHS for p in prefixes(path)} | {"", "a/c/g/z", "n/m"})


@pytest.mark.parametrize("driver, options", DRIVER_OPTIONS)
@settings(max_examples=100)
@given(ops=st.lists(OPS, max_size=25))
@example(ops=[("mkdir", "n", 0), ("rmdir", "n", 0)])
@example(ops=[("rename", "a/c", "n"), ("rename", "n", "a/c")])
@example(ops=[("mkdir", "n", 0), ("rename", "n", "a/n")])
@example(ops=[("chmod", "a/c", 0), ("stat", "a/c/g", 0)])
@example(ops=[("write", "a/c/g", 1), ("rename", "a/c/g", "b/n")])
@example(ops=[("unlink", "a/c/g", 0), ("unlink", "a/c/k", 0), ("rmdir", "a/c", 0), ("mkdir", "a/c", 0)])
def test_memoised_lookups_equal_fresh_ones(driver, options, ops):
    """Each view memoises what lookups find at the directories they walk through
    (``ContainerView.lookups``); after any operations, a lookup, a stat and a lower path
    through it equal those computed from scratch, and so does each stored walk of
    ``lower_path`` and each stored descent (``ContainerView.descents``; the last example makes
    an opaque directory over a lower one)."""
    model = get_driver(driver)(options, load_profile("ssd"))
    model.create_container(0, small_image())
    view = model.views[0]
    for kind, path, arg in ops:
        model.apply(0, as_op(kind, path, arg))
        for looked_up in LOOKED_UP:  # fills the memo, so that the next operations must update it
            fresh = dataclasses.replace(view, lookups={}, descents={})
            assert _lookup(model, view, looked_up) == _lookup(model, fresh, looked_up), (kind, path, looked_up)
        fresh = dataclasses.replace(view, lookups={}, descents={})
        for looked_up in LOOKED_UP:
            assert view.stat(looked_up) == fresh.stat(looked_up), looked_up
            assert view.lower_path(looked_up) == fresh.lower_path(looked_up), looked_up
        for directory, (_entry, _step, _parent_upper, walk) in view.lookups.items():
            assert walk == fresh.walk_down(fresh.walk_to_parent(directory), directory, False), directory
        for directory, descent in view.descents.items():  # each stored descent is a fresh one
            plan = Plan()
            model._descend(plan.steps, 0, fresh, directory)
            assert descent == fresh.descents[directory] and descent[0] == tuple(plan.steps), directory



LEAF_NAMES = ["a/f", "a/b/g", "c/h", "i"]
DIR_NAMES = ["a", "a/b", "c"]
ABSENT_NAMES = ["n", "a/n", "a/b/n", "c/n", "x/n"]  # in no layer: new files, the common negative lookup
LAYER_ROLES = st.fixed_dictionaries({
    **{name: st.sampled_from([None, FILE, "whiteout"]) for name in LEAF_NAMES},
    **{name: st.sampled_from([None, DIR, "opaque", "whiteout"]) for name in DIR_NAMES}})


def layer_of(index, roles):
    """A layer holding each name in its role (a whited-out directory holds nothing below it)."""
    gone = [name for name, role in roles.items() if role == "whiteout" and name in DIR_NAMES]
    roles = {name: role for name, role in roles.items() if not any(name != g and is_below(name, g) for g in gone)}
    return Layer(f"l{index}", files={n: 1 for n, r in roles.items() if r == FILE},
                 dirs={n for n, r in roles.items() if r == DIR},
                 whiteouts={n for n, r in roles.items() if r == "whiteout"},
                 opaque_dirs={n for n, r in roles.items() if r == "opaque"})


def walked_layers(layers, path):
    """``Image.probe_layers`` written plainly: top-down, each layer holding the parent, down to
    a file, a whiteout or an opaque directory."""
    parent, probed = parent_of(path), []
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        if parent and parent not in layer.dirs:
            continue
        probed.append(index)
        kind = (FILE if path in layer.files else DIR if path in layer.dirs
                else "whiteout" if path in layer.whiteouts else None)
        if kind in (FILE, "whiteout") or path in layer.opaque_dirs or parent in layer.opaque_dirs:
            break
    return tuple(probed)


@settings(max_examples=300)
@given(roles=st.lists(LAYER_ROLES, min_size=1, max_size=4),
       order=st.permutations(LEAF_NAMES + DIR_NAMES + ABSENT_NAMES))
def test_probe_layers_are_the_layer_walk(roles, order):
    """``probe_layers`` memoises a merged name's layers, and a name no layer holds by its
    parent (the same for every such name there); in any order of lookups, each answer is
    still the plain walk's."""
    image = Image("random", [layer_of(index, layer_roles) for index, layer_roles in enumerate(roles)])
    for path in order + order:  # the second time through, from the memos
        assert image.probe_layers(path) == walked_layers(image.layers, path), path


def walked_resolve(view, path):
    """``ContainerView.resolve`` written plainly, without the image's path table: the walk of
    the container's changes from the root to ``path``, then the merged image at the lower path
    it leads to. The entry and the lower path."""
    if path == "":
        return Entry(DIR, 0, None, ""), ""
    inode = view.upper_files.get(path)
    if inode is not None:
        origin = view.metacopy.get(inode)
        return Entry(FILE, view.sizes[inode], *((None, path) if origin is None else origin)), None
    walk = TOP
    for ancestor in prefixes(path)[:-1]:
        walk = view.walk_down(walk, ancestor, False)
    lower = view.lower_below(walk, path)
    found = view.image.merged.get(lower) if lower is not None else None
    if path in view.upper_dirs:
        return Entry(DIR, 0, None, lower if found and found[0] == DIR else path), lower
    return (None if found is None else Entry(*found, lower)), lower


def walked_lookup(model, view, path, cid=0):
    """A lookup written plainly: every component resolved by ``walked_resolve``, without the
    lookups memo, the stored descents or the path table. What it returns and the steps it
    makes, or the errno."""
    steps, parent_upper = [], True
    for prefix in prefixes(path):
        entry, lower = walked_resolve(view, prefix)
        steps.append(model._probe_step(cid, view, prefix, lower, parent_upper))
        if prefix == path:
            return entry, steps
        if entry is None:
            return "ENOENT", steps
        if entry.kind != DIR:
            return "ENOTDIR", steps
        parent_upper = prefix in view.upper_dirs
    return view.stat(path), steps  # the root


TABLE_NAMES = LEAF_NAMES + DIR_NAMES + ABSENT_NAMES + ["a/b/g/n", "a/f/n"]
TABLE_OPS = st.one_of(
    st.tuples(st.sampled_from(["create", "write", "unlink", "mkdir", "rmdir", "chmod"]), st.sampled_from(TABLE_NAMES),
              st.integers(0, 9)),
    st.tuples(st.just("rename"), st.sampled_from(TABLE_NAMES), st.sampled_from(TABLE_NAMES)),
)


@pytest.mark.parametrize("driver, options", [("overlay2", {}), ("overlay2", {"redirect_dir": True}),
                                             ("fuse-overlayfs", {}), ("aufs", {}), ("btrfs", {}), ("vfs", {})])
@settings(max_examples=150, deadline=None)
@given(roles=st.lists(LAYER_ROLES, min_size=1, max_size=3), ops=st.lists(TABLE_OPS, max_size=12))
@example(roles=[{**{n: None for n in LEAF_NAMES}, "a/b/g": FILE, **{n: None for n in DIR_NAMES}}],
         ops=[("unlink", "a/b/g", 0), ("rmdir", "a/b", 0), ("mkdir", "a/b", 0)])  # an opaque directory
@example(roles=[{**{n: None for n in LEAF_NAMES}, "a/b/g": FILE, **{n: None for n in DIR_NAMES}}],
         ops=[("rename", "a/b", "c"), ("rename", "c", "a/n")])  # redirects (with redirect_dir)
def test_path_table_agrees_with_a_plain_walk(driver, options, roles, ops):
    """The image's path table (``Image.entries``, read by ``ContainerView.resolve`` where the
    container changed nothing on the way) and the stored descents give, for every name, what
    a plain walk of the merged image and the container's changes gives, after any operations:
    the same entry, lower path and lookup steps."""
    image = Image("random", [layer_of(index, layer_roles) for index, layer_roles in enumerate(roles)])
    model = get_driver(driver)(options, load_profile("ssd"))
    model.create_container(0, image)
    view = model.views[0]
    assert all(image.entry(path) == Entry(kind, size, layer, path) and image.entry(path) is image.entries[path]
               for path, (kind, size, layer) in image.merged.items())
    for kind, path, arg in [("stat", "", 0), *ops]:
        model.apply(0, as_op(kind, path, arg))
        # what the table's shortcut relies on: redirected and opaque directories are upper ones
        assert set(view.redirects) <= view.upper_dirs and view.opaque_dirs <= view.upper_dirs
        for name in TABLE_NAMES:
            assert view.resolve(name, view.walk_to_parent(name)) == walked_resolve(view, name), (kind, path, name)
            plan = Plan()
            try:  # the walk every driver shares (aufs then adds its revalidation)
                found = Driver.lookup(model, plan, 0, view, name)
            except FsError as error:
                found = error.errno_name
            assert (found, plan.steps) == walked_lookup(model, view, name), (kind, path, name)


@pytest.mark.parametrize("driver, options", [("overlay2", {}), ("overlay2", {"redirect_dir": True}),
                                             ("fuse-overlayfs", {}), ("aufs", {"exclusive_lookup": True}),
                                             ("btrfs", {}), ("zfs", {})])
@settings(max_examples=150, deadline=None)
@given(roles=st.lists(LAYER_ROLES, min_size=1, max_size=3),
       ops=st.lists(st.tuples(st.sampled_from([0, 1]), TABLE_OPS), max_size=12))
def test_the_image_table_of_names_serves_every_container(driver, options, roles, ops):
    """A driver whose probes of an untouched image name are the image's
    (``probes_shared_by_image``) keeps each name's entry and step tail once per image
    (``Driver._names``): whichever container filled it, a lookup in another container, which
    changed other names, equals a plain walk of that container's view."""
    assert get_driver(driver).probes_shared_by_image
    image = Image("random", [layer_of(index, layer_roles) for index, layer_roles in enumerate(roles)])
    model = get_driver(driver)(options, load_profile("ssd"))
    for cid in (0, 1):
        model.create_container(cid, image)
    for changed, (kind, path, arg) in [(0, ("stat", "", 0)), *ops]:
        model.apply(changed, as_op(kind, path, arg))
        for name in TABLE_NAMES:
            for cid in (changed, 1 - changed):  # the one that changed something fills the table first
                view, plan = model.views[cid], Plan()
                try:
                    found = Driver.lookup(model, plan, cid, view, name)
                except FsError as error:
                    found = error.errno_name
                assert (found, plan.steps) == walked_lookup(model, view, name, cid), (cid, kind, path, name)


def test_a_directory_coming_up_through_a_redirect_forgets_the_descents_below_it():
    """``c/x`` below a redirected ``c`` is ``b/x`` of the image, though the image has a ``c/x``
    too: when it comes up, the descent stored for ``c/x/y`` (no directory of the image's ``c/x``)
    must go with it, though the view holds more descents than the image has directories there."""
    image = Image("redirected", [Layer("l0", files={"b/x/y/f": 1, "c/x/g": 2})])
    model = get_driver("overlay2")({"redirect_dir": True}, load_profile("ssd"))
    model.create_container(0, image)
    view = model.views[0]
    for kind, path, arg in [("unlink", "c/x/g", 0), ("rmdir", "c/x", 0), ("rename", "b", "c"),
                            ("stat", "c/x", 0), ("stat", "c/x/y", 0), ("stat", "c/x/y/f", 0),
                            ("write", "c/x/y/f", 1)]:
        assert model.apply(0, as_op(kind, path, arg)).error == ""
    fresh = dataclasses.replace(view, lookups={}, descents={})
    for directory, descent in view.descents.items():
        model._descend([], 0, fresh, directory)
        assert descent == fresh.descents[directory], directory
