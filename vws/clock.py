"""The only module that reads the clock, the wall clock and the monotonic one.

Leases, sweepers and timestamps take a Clock, so tests drive time instead of
sleeping: ManualClock.advance wakes every thread waiting in ``sleep_until``.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for intervals (a grace period, a backoff,
        how long an upload took), which a change of the wall clock must not stretch or cut."""

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> None:
        """Return at ``deadline``, when ``stop`` is set, or when time jumps."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> None:
        stop.wait(max(0.0, (deadline - self.now()).total_seconds()))


class ManualClock:
    """A clock that moves only when told to; for tests and replay."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._moved = threading.Condition()
        self._generation = 0
        self._advanced = 0.0  # seconds

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        """Real seconds plus every ``advance``: a wait for a real event (a guest stopping, a consumer
        answering) ends as it would, and one that looks at the clock again ends sooner when advanced."""
        return time.monotonic() + self._advanced

    def advance(self, delta: timedelta) -> None:
        with self._moved:
            self._now += delta
            self._advanced += delta.total_seconds()
            self._generation += 1
            self._moved.notify_all()

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> None:
        with self._moved:
            seen = self._generation
            # Poll `stop` coarsely: Event and Condition cannot be waited on together.
            while self._now < deadline and not stop.is_set() and self._generation == seen:
                self._moved.wait(0.05)


def utc(moment: datetime) -> datetime:
    """Refuse naive datetimes early: every instant in vws is timezone-aware UTC."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC)


def timestamp(moment: datetime) -> str:
    """Fixed-width UTC text: sorts like the instants it names and is a valid xsd:dateTime."""
    # isoformat with a fixed timespec: strftime's text (years always of four digits) for less.
    return utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)  # reads the trailing Z (3.11+), ten times faster than strptime


class Sweeper:
    """A thread that calls ``work()`` every ``period`` and whenever ``next_due()`` passes.

    It sleeps on the injected clock, so tests drive it by advancing a ManualClock;
    ``due_by(moment)`` makes it look again at once only when ``moment`` comes before
    the deadline it sleeps until. Lease expiry and reconciliation both run on one.
    """

    def __init__(
        self,
        clock: Clock,
        next_due: Callable[[], datetime | None],
        work: Callable[[], object],
        period: timedelta,
        name: str = "sweeper",
        *,
        first_after_period: bool = False,
    ) -> None:
        self._clock = clock
        self._next_due = next_due
        self._work = work
        self._period = period
        self._wake = threading.Event()
        self._deadline: datetime | None = None  # None while it works out the next one
        self._stopped = False
        self._first_after_period = first_after_period
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def due_by(self, moment: datetime) -> None:
        """Something is due at ``moment``: look again now if that is earlier than planned."""
        deadline = self._deadline
        if deadline is None or moment < deadline:
            self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        if self._first_after_period:
            self._deadline = self._clock.now() + self._period
            self._clock.sleep_until(self._deadline, self._wake)
        while not self._stopped:
            self._wake.clear()
            self._deadline = None
            try:
                self._work()
            except Exception:
                log.exception("%s failed; retrying next period", self._thread.name)
            deadline = self._clock.now() + self._period
            due = self._next_due()
            self._deadline = min(deadline, due) if due else deadline
            self._clock.sleep_until(self._deadline, self._wake)
