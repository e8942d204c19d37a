"""Which CPUs vws-service's threads run on: one, by default (vws-service pins itself at its start).

The service's threads all run Python, and only the one holding the interpreter lock runs at
a time. Each gives the lock up around every blocking call (each SQLite step, each socket
write), and a thread waiting on another CPU takes it at once. Under bench_load's 50 clients
on two CPUs the lock so changed CPUs dozens of times a request: the kernel's share of the
service's CPU time was about 30%, and every change found the other CPU's caches cold. On one
CPU the thread that let go takes the lock back before a waiter is even scheduled: the same
mix ran about 1.3x as many requests a second on the one CPU as spread over both.

Programs the service starts (qemu-img, genisoimage, XPath workers) would inherit the pin:
they are started ``unpinned``, free to run wherever the service itself may. Its signing
helpers (``vws.security.keyholder``) run on the ``spare`` CPUs, the ones its threads leave.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from vws.config import ConfigError

_everywhere: frozenset[int] | None = None  # the CPUs allowed before pinning; None: not pinned
_pinned: int | None = None  # the CPU the threads are pinned to


def choose(setting: str) -> int | None:
    """The CPU ``[service] cpu`` names for this process (``auto``: the last it may use; ``all``:
    none; a number: that one), or None when its threads stay free (``all``, or only one CPU to
    run on anyway). A CPU the process may not use is a ConfigError."""
    allowed = os.sched_getaffinity(0)
    if setting == "all" or (setting == "auto" and len(allowed) < 2):
        return None
    cpu = max(allowed) if setting == "auto" else int(setting)
    if cpu not in allowed:
        raise ConfigError(
            f"[service] cpu = {cpu}: this process may run only on CPUs {sorted(allowed)}", ("service", "cpu")
        )
    return cpu


def pin(setting: str) -> int | None:
    """Pin this thread, and every thread it starts from now on, to the CPU ``choose`` names; returns it."""
    global _everywhere, _pinned
    allowed = frozenset(os.sched_getaffinity(0))
    cpu = choose(setting)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
        _everywhere, _pinned = allowed, cpu
    return cpu


def spare() -> frozenset[int]:
    """The CPUs this process may use besides the one its threads are pinned to (none when not pinned)."""
    return _everywhere - {_pinned} if _everywhere is not None else frozenset()


@contextmanager
def unpinned() -> Iterator[None]:
    """Programs started inside run on any CPU the service may use, not on the service's own one.
    (Affinity is per thread: only the calling thread is widened, for as long as the block lasts.)"""
    if _everywhere is None:
        yield
        return
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _everywhere)
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)
