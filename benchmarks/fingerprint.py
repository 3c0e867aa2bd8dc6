"""Fingerprints of the model's full output: a hash of every table (operations, summary, space)
of 19 scenarios that exercise every driver, overlay2 option, workload mode, volumes and traces.
An optimisation must leave them unchanged. Nothing is committed to compare with (the golden
tables and regression baselines pin the model's numbers): compare with the commit you started
from instead.

    git worktree add ../before main
    python -m benchmarks.fingerprint --against ../before        # exit 1 when a case changed
    python -m benchmarks.fingerprint --save before.json         # or save, and later --check it
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from sim.api import validate
from sim.drivers import REGISTRY
from sim.runner import simulate
from sim.scenario import set_dotted

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = list(REGISTRY)
MIX_OPS = {"read": .35, "write": .2, "append": .1, "create": .1, "delete": .05, "stat": .1, "rename": .04,
           "chmod": .03, "truncate": .03}
# Summary columns renamed since fingerprints were first saved, hashed under their old names: a
# renamed column changes no number, and fingerprints of older checkouts and files still compare.
OLD_NAMES = {"operations_executed": "events"}
IMAGE = {"layers": 5, "files_per_layer": 300, "dir_depth": 3, "fanout": 4, "file_size": "16KiB", "sigma": 1.2,
         "overwrite_fraction": 0.1, "delete_fraction": 0.05}


def _mix(name: str, **changes) -> dict:
    data = {"name": name, "seed": 11, "profile": "ssd", "cache": "cold", "image": dict(IMAGE),
            "containers": {"count": 3}, "keep_ops": True,
            "workload": {"kind": "mix", "ops": MIX_OPS, "file_choice": "zipf", "workers": 2, "operations": 1500}}
    return _changed(data, changes)


def cases() -> dict[str, dict]:
    found = {f"mix-{driver}": _mix(f"mix-{driver}", **{"driver.name": driver}) for driver in DRIVERS}
    for option in ("metacopy", "redirect_dir", "reflink", "volatile"):
        found[f"mix-overlay2-{option}"] = _mix(option, **{"driver.name": "overlay2", f"driver.options.{option}": True})
    found["mix-warm-uniform"] = _mix("warm", **{"cache": "warm", "workload.file_choice": "uniform",
                                                "driver.name": "zfs"})
    found["mix-open-loop"] = _mix("open", **{"workload.mode": "open", "workload.arrival_rate": 3000,
                                             "workload.operations": None, "workload.duration": 0.5})
    found["mix-fsync-volume"] = _mix("volume", **{"workload.fsync": True, "workload.volume_fraction": 0.4,
                                                  "containers.volumes": [{"name": "data", "mount": "/v"}],
                                                  "containers.remove_at_end": True})
    found["mix-hdd-devicemapper-4-workers"] = _mix("hdd", **{"profile": "hdd", "driver.name": "devicemapper",
                                                        "workload.workers": 4})
    found["probe-sweep"] = {"name": "probe", "seed": 3, "profile": "ssd", "cache": "cold", "keep_ops": True,
                            "image": {"kind": "probe", "file_size": "1MiB", "layers": 8, "dir_depth": 4},
                            "workload": {"kind": "copyup_probe"},
                            "sweep": {"driver.name": DRIVERS, "cache": ["cold", "warm"]}}
    found["throughput-20k"] = _load(ROOT / "scenarios" / "bench" / "throughput.yaml",
                                    {"workload.operations": 20_000})
    found["debian-trace"] = _load(ROOT / "scenarios" / "debian_trace.yaml", {"containers.count": 2})
    return found


def _load(path: Path, changes: dict) -> dict:
    return _changed(_absolute_files(yaml.safe_load(path.read_text()), path.parent), changes)


def _absolute_files(node, folder: Path):
    """The scenario with the files it names relative to its folder made absolute, so that any
    checkout's ``sim`` (older ones read them from the working directory) finds them."""
    if isinstance(node, dict):
        return {key: _absolute_files(value, folder) for key, value in node.items()}
    if isinstance(node, list):
        return [_absolute_files(value, folder) for value in node]
    if isinstance(node, str) and "/" in node and (folder / node).is_file():
        return str((folder / node).resolve())
    return node


def _changed(data: dict, changes: dict) -> dict:
    """``data`` with dotted fields (``workload.operations``) set."""
    for dotted, value in changes.items():
        set_dotted(data, dotted, value)
    return data


def _digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()
                          + ",".join(map(str, frame.columns)).encode()).hexdigest()[:16]


def fingerprint(data: dict) -> dict:
    digests = {}
    for index, (_values, point) in enumerate(validate(data)):
        for replicate in range(point.replicates):
            result = simulate(point, replicate)
            summary = pd.DataFrame([result.summary]).rename(columns=OLD_NAMES)
            digests[f"{index}.{replicate}"] = "/".join(_digest(t) for t in (result.ops, summary, result.space))
    return digests


def _fingerprints_of(checkout: Path, names: list[str]) -> dict:
    """The same cases simulated by another checkout's ``sim`` (this file runs there)."""
    with tempfile.TemporaryDirectory() as scratch:
        saved = Path(scratch) / "fingerprints.json"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--save", str(saved), *names],
                       cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout.resolve())}, check=True)
        return json.loads(saved.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", type=Path, help="write the fingerprints to this JSON file")
    parser.add_argument("--check", type=Path, help="compare with fingerprints saved earlier")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT",
                        help="compare with another commit's checkout (its sim, these scenarios)")
    parser.add_argument("only", nargs="*", help="case names (default: all)")
    args = parser.parse_args(argv)
    known = cases()
    unknown = [name for name in args.only if name not in known]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}: use {', '.join(known)}")
    selected = {k: v for k, v in known.items() if not args.only or k in args.only}
    found = {}
    for name, data in selected.items():
        found[name] = fingerprint(data)
        print(f"{name}: {len(found[name])} runs", file=sys.stderr)
    if args.save:
        args.save.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    expected = None
    if args.against:
        expected = _fingerprints_of(args.against, list(selected))
    elif args.check:
        expected = json.loads(args.check.read_text())
    if expected is not None:
        changed = [name for name in found if found[name] != expected.get(name)]
        for name in changed:
            print(f"CHANGED: {name}")
        print(f"{len(found) - len(changed)} of {len(found)} cases identical")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
