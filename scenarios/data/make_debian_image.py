#!/usr/bin/env python3
"""Regenerate ``debian-bookworm.csv.gz``, ``python3-startup.strace.gz`` and
``dpkg-install-hello.strace.gz`` (needs root, strace and Debian's package archive; takes about
three minutes).

The image is a real Debian bookworm root filesystem in two layers, listed entry by entry:

- layer 0: ``debootstrap --variant=minbase bookworm``, cleaned as Docker's official Debian
  images are (``apt-get clean``, no package lists, nothing under ``/dev``);
- layer 1: what ``apt-get install --no-install-recommends python3 curl ca-certificates`` and
  ``apt-get download hello`` into ``/root`` (then ``apt-get clean`` and removing the package
  lists) changed, computed as Docker computes a layer diff: entries added or whose type, mode, owner, size, mtime or link target changed,
  and a whiteout for each deleted entry (only the topmost one of a deleted subtree).

The manifest is gzip-compressed CSV, one row per entry: ``layer,path,kind,size,mode,target``
with kind one of file, dir, symlink, hardlink, whiteout, opaque (a hard link names its target;
a symlink's size is the length of its target, as ``lstat`` reports). ``sim.imagefile`` reads it.

The traces are ``strace -f -tt -T`` of a Python start-up (``import json, email.parser,
urllib.request``: lookups and reads) and of ``dpkg -i /root/hello_*.deb`` (writes, renames,
fsyncs), run in a copy of that root filesystem (the host's strace copied in, not installed, to
record from inside the chroot), so every file they read is in the image.

Usage: sudo python3 scenarios/data/make_debian_image.py [--out scenarios/data] [--keep DIR]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = ["python3", "curl", "ca-certificates"]
# A clean environment: nothing of the host's (its PATH would show in the trace) leaks in.
APT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


def run(*args: str, **kwargs) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, env=APT_ENV, **kwargs)


def in_chroot(root: Path, script: str) -> None:
    """Run a shell script inside ``root`` with /proc and /dev mounted (apt and dpkg need them)."""
    mounts = [("proc", ["-t", "proc", "proc"]), ("dev", ["--bind", "/dev"])]
    for name, how in mounts:
        (root / name).mkdir(exist_ok=True)
        run("mount", *how, str(root / name))
    try:
        run("chroot", str(root), "sh", "-ec", script)
    finally:
        for name, _ in reversed(mounts):
            run("umount", str(root / name))


def clean(root: Path) -> None:
    """What Docker's official Debian images leave out: package caches, lists and device nodes."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*", "dev/*"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock" and path.name != "partial":
                path.unlink()


def scan(root: Path) -> dict[str, tuple]:
    """path -> (kind, size, mode, uid, gid, mtime_ns, link target, inode) of every entry."""
    entries: dict[str, tuple] = {}
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(directory, name)
            info = os.lstat(full)
            relative = os.path.relpath(full, root)
            if stat.S_ISDIR(info.st_mode):
                kind, target = "dir", ""
            elif stat.S_ISLNK(info.st_mode):
                kind, target = "symlink", os.readlink(full)
            else:
                kind, target = "file", ""  # regular files; device nodes and FIFOs (size 0) too
            size = 0 if kind == "dir" else info.st_size
            entries[relative] = (kind, size, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                                 info.st_mtime_ns, target, (info.st_dev, info.st_ino, info.st_nlink))
    return entries


def rows_of(layer: int, entries: dict[str, tuple], paths: list[str], whiteouts: list[str]) -> list[list]:
    """CSV rows; the first path of a set of hard links carries the data, the others link to it."""
    rows, first_of_inode = [], {}
    for path in sorted(paths):
        kind, size, mode, *_rest, target, inode = entries[path]
        if kind == "file" and inode[2] > 1:
            if inode in first_of_inode:
                kind, target = "hardlink", first_of_inode[inode]
            else:
                first_of_inode[inode] = path
        rows.append([layer, path, kind, size, f"{mode:04o}", target])
    rows += [[layer, path, "whiteout", 0, "", ""] for path in sorted(whiteouts)]
    return rows


def diff(lower: dict[str, tuple], upper: dict[str, tuple]) -> tuple[list[str], list[str]]:
    """Paths a layer adds or changes, and the topmost deleted paths (its whiteouts)."""
    changed = [p for p, entry in upper.items() if p not in lower or lower[p][:7] != entry[:7]]
    deleted = sorted(p for p in lower if p not in upper)
    whiteouts = [p for p in deleted if os.path.dirname(p) not in lower or os.path.dirname(p) in upper]
    return changed, whiteouts


def write_manifest(path: Path, rows: list[list]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["layer", "path", "kind", "size", "mode", "target"])
    writer.writerows(rows)
    # mtime=0: the same listing always gives the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as out:
        out.write(text.getvalue().encode())


def add_host_strace(root: Path) -> None:
    """The host's strace and the libraries it needs, copied in without dpkg knowing: installing
    the package would change the package database dpkg reads, so the trace would not fit the
    image (the host is Debian bookworm too)."""
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("install strace on the host first (apt-get install strace)")
    libraries = subprocess.run(["ldd", strace], check=True, capture_output=True, text=True).stdout
    for path in [strace] + re.findall(r"=> (/\S+)", libraries):
        inside = root / "usr" / os.path.relpath(os.path.realpath(path), "/usr")
        if not inside.exists():
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(path), inside)
            link = inside.parent / Path(path).name
            if link != inside and not os.path.lexists(link):  # keep the soname the loader looks for
                link.symlink_to(inside.name)


# Programs traced in the image, in this order (the first only reads, so the second still runs
# in exactly the image): file name -> command.
TRACES = {
    "python3-startup.strace.gz": "python3 -c 'import json, email.parser, urllib.request'",
    "dpkg-install-hello.strace.gz": "dpkg -i /root/hello_2.10-3_amd64.deb",
}


def record_traces(top: Path, work: Path, out: Path) -> None:
    scratch = work / "trace-root"
    run("cp", "-a", str(top), str(scratch))
    add_host_strace(scratch)
    for name, command in TRACES.items():
        in_chroot(scratch, f"cd / && /usr/bin/strace -f -tt -T -o /root/trace.txt {command}")
        data = (scratch / "root" / "trace.txt").read_bytes()
        (scratch / "root" / "trace.txt").unlink()
        with open(out / name, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
            gz.write(data)
        lines = data.count(b"\n")
        print(f"trace: {out / name} ({lines} lines)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent), help="where the files go")
    parser.add_argument("--keep", help="build in this directory and keep it (default: a temporary one)")
    parser.add_argument("--no-trace", action="store_true", help="only the image listing, no traces")
    args = parser.parse_args()
    out = Path(args.out)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cowsim-debian-"))
    work.mkdir(parents=True, exist_ok=True)
    base, top = work / "base", work / "top"
    try:
        run("debootstrap", "--variant=minbase", SUITE, str(base), MIRROR)
        in_chroot(base, "apt-get clean")
        clean(base)
        run("cp", "-a", str(base), str(top))
        in_chroot(top, "apt-get update -q && apt-get install -y -q --no-install-recommends "
                       + " ".join(PACKAGES) + " && cd /root && apt-get download -q hello && apt-get clean")
        clean(top)
        lower, upper = scan(base), scan(top)
        changed, whiteouts = diff(lower, upper)
        rows = rows_of(0, lower, list(lower), []) + rows_of(1, upper, changed, whiteouts)
        manifest = out / "debian-bookworm.csv.gz"
        write_manifest(manifest, rows)
        print(f"manifest: {manifest} ({len(rows)} entries, {manifest.stat().st_size} bytes)")
        if not args.no_trace:
            record_traces(top, work, out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
