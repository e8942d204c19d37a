"""Signatures already accepted: a message is acted on once, however often it is sent."""

import heapq
import threading
from datetime import datetime
from typing import Protocol

from vws.clock import Clock
from vws.security.wssecurity.envelope import SignatureRefused

REPLAYED = "replayed message: this signature was already accepted"


class SeenSignatures(Protocol):
    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` (a signature value) is offered before ``until``; False for every repeat."""


class ReplayCache:
    """Signature values seen, in memory, each kept until its message could no longer be accepted anyway.

    Enough for a client checking replies. The service also records the messages that change
    something in the store, so that a restart does not forget them (vws.soap.replay).
    """

    def __init__(self, clock: Clock, max_entries: int = 1_000_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[bytes, datetime] = {}
        self._heap: list[tuple[datetime, bytes]] = []
        self._max = max_entries

    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` is offered before ``until``; False for every repeat."""
        now = self._clock.now()
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                expired, old = heapq.heappop(self._heap)
                if self._until.get(old) == expired:
                    del self._until[old]
            if key in self._until:
                return False
            if len(self._until) >= self._max:
                raise SignatureRefused("replay cache is full: refusing signed messages until entries expire")
            self._until[key] = until
            heapq.heappush(self._heap, (until, key))
            return True

    def __len__(self) -> int:
        return len(self._until)
