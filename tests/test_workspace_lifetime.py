"""Leases through the workspace layer alone, on the injected clock: moving them, and expiry."""

from datetime import timedelta

import pytest

from tests.workspaces import ALICE, layer, request
from vws.config import PolicyConfig
from vws.errors import InvalidTerminationTime
from vws.workspace.caller import SERVICE
from vws.workspace.states import State

HOUR = timedelta(hours=1)


@pytest.fixture
def vws(tmp_path, clock):
    with layer(tmp_path, clock, PolicyConfig(maximum_running_seconds=3 * 3600)) as opened:
        yield opened


def test_a_lease_moves_within_the_maximum_running_time(vws, clock):
    (created,) = vws.manager.create(ALICE, request(duration=HOUR))
    assert vws.manager.next_termination() == clock.now() + HOUR
    moved = vws.manager.set_termination_time(ALICE, created.id, clock.now() + 2 * HOUR)
    assert moved.termination_time == clock.now() + 2 * HOUR == vws.manager.next_termination()
    with pytest.raises(InvalidTerminationTime, match="exceeds the maximum running time"):
        vws.manager.set_termination_time(ALICE, created.id, clock.now() + 4 * HOUR)
    with pytest.raises(InvalidTerminationTime, match="cannot be made infinite"):
        vws.manager.set_termination_time(ALICE, created.id, None)
    assert vws.manager.get(ALICE, created.id).termination_time == clock.now() + 2 * HOUR


def test_expiry_destroys_only_what_is_due_shutting_it_down_first(vws, clock):
    (short,) = vws.manager.create(ALICE, request(duration=HOUR))
    (long,) = vws.manager.create(ALICE, request(duration=2 * HOUR))
    vws.settle()
    assert vws.manager.expire_due() == []
    clock.advance(HOUR)
    assert vws.manager.expire_due() == [short.id]
    assert vws.states.seen[short.id][-4:] == [State.RUNNING, State.PROPAGATED, State.CANCELLED, State.DESTROYED]
    assert [w.id for w in vws.manager.workspaces(SERVICE)] == [long.id]
    assert vws.manager.next_termination() == long.termination_time


def test_a_trash_workspace_expires_without_a_shutdown(vws, clock):
    (created,) = vws.manager.create(ALICE, request(duration=HOUR, trash_at_shutdown=True))
    vws.settle()
    clock.advance(HOUR)
    assert vws.manager.expire_due() == [created.id]
    assert vws.states.seen[created.id][-3:] == [State.RUNNING, State.CANCELLED, State.DESTROYED]
    assert vws.manager.next_termination() is None
