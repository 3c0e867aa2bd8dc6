"""fuse-overlayfs: the overlay algorithm in a user-space daemon.

Every operation pays a round trip to the daemon, cold lookups probe layers in user space (far
slower per layer than the kernel) and data passes through FUSE at a lower rate. Its cache is
per mount: containers do not share the page cache of the image's files.

One daemon serves one mount, and by default with one thread (containers/fuse-overlayfs main.c:
``fuse_session_loop`` unless ``-o threaded=1``): a container's requests are served one at a
time, while the daemons of different containers run in parallel on the host's cores. With
threads, libfuse's ``fuse_session_loop_mt`` serves requests in parallel, but every request other
than a data read or write takes the daemon's one big lock (``enter_big_lock``).
"""
from pydantic import BaseModel, ConfigDict, Field

from ..plan import DATA, LOCK, LOOKUP, READ, UNLOCK, WRITE
from .base import register
from .union import UnionDriver


class FuseOverlayfsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    volatile: bool = Field(False, description="fuse-overlayfs -o fsync=0: no fsync after copy-up, fsync(2) is a no-op")
    reflink: bool = Field(False, description=(
        "copy-up by copy_file_range on a filesystem that clones (xfs with reflink, btrfs)"
    ))
    threads: int = Field(1, ge=1, le=1024, description=(
        "daemon threads serving the mount: 1 is fuse-overlayfs's default single-threaded loop; more is -o "
        "threaded=1, where data reads and writes run in parallel and every other request holds the daemon's big lock "
        "[count]"
    ))


@register
class FuseOverlayfs(UnionDriver):
    name = "fuse-overlayfs"
    summary = "overlay algorithm in user space: a context switch per request, slow cold lookups, per-mount cache"
    Options = FuseOverlayfsOptions
    fuse = True
    shares_page_cache = False

    def apply(self, cid, op):
        """The operation's plan, served by the mount's daemon: it holds one of the daemon's
        threads throughout (taken first, so that it nests outside the kernel's locks), and with
        several threads the big lock until its data transfer starts."""
        plan = super().apply(cid, op)
        threads = self.options.threads
        daemon = ("fuse-daemon", cid)
        steps = [(LOCK, LOOKUP, daemon, threads)]
        if threads == 1:
            steps += plan.steps
        else:
            big_lock = ("fuse-big-lock", cid)
            steps.append((LOCK, LOOKUP, big_lock, 1))
            for index, step in enumerate(plan.steps):
                if step[0] in (READ, WRITE) and step[1] == DATA:
                    steps += plan.steps[:index]
                    steps.append((UNLOCK, DATA, big_lock))
                    steps += plan.steps[index:]
                    break
            else:
                steps += plan.steps
                steps.append((UNLOCK, DATA, big_lock))
        steps.append((UNLOCK, DATA, daemon))
        plan.steps = steps
        return plan
