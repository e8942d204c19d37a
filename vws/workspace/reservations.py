"""Advance reservations coming due: each is brought up early enough to be Running at its start.

A reservation is admitted and placed at create (its node's share held over its window in the
capacity calendar, its addresses leased), then waits Unpropagated with no work owed, its
start in ``schedule``. ``[policy] reservation_lead_seconds`` before its start it is released
like a held ensemble member: the deployers copy its image, define and start it. The start
lives in the stored request, so a restart loses no reservation and ``start_due`` finds any
whose moment passed while the service was down.
"""

from datetime import datetime, timedelta

from vws.clock import Clock, parse_timestamp, timestamp
from vws.store.database import Store
from vws.workspace.creation import Creation
from vws.workspace.states import State

# Reservations still waiting: Unpropagated, nothing owed, not an ensemble member, a start.
_WAITING = """
    from workspaces where destroyed_at is null and state = ? and work_owed = 0 and ensemble_key is null
    and json_extract(request, '$.start_at') is not null
"""


class Reservations:
    def __init__(self, store: Store, clock: Clock, lead: timedelta, creation: Creation) -> None:
        self._store = store
        self._clock = clock
        self._lead = lead
        self._creation = creation

    def next_due(self) -> datetime | None:
        """When the next waiting reservation must begin its bring-up."""
        with self._store.reading() as db:
            (start,) = db.execute(
                f"select min(json_extract(request, '$.start_at')) {_WAITING}", [State.UNPROPAGATED.value]
            ).fetchone()
        return None if start is None else parse_timestamp(start) - self._lead

    def start_due(self) -> list[int]:
        """Release every reservation whose bring-up is due; returns their ids."""
        due = timestamp(self._clock.now() + self._lead)
        with self._store.reading() as db:
            ids = [
                row[0]
                for row in db.execute(
                    f"select id {_WAITING} and json_extract(request, '$.start_at') <= ? order by id",
                    [State.UNPROPAGATED.value, due],
                )
            ]
        if ids:
            self._creation.release_held(ids)
        return ids
