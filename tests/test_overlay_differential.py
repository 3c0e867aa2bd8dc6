"""Differential test of the namespace model (``sim.fsview.ContainerView``) against real overlayfs.

Seeded random images (files, directories, whiteouts, opaque directories in lower layers) are
written as real lower directories and mounted; seeded random operation sequences run both on
the mount and in the model. After every operation the merged view (path -> kind, size), the
upper directory (path -> file/dir/whiteout, and which directories are opaque) and the errno of a
refused operation must agree. Root only: it mounts overlayfs.
"""
from __future__ import annotations

import errno
import os
import random
import stat
from pathlib import Path

import pytest

from sim.calibrate.realfs import OPAQUE_XATTR, Sandbox, filesystem_supported, is_root, materialize
from sim.fsview import ContainerView, FsError
from sim.image import DIR, FILE, Image, Layer, ancestors, is_below

pytestmark = pytest.mark.root

NAMES = ("a", "b", "c")
POOL = [x for x in NAMES] + [f"{x}/{y}" for x in NAMES for y in NAMES] + \
       [f"{x}/{y}/{z}" for x in NAMES for y in NAMES for z in NAMES]
SEQUENCES = 200   # per mount configuration
OPERATIONS = 14   # per sequence


def kernel_redirect_dir_default() -> bool:
    try:
        return Path("/sys/module/overlay/parameters/redirect_dir").read_text().strip() in ("Y", "on")
    except OSError:
        return False


def _skip_reason() -> str | None:
    if not is_root():
        return "needs root to mount overlayfs"
    if not filesystem_supported("overlay"):
        return "the kernel has no overlay filesystem"
    return None


# -- random images ------------------------------------------------------------------------------
def random_image(rng: random.Random) -> Image:
    layers: list[Layer] = []
    below: dict[str, str] = {}  # merged view of the layers so far: path -> kind
    for index in range(rng.randint(1, 3)):
        kinds: dict[str, str] = {}  # this layer: path -> file/dir/whiteout/opaque
        for _ in range(rng.randint(1, 7)):
            roll = rng.random()
            if index and below and roll < 0.2:
                path, kind = rng.choice(sorted(below)), "whiteout"
            elif index and roll < 0.3 and any(k == DIR for k in below.values()):
                path, kind = rng.choice(sorted(p for p, k in below.items() if k == DIR)), "opaque"
            else:
                path, kind = rng.choice(POOL), (DIR if roll < 0.6 else FILE)
            if path in kinds or any(kinds.get(a, DIR) != DIR and kinds.get(a) != "opaque" for a in ancestors(path)):
                continue
            if kind != DIR and kind != "opaque" and any(p != path and is_below(p, path) for p in kinds):
                continue
            # A whiteout inside a directory its own layer makes opaque hides nothing, and the
            # kernel lists it as a device in that (then unmerged) directory: images never hold one.
            if kind == "whiteout" and any(kinds.get(a) == "opaque" for a in ancestors(path)):
                continue
            if kind == "opaque" and any(k == "whiteout" and is_below(p, path) for p, k in kinds.items()):
                continue
            kinds[path] = kind
            for ancestor in ancestors(path):
                kinds.setdefault(ancestor, DIR)
        layer = Layer(name=f"l{index}", files={p: rng.choice((0, 1, 5, 4096)) for p, k in kinds.items() if k == FILE},
                      dirs={p for p, k in kinds.items() if k == DIR},
                      whiteouts={p for p, k in kinds.items() if k == "whiteout"},
                      opaque_dirs={p for p, k in kinds.items() if k == "opaque"})
        layers.append(layer)
        below = {p: k for p, (k, _, _) in Image("so-far", layers).merged.items()}
    return Image("random", layers)


# -- the two sides ----------------------------------------------------------------------------
def real_op(root: Path, op: tuple) -> str:
    kind, path, *args = op
    target = root / path
    try:
        if kind == "create":
            fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            os.write(fd, b"x" * args[0])
            os.close(fd)
        elif kind == "write":
            fd = os.open(target, os.O_WRONLY)
            os.pwrite(fd, b"y" * args[1], args[0])
            os.close(fd)
        elif kind == "append":
            fd = os.open(target, os.O_WRONLY | os.O_APPEND)
            os.write(fd, b"z" * args[0])
            os.close(fd)
        elif kind == "truncate":
            os.truncate(target, args[0])
        elif kind == "unlink":
            os.unlink(target)
        elif kind == "mkdir":
            os.mkdir(target)
        elif kind == "rmdir":
            os.rmdir(target)
        elif kind == "rename":
            os.rename(target, root / args[0])
        elif kind == "chmod":
            os.chmod(target, 0o700)
    except OSError as error:
        return errno.errorcode[error.errno]
    return ""


def model_op(view: ContainerView, op: tuple) -> str:
    kind, path, *args = op
    try:
        if kind == "create":
            view.create(path)
            if args[0]:
                view.write(path, 0, args[0])
        elif kind == "write":
            view.copy_up(path)
            view.write(path, args[0], args[1])
        elif kind == "append":
            view.copy_up(path)
            view.write(path, view.stat(path).size, args[0])
        elif kind == "truncate":
            view.copy_up(path)
            view.truncate(path, args[0])
        elif kind == "unlink":
            view.unlink(path)
        elif kind == "mkdir":
            view.mkdir(path)
        elif kind == "rmdir":
            view.rmdir(path)
        elif kind == "rename":
            view.rename(path, args[0])
        elif kind == "chmod":
            try:
                view.copy_up(path)
            except FsError as error:
                if error.errno_name != "EISDIR":
                    raise
                view.copy_up_dir(path)
    except FsError as error:
        return error.errno_name
    return ""


def random_op(rng: random.Random) -> tuple:
    kind = rng.choice(("create", "write", "append", "truncate", "unlink", "mkdir", "rmdir", "rename", "rename",
                       "chmod"))
    path = rng.choice(POOL)
    if kind == "create":
        return (kind, path, rng.choice((0, 3, 5000)))
    if kind == "write":
        return (kind, path, rng.choice((0, 2, 4096)), rng.choice((1, 3)))
    if kind == "append":
        return (kind, path, rng.choice((1, 7)))
    if kind == "truncate":
        return (kind, path, rng.choice((0, 2, 10000)))
    if kind == "rename":
        return (kind, path, rng.choice(POOL))
    return (kind, path)


def real_merged(root: Path) -> dict:
    view = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(directory) / name
            info = full.lstat()
            rel = str(full.relative_to(root))
            view[rel] = (DIR, 0) if stat.S_ISDIR(info.st_mode) else (FILE, info.st_size)
    return view


def real_upper(upper: Path) -> tuple[dict, set]:
    paths, opaque = {}, set()
    for directory, dirs, files in os.walk(upper):
        for name in dirs + files:
            full = Path(directory) / name
            info = full.lstat()
            rel = str(full.relative_to(upper))
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                paths[rel] = "whiteout"
            elif stat.S_ISDIR(info.st_mode):
                paths[rel] = DIR
                try:
                    if os.getxattr(full, OPAQUE_XATTR) == b"y":
                        opaque.add(rel)
                except OSError:
                    pass
            else:
                paths[rel] = FILE
    return paths, opaque


def model_merged(view: ContainerView) -> dict:
    return {p: (k, s if k == FILE else 0) for p, (k, s) in view.listing().items() if p}


def describe(image: Image, ops: list[tuple], options: str) -> str:
    lines = [f"mount options: {options or '(defaults)'}"]
    for layer in image.layers:
        lines.append(f"  {layer.name}: files={layer.files} dirs={sorted(layer.dirs)}"
                     f" whiteouts={sorted(layer.whiteouts)}"
                     f" opaque={sorted(layer.opaque_dirs)}")
    lines += [f"  op {i}: {op}" for i, op in enumerate(ops)]
    return "\n".join(lines)


def run_sequences(options: str, redirect_dir: bool, seed: int, count: int) -> int:
    """Run ``count`` random sequences; returns how many operations were compared."""
    rng = random.Random(seed)
    compared = 0
    with Sandbox(prefix="cowsim-difftest-") as sandbox:
        for sequence in range(count):
            image = random_image(rng)
            base = sandbox.path(f"s{sequence}")
            lowers = []
            for index, layer in enumerate(image.layers):
                materialize(layer, base / f"l{index}")
                lowers.append(base / f"l{index}")
            upper, merged = base / "upper", base / "merged"
            handle = sandbox.overlay(list(reversed(lowers)), upper, base / "work", merged, options)
            view = ContainerView(image, redirect_dir=redirect_dir)
            done: list[tuple] = []
            try:
                assert real_merged(merged) == model_merged(view), "merged view before any operation\n" + \
                    describe(image, done, options)
                for _ in range(OPERATIONS):
                    op = random_op(rng)
                    done.append(op)
                    real_errno, model_errno = real_op(merged, op), model_op(view, op)
                    context = describe(image, done, options)
                    assert real_errno == model_errno, \
                        f"errno: kernel {real_errno or 'ok'}, model {model_errno or 'ok'}\n{context}"
                    assert real_merged(merged) == model_merged(view), f"merged view differs\n{context}"
                    paths, opaque = real_upper(upper)
                    model_paths = view.upper_paths()
                    assert paths == model_paths, (
                        f"upper directory differs\n{context}\n"
                        f"kernel only: {sorted(paths.items() - model_paths.items())}"
                        f"\nmodel only: {sorted(model_paths.items() - paths.items())}")
                    assert opaque == view.opaque_dirs, f"opaque directories differ\n{context}"
                    compared += 1
            finally:
                handle.close()
    return compared


CONFIGS = [
    pytest.param("", kernel_redirect_dir_default(), id="kernel-defaults"),
    pytest.param("redirect_dir=off,metacopy=off", False, id="redirect_dir=off"),
    pytest.param("redirect_dir=on,metacopy=off", True, id="redirect_dir=on"),
]


@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
@pytest.mark.parametrize("options,redirect_dir", CONFIGS)
def test_model_matches_kernel_overlayfs(options, redirect_dir):
    compared = run_sequences(options, redirect_dir, seed=20260127, count=SEQUENCES)
    assert compared == SEQUENCES * OPERATIONS
