"""What executing one operation measured, kept for tests to read back."""
from __future__ import annotations

from sim.plan import Plan


class OpResult:
    """A record function (:meth:`record`) that keeps what executing one operation measured, for a
    test to read back rather than add it to the records (``Engine.execute(plan, result.record)``)."""

    __slots__ = ("phase_s", "hit_bytes", "miss_bytes", "dentry_hits", "dentry_misses", "start", "end")

    def __init__(self) -> None:
        self.phase_s = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.hit_bytes = self.miss_bytes = self.dentry_hits = self.dentry_misses = 0
        self.start = self.end = 0.0

    def record(self, container: str, worker: int, op: str, path: str, nbytes: int, start: float, end: float,
               plan: Plan, phase_s: list[float], hit_bytes: int, miss_bytes: int, dentry_hits: int,
               dentry_misses: int) -> None:
        """What :meth:`Engine.run` calls at an operation's end (``OpRecords.add``'s signature)."""
        self.start, self.end, self.phase_s = start, end, phase_s
        self.hit_bytes, self.miss_bytes, self.dentry_hits, self.dentry_misses = (hit_bytes, miss_bytes, dentry_hits,
                                                                                 dentry_misses)
