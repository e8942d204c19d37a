"""The injected clock's monotonic reading, which grace periods, backoffs and timings use."""

from datetime import timedelta

from vws.clock import ManualClock


def test_a_manual_clock_moves_its_monotonic_reading_with_every_advance_and_never_back():
    clock = ManualClock()
    before, wall = clock.monotonic(), clock.now()
    clock.advance(timedelta(hours=1))
    assert clock.monotonic() - before >= 3600  # a shutdown's grace measured on it is over
    assert clock.now() == wall + timedelta(hours=1)
    readings = [clock.monotonic() for _ in range(100)]
    assert readings == sorted(readings)
