"""glibc's malloc, told how the service process uses it (vws-service does this at its start).

Each worker thread builds a whole request and its answer (a signed answer listing fifty
workspaces is thousands of lxml nodes plus their canonical text) and frees them again. glibc
gives a thread that finds the arenas busy one of its own, up to 8 a core, and gives back to
the system only the free memory at the very top of an arena: the process keeps the most each
arena ever held at once, which creeps up as requests happen to overlap. So the service's RSS
rose by 11% over bench_load's two-minute signed run while the memory in use stayed flat.

One arena a core is enough for threads that allocate mostly while holding the GIL, and
``malloc_trim`` now and then gives back the free pages inside the arenas. Elsewhere than glibc
both do nothing. MALLOC_ARENA_MAX in the environment still decides the arenas.
"""

import ctypes
import os
import threading

_M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h
TRIM_SECONDS = 30.0  # a trim takes milliseconds (tens on a loaded machine), each arena locked in turn
_libc = ctypes.CDLL(None)


def cap_arenas() -> None:
    """Before the service starts its threads: at most one malloc arena a core."""
    mallopt = getattr(_libc, "mallopt", None)
    if mallopt is not None and "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, os.cpu_count() or 1)


def trim_every(seconds: float, stop: threading.Event) -> None:
    """A daemon thread giving free memory back to the system every ``seconds`` until ``stop`` is set."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is None:
        return

    def run() -> None:
        while not stop.wait(seconds):
            trim(0)

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
