"""The only module that reads the wall clock.

Leases, sweepers and timestamps take a Clock, so tests drive time instead of
sleeping: ManualClock.advance wakes every thread waiting in ``sleep_until``.
"""

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> None:
        """Return at ``deadline``, when ``stop`` is set, or when time jumps."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> None:
        stop.wait(max(0.0, (deadline - self.now()).total_seconds()))


class ManualClock:
    """A clock that moves only when told to; for tests and replay."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._moved = threading.Condition()
        self._generation = 0

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        with self._moved:
            self._now += delta
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
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
