"""Signatures already accepted: a message is acted on once, however often it is sent."""

import hashlib
import math
import threading
from datetime import datetime, timedelta
from typing import Protocol

from vws.clock import Clock
from vws.security.wssecurity.envelope import SignatureRefused

REPLAYED = "replayed message: this signature was already accepted"
# Deadlines are grouped into this many slots per window: a slot is forgotten whole once its last
# deadline has passed, so an entry outlives its deadline by at most a window / SLOTS.
SLOTS = 32
# The most signed messages a second the cache is sized for: over ten times the service's signed load run
# (about 85 a second on two cores), so only a flood fills it and is refused, in at most
# window x PER_SECOND x ~100 bytes (90 MB for the default 15-minute window).
PER_SECOND = 1000


class SeenSignatures(Protocol):
    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` (a signature value) is offered before ``until``; False for every repeat."""


class ReplayCache:
    """Signature values seen, in memory, each kept until its message could no longer be accepted anyway.

    Each is kept as a 16-byte BLAKE2b digest of the value, in the set of the slot its deadline
    falls in: about 100 bytes an entry. Two values sharing a digest (a 128-bit collision) would
    only refuse the second as a replay, never let a replay through. ``window``: how far ahead of
    now a deadline can be (the policy's ``replay_window``); the cache holds at most a window's
    worth of messages at ``per_second``.

    Enough for a client checking replies. The service also records the messages that change
    something in the store, so that a restart does not forget them (vws.soap.replay).
    """

    def __init__(self, clock: Clock, window: timedelta, per_second: int = PER_SECOND) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._grain = window.total_seconds() / SLOTS
        self._slots: dict[int, set[bytes]] = {}  # n: the digests due in ((n - 1) grains, n grains] of 1970
        self._count = 0
        self._capacity = math.ceil(window.total_seconds() * per_second)

    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` is offered before ``until``; False for every repeat."""
        digest = hashlib.blake2b(key, digest_size=16).digest()
        with self._lock:
            self._forget_before(self._clock.now())
            if any(digest in seen for seen in self._slots.values()):
                return False
            if self._count >= self._capacity:
                raise SignatureRefused("replay cache is full: refusing signed messages until entries expire")
            self._slots.setdefault(math.ceil(until.timestamp() / self._grain), set()).add(digest)
            self._count += 1
            return True

    def _forget_before(self, now: datetime) -> None:
        """Drops the slots whose every deadline is before ``now``."""
        current = now.timestamp() / self._grain
        for slot in [slot for slot in self._slots if slot < current]:
            self._count -= len(self._slots.pop(slot))

    def __len__(self) -> int:
        return self._count
