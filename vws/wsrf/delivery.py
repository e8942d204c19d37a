"""Delivering notifications: queued, ordered per lane, retried, never on the request path.

Each subscription is a *lane*: its messages go out one at a time, in the order they
were queued. A small pool of worker threads serves the lanes that have work, so a
consumer that is dead or hangs holds at most one worker for at most one timeout per
attempt, and every other lane keeps moving.

The rule for consumers that do not answer (anything but HTTP 2xx, or no answer
within the timeout): a message is tried ``attempts`` times, the waits between
tries doubling from ``retry``; then it is logged and dropped, and the lane moves
on, so a consumer that comes back gets later messages. When ``drop_after``
messages in a row have been dropped (however far apart they were queued), the
lane's backlog is discarded and ``on_dead(lane)`` is told, which destroys the
subscription.

With an ``Outbox`` every queued message is also a row in SQLite until it is delivered
or dropped, and ``start`` queues the rows again: a restart loses no notification, and
delivers each at least once (one in flight at a SIGKILL is sent again).
"""

import heapq
import http.client
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree

from vws.clock import Clock
from vws.store.database import Store
from vws.wsrf.notification import NOTIFY_ACTION
from vws.xmlparse import parse

log = logging.getLogger(__name__)

Seal = Callable[[etree._Element], None]


@dataclass(frozen=True)
class DeliveryPolicy:
    workers: int = 8
    timeout: float = 5.0  # seconds, per attempt
    attempts: int = 5
    retry: float = 0.2  # seconds before the second attempt; doubles after each
    drop_after: int = 3


class Outbox:
    """The messages still owed to consumers, in SQLite; ids keep the queueing order."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, lane: str, address: str, envelope: etree._Element) -> int:
        with self._store.transaction() as db:
            cursor = db.execute(
                "insert into notification_outbox (lane, address, envelope) values (?, ?, ?)",
                [lane, address, etree.tostring(envelope, encoding="unicode")],
            )
            return cursor.lastrowid or 0

    def remove(self, message_id: int) -> None:
        with self._store.transaction() as db:
            db.execute("delete from notification_outbox where id = ?", [message_id])

    def discard(self, lane: str) -> None:
        with self._store.transaction() as db:
            db.execute("delete from notification_outbox where lane = ?", [lane])

    def depth(self) -> int:
        """How many messages are still owed."""
        with self._store.reading() as db:
            return db.execute("select count(*) from notification_outbox").fetchone()[0]

    def owed(self) -> list[tuple[int, str, str, etree._Element]]:
        """(id, lane, address, envelope) of every message still owed, oldest first."""
        with self._store.reading() as db:
            rows = db.execute("select id, lane, address, envelope from notification_outbox order by id").fetchall()
        return [(message_id, lane, address, parse(text.encode())) for message_id, lane, address, text in rows]


@dataclass
class _Lane:
    key: str
    address: str = ""
    queue: deque[tuple[int, etree._Element]] = field(default_factory=deque)  # (outbox id or 0, envelope)
    scheduled: bool = False  # a worker holds it, or it waits in the ready or retry queue
    attempt: int = 0
    dropped_in_a_row: int = 0


class Delivery:
    def __init__(
        self,
        clock: Clock,
        policy: DeliveryPolicy = DeliveryPolicy(),
        on_dead: Callable[[str], None] = lambda lane: None,
        seal: Seal | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._clock = clock  # times the backoff between attempts
        self._policy = policy
        self._on_dead = on_dead
        self._outbox = outbox
        # Signs each envelope when the service signs (the security layer's MessageSigner).
        self._seal = seal
        self._lanes: dict[str, _Lane] = {}
        self._ready: deque[_Lane] = deque()
        self._retries: list[tuple[float, int, _Lane]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._stopped = False
        self._workers = [
            threading.Thread(target=self._work, name=f"notify-{n}", daemon=True) for n in range(policy.workers)
        ]

    def start(self) -> None:
        """Queue what the outbox still owes, then deliver."""
        for message_id, lane, address, envelope in self._outbox.owed() if self._outbox else ():
            self._queue(lane, address, message_id, envelope)
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()

    def send(self, lane_key: str, address: str, envelope: etree._Element) -> None:
        """Queue ``envelope`` for ``address`` behind everything already queued on the lane."""
        message_id = self._outbox.add(lane_key, address, envelope) if self._outbox else 0
        self._queue(lane_key, address, message_id, envelope)

    def _queue(self, lane_key: str, address: str, message_id: int, envelope: etree._Element) -> None:
        with self._changed:
            lane = self._lanes.setdefault(lane_key, _Lane(lane_key))
            lane.address = address
            lane.queue.append((message_id, envelope))
            if not lane.scheduled:
                lane.scheduled = True
                self._ready.append(lane)
                self._changed.notify()

    def pending(self) -> int:
        """Messages queued and not yet delivered or dropped."""
        with self._changed:
            return sum(len(lane.queue) for lane in self._lanes.values())

    # ---- the workers --------------------------------------------------------------------

    def _work(self) -> None:
        while (lane := self._next_lane()) is not None:
            message_id, envelope = lane.queue[0]
            self._settle(lane, message_id, self._post(lane, envelope))

    def _next_lane(self) -> _Lane | None:
        with self._changed:
            while not self._stopped:
                now = self._clock.monotonic()
                while self._retries and self._retries[0][0] <= now:
                    self._ready.append(heapq.heappop(self._retries)[2])
                if self._ready:
                    return self._ready.popleft()
                self._changed.wait(self._retries[0][0] - now if self._retries else None)
            return None

    def _settle(self, lane: _Lane, message_id: int, delivered: bool) -> None:
        """Retry the lane's first message later, or be done with it: delivered or dropped."""
        dead = False
        with self._changed:
            if delivered:
                lane.queue.popleft()
                lane.attempt = lane.dropped_in_a_row = 0
            else:
                lane.attempt += 1
                if lane.attempt < self._policy.attempts:
                    due = self._clock.monotonic() + self._policy.retry * 2 ** (lane.attempt - 1)
                    heapq.heappush(self._retries, (due, next(self._order), lane))
                    self._changed.notify()
                    return
                dead = self._give_up(lane)
            if lane.queue:
                self._ready.append(lane)
                self._changed.notify()
            else:
                lane.scheduled = False
                if not lane.dropped_in_a_row and self._lanes.get(lane.key) is lane:
                    # An idle lane costs nothing to make again; one whose consumer is failing keeps its count.
                    del self._lanes[lane.key]
        if self._outbox:
            self._outbox.discard(lane.key) if dead else self._outbox.remove(message_id)
        if dead:
            self._on_dead(lane.key)

    def _give_up(self, lane: _Lane) -> bool:
        lane.queue.popleft()
        lane.attempt = 0
        lane.dropped_in_a_row += 1
        log.warning("notification to %s dropped after %d attempts", lane.address, self._policy.attempts)
        if lane.dropped_in_a_row < self._policy.drop_after:
            return False
        log.warning("consumer %s lost %d messages in a row; ending it", lane.address, lane.dropped_in_a_row)
        lane.queue.clear()
        lane.dropped_in_a_row = 0
        return True

    def _post(self, lane: _Lane, envelope: etree._Element) -> bool:
        if self._seal is not None:
            self._seal(envelope)
        body = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NOTIFY_ACTION}"'}
        connection = None
        try:
            connection = _connect(lane.address, self._policy.timeout)
            connection.request("POST", urlsplit(lane.address).path or "/", body, headers)
            response = connection.getresponse()
            response.read()
            return 200 <= response.status < 300
        except (OSError, http.client.HTTPException, ValueError) as exc:
            log.info("notification to %s failed: %s", lane.address, exc)
            return False
        finally:
            if connection is not None:
                connection.close()


def _connect(address: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(address)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"cannot deliver to {address!r}")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
