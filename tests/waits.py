"""How long a test waits for a process or an event before it calls the wait hung."""

# Tests wait on events (a line printed, a pipe written or closed, a process ending), never on
# sleeps; this bound only ends a wait that would never end. It is no speed check: each of these
# waits takes seconds on an idle machine, and a machine busy with other work stretches that
# tenfold or more (one timed out at 60 s under a load average of 17 on 2 cores).
HANG_SECONDS = 900
