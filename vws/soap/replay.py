"""The replay cache kept in the store: a signed message that changed something, accepted before a
restart, stays refused after it.

Refusing Timestamps created before the process started would need no table, but a
Timestamp may be dated up to the clock skew ahead of the service's clock: a message
accepted just before a restart could still be "created after" the new start and be
accepted again, unless every client were refused for the whole skew after each start.
So each such signature is remembered here until its deadline (Created plus the
policy's maximum age, or Expires, plus the skew); expired rows are swept as time passes.

Writing a row costs a commit (~0.1 ms) per request, so reads of resource properties are
not recorded (their Operation says ``changes_state=False``): within one run the verifier's
in-memory cache refuses their replays too, and replayed after a restart a read changes
nothing, answering what the same read would answer then.
"""

import hashlib
from datetime import UTC, datetime, timedelta

from vws.clock import Clock
from vws.store.database import Store

SWEEP_EVERY = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class StoredReplayCache:
    """``MessageVerifier``'s replay cache in the ``seen_signatures`` table (one row per accepted signature)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._next_sweep: datetime | None = None

    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` is offered, across restarts, until ``until``; False for every repeat."""
        now = self._clock.now()
        with self._store.transaction() as db:
            if self._next_sweep is None or now >= self._next_sweep:
                db.execute("delete from seen_signatures where until < ?", [_micros(now)])
                self._next_sweep = now + SWEEP_EVERY
            cursor = db.execute(
                "insert or ignore into seen_signatures (digest, until) values (?, ?)",
                [hashlib.sha256(key).digest(), _micros(until)],
            )
            return cursor.rowcount == 1


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND
