"""WS-ResourceLifetime 2004/06 (draft 01): Destroy, SetTerminationTime, and the sweeper
that destroys resources when their termination time passes.
"""

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from lxml import etree

from vws.clock import Clock, timestamp
from vws.errors import InvalidTerminationTime, MalformedMessage
from vws.xmlns import WSRL, XSI, qname

log = logging.getLogger(__name__)


def destroy_response() -> etree._Element:
    return etree.Element(qname(WSRL, "DestroyResponse"), nsmap={"wsrl": WSRL})


def requested_termination_time(request: etree._Element) -> datetime | None:
    """The RequestedTerminationTime of a SetTerminationTime body; None when nil (never)."""
    requested = request.find(qname(WSRL, "RequestedTerminationTime"))
    if requested is None:
        raise MalformedMessage("SetTerminationTime without RequestedTerminationTime")
    if requested.get(qname(XSI, "nil")) in ("true", "1"):
        return None
    return parse_datetime(requested.text or "")


def set_termination_time_response(new: datetime | None, now: datetime) -> etree._Element:
    response = etree.Element(qname(WSRL, "SetTerminationTimeResponse"), nsmap={"wsrl": WSRL, "xsi": XSI})
    new_time = etree.SubElement(response, qname(WSRL, "NewTerminationTime"))
    if new is None:
        new_time.set(qname(XSI, "nil"), "true")
    else:
        new_time.text = timestamp(new)
    etree.SubElement(response, qname(WSRL, "CurrentTime")).text = timestamp(now)
    return response


def time_properties(termination: datetime | None, now: datetime) -> list[etree._Element]:
    """The CurrentTime and TerminationTime resource properties every lifetime resource has."""
    current = etree.Element(qname(WSRL, "CurrentTime"), nsmap={"wsrl": WSRL})
    current.text = timestamp(now)
    ends = etree.Element(qname(WSRL, "TerminationTime"), nsmap={"wsrl": WSRL, "xsi": XSI})
    if termination is None:
        ends.set(qname(XSI, "nil"), "true")
    else:
        ends.text = timestamp(termination)
    return [current, ends]


def parse_datetime(text: str) -> datetime:
    """An xsd:dateTime; one without a zone is taken as UTC, as GT4 did."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidTerminationTime(f"{text.strip()!r} is not an xsd:dateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class TerminationSweeper:
    """A thread that calls ``expire()`` whenever the earliest termination time passes.

    It sleeps on the injected clock until ``next_due()`` or one ``period`` at most,
    and ``wake()`` makes it look again at once (a termination time moved).
    """

    def __init__(
        self,
        clock: Clock,
        next_due: Callable[[], datetime | None],
        expire: Callable[[], object],
        period: timedelta,
    ) -> None:
        self._clock = clock
        self._next_due = next_due
        self._expire = expire
        self._period = period
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="termination-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.clear()
            try:
                self._expire()
            except Exception:
                log.exception("termination sweep failed; retrying next period")
            deadline = self._clock.now() + self._period
            due = self._next_due()
            self._clock.sleep_until(min(deadline, due) if due else deadline, self._wake)
