"""A workspace's snapshot is built once per committed revision: reused while nothing it is
built from has changed, rebuilt after any change to its row or its leases, never taken from
a transaction that may still roll back."""

import pytest

from tests.workspaces import ALICE, layer, request
from vws.workspace.states import State


@pytest.fixture
def vws(tmp_path, clock):
    with layer(tmp_path, clock) as opened:
        yield opened


@pytest.fixture
def running(vws):
    (created,) = vws.manager.create(ALICE, request())
    vws.settle()
    return created.id


def test_an_unchanged_workspace_is_read_without_being_built_again(vws, running):
    first = vws.manager.get(ALICE, running)
    assert vws.manager.get(ALICE, running) is first
    assert vws.manager.workspaces(ALICE) == [first] and vws.manager.workspaces(ALICE)[0] is first


def test_a_change_to_a_lease_alone_is_seen_at_once(vws, running):
    before = vws.manager.get(ALICE, running)
    assert before.leases, "the sample request asks for an address"
    with vws.store.transaction() as db:  # as a network pool file edited under a held address
        db.execute("update leases set hostname = 'renamed' where workspace_id = ?", [running])
    after = vws.manager.get(ALICE, running)
    assert [lease.hostname for lease in after.leases] == ["renamed"] * len(before.leases)
    assert after.revision > before.revision


def test_a_change_to_the_row_is_seen_at_once(vws, running):
    before = vws.manager.get(ALICE, running)
    with vws.store.transaction() as db:
        db.execute("update workspaces set termination_time = '2099-01-01T00:00:00+00:00' where id = ?", [running])
    after = vws.manager.get(ALICE, running)
    assert after.termination_time.year == 2099 and after.revision > before.revision


def test_what_a_transaction_read_and_then_rolled_back_is_never_served(vws, running):
    class Undone(Exception):
        pass

    with pytest.raises(Undone), vws.store.transaction() as db:
        db.execute("update workspaces set state = ? where id = ?", [State.CORRUPTED.value, running])
        assert vws.manager.get(ALICE, running).state is State.CORRUPTED  # the transaction sees its own write
        raise Undone
    with vws.store.transaction() as db:  # the same revision again, committed this time with another state
        db.execute("update workspaces set state = ? where id = ?", [State.PAUSED.value, running])
    assert vws.manager.get(ALICE, running).state is State.PAUSED


def test_a_destroyed_workspace_is_not_kept(vws, running):
    vws.manager.get(ALICE, running)
    vws.manager.destroy(ALICE, running)
    vws.settle()
    assert vws.manager.workspaces(ALICE) == []
    assert vws.manager.snapshots_kept() == 0
