"""One logical file operation of a container: what workloads and traces make, the host routes
and the drivers turn into plans. Its own module, so that none of them imports another for it."""
from __future__ import annotations

from dataclasses import dataclass

# The kinds of operation every driver implements (``Driver._op_<kind>``).
OPERATIONS = ("stat", "read", "write", "append", "truncate", "open_trunc", "create", "unlink",
              "rename", "mkdir", "rmdir", "chmod")


@dataclass(slots=True)
class Op:
    """One logical file operation of a container. Writes are open, pwrite, [fsync], close."""

    kind: str
    path: str
    offset: int = 0
    nbytes: int = 0
    target: str = ""
    sync: bool = False
