"""Reading the files a user hands over (scenarios, profiles, traces, images, run folders) without
letting one hang the program or fill its memory: regular files only (``/dev/zero`` or a FIFO never
ends), each kind of file with a size cap, and YAML with duplicate keys and deep nesting refused.
Every refusal is a :class:`ReadError` whose message says which file and why, on one line."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import CowsimError

MiB = 2**20
# Caps on what is read whole. A scenario or a profile is a few KiB (a run folder's resolved
# scenario, with a sweep of the most points allowed written one value a line, about 1 MiB); a
# manifest.json holds a few hundred bytes a run; an image's JSON documents (docker save
# manifest, OCI index and manifests) list layers only.
SCENARIO_BYTES = 4 * MiB
PROFILE_BYTES = 1 * MiB
MANIFEST_BYTES = 256 * MiB
IMAGE_JSON_BYTES = 16 * MiB
# YAML and JSON nesting: a scenario is 4 levels deep; the parsers recurse once per level.
MAX_NESTING = 64


class ReadError(CowsimError):
    """A file that is not read: not there, not a regular file, or over its cap."""


def check_regular(path: str | Path, limit: int | None = None, what: str = "file") -> int:
    """The size of ``path``, a regular file (following symbolic links) of at most ``limit`` bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ReadError(f"{path}: no such {what}") from None
    except OSError as error:
        raise ReadError(f"{path}: cannot read the {what}: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ReadError(f"{path}: cannot read the {what}: it is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{path}: cannot read the {what}: not a regular file but {_kind(info.st_mode)}")
    if limit is not None and info.st_size > limit:
        raise ReadError(f"{path}: cannot read the {what}: {info.st_size:,} bytes, more than the {limit:,} it may hold")
    return info.st_size


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (read with the cap: a file that
    grows meanwhile is refused, not read on and on)."""
    check_regular(path, limit, what)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise ReadError(f"{path}: cannot read the {what}: {error.strerror}") from None
    if len(data) > limit:
        raise ReadError(f"{path}: cannot read the {what}: more than the {limit:,} bytes it may hold")
    return data


def read_text(path: str | Path, limit: int, what: str = "file") -> str:
    data = read_bytes(path, limit, what)
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise ReadError(f"{path}: cannot read the {what}: not UTF-8 text (byte {error.start})") from None


def read_capped(handle: IO[bytes], limit: int, where: str, what: str) -> bytes:
    """At most ``limit`` bytes from an open stream (a member of an archive)."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise ReadError(f"{where}: {what} is larger than {limit:,} bytes")
    return data


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (not "the last one wins") and nesting
    deeper than MAX_NESTING (the composer recurses once per level)."""

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_NESTING} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> tuple[Any, Any]:
    """(node tree, data) of one YAML document; raises yaml.YAMLError (with ``problem_mark``)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def yaml_problem(error: yaml.YAMLError) -> tuple[str, int | None]:
    """(what is wrong, line) of a YAML error."""
    mark = getattr(error, "problem_mark", None)
    return getattr(error, "problem", None) or str(error), (mark.line + 1 if mark else None)
