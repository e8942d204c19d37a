"""Each operation through the workspace layer alone: its transition, the domain, the record."""

import pytest

from tests.workspaces import ALICE, BOB, layer, request
from vws.errors import IllegalState, OperationDisabled, UnknownResource
from vws.workspace.caller import SERVICE
from vws.workspace.states import Op, State


@pytest.fixture
def vws(tmp_path, clock):
    with layer(tmp_path, clock) as opened:
        yield opened


@pytest.fixture
def running(vws):
    (created,) = vws.manager.create(ALICE, request())
    vws.settle()
    return created.id


@pytest.mark.parametrize(
    "operations, state, domain",
    [
        ([("shutdown", Op.SHUTDOWN)], State.PROPAGATED, "shutoff"),
        ([("shutdown", Op.SHUTDOWN), ("start", None)], State.RUNNING, "running"),
        ([("shutdown", Op.PAUSE)], State.PAUSED, "paused"),
        ([("shutdown", Op.PAUSE), ("start", None)], State.RUNNING, "running"),
        ([("shutdown", Op.REBOOT)], State.RUNNING, "running"),
    ],
)
def test_each_operation_moves_the_workspace_and_its_domain(vws, running, operations, state, domain):
    answers = [getattr(vws.manager, name)(ALICE, running, *([op] if op else [])) for name, op in operations]
    assert answers[-1].state is state
    workspace = vws.manager.get(ALICE, running)
    assert (workspace.state, vws.domain_state(workspace)) == (state, domain)


def test_destroy_removes_the_domain_and_gives_back_its_addresses(vws, running):
    workspace = vws.manager.get(ALICE, running)
    destroyed = vws.manager.destroy(ALICE, running)
    assert destroyed.state is State.DESTROYED and vws.domain_state(workspace) == "missing"
    assert vws.states.seen[running][-2:] == [State.CANCELLED, State.DESTROYED]
    with pytest.raises(UnknownResource):
        vws.manager.get(ALICE, running)
    assert vws.manager.workspaces(SERVICE) == []
    assert vws.rows("select count(*) from leases where workspace_id = ?", running) == [(0,)]


def test_a_destroy_that_finds_the_workspace_already_destroyed_says_it_is_unknown(vws, running):
    # Two destroys race (a client's and its watcher's auto-destroy, or a lease's end): the one
    # that waited for the workspace's lock finds it gone, the same answer as any later call.
    vws.manager.destroy(ALICE, running)
    with pytest.raises(UnknownResource):
        vws.manager._operations.apply(running, Op.DESTROY)  # past the caller's check, as the waiter is


def test_an_operation_the_state_does_not_allow_is_refused_and_changes_nothing(vws, running):
    with pytest.raises(IllegalState, match="cannot start a workspace that is Running"):
        vws.manager.start(ALICE, running)
    assert vws.manager.get(ALICE, running).state is State.RUNNING
    assert vws.states.seen[running][-1] is State.RUNNING


def test_someone_elses_workspace_is_unknown_to_a_caller(vws, running):
    with pytest.raises(UnknownResource):
        vws.manager.shutdown(BOB, running)
    with pytest.raises(UnknownResource):
        vws.manager.destroy(BOB, running)
    assert vws.manager.workspaces(BOB) == []
    assert [w.id for w in vws.manager.workspaces(ALICE)] == [running]


def test_after_its_lease_only_destroy_is_possible(vws, clock, running):
    clock.advance(vws.manager.get(ALICE, running).duration)
    with pytest.raises(OperationDisabled, match="lease .* has ended"):
        vws.manager.shutdown(ALICE, running)
    assert vws.manager.destroy(ALICE, running).state is State.DESTROYED


def test_ready_for_transport_saves_the_disk_in_the_background(vws, running):
    answered = vws.manager.shutdown(ALICE, running, Op.READY_FOR_TRANSPORT, "file://saved-disk")
    assert answered.state is State.UNPROPAGATING and answered.work_owed
    vws.states.wait_for(running, State.TRANSPORT_READY)
    workspace = vws.manager.get(ALICE, running)
    assert (workspace.state, workspace.work_owed) == (State.TRANSPORT_READY, False)
    assert workspace.request.save_target == "file://saved-disk"
    assert (vws.pool.repository.root / "saved-disk").exists()


def test_a_lifecycle_event_of_a_domain_that_died_corrupts_its_workspace(vws, running):
    workspace = vws.manager.get(ALICE, running)
    vws.pool._driver(workspace.node).destroy(workspace.domain)  # behind the service's back
    vws.manager.on_domain_event(workspace.node, workspace.domain, "crashed")
    vws.states.wait_for(running, State.CORRUPTED)
    # libvirt's own event for the destroy ("stopped") may be handled before the one sent here.
    reasons = {f"domain {workspace.domain} {event} unexpectedly" for event in ("stopped", "crashed")}
    assert vws.manager.get(ALICE, running).fault in reasons
    assert vws.manager.destroy(ALICE, running).state is State.DESTROYED


@pytest.mark.parametrize("event", ["stopped", "crashed", "undefined"])
def test_a_stale_event_of_a_domain_that_runs_again_changes_nothing(vws, running, event):
    """A shutdown's "stopped", handled after the start that followed it, meets a Running workspace
    whose domain runs: not a surprise (8 of 8 such workspaces once ended Corrupted under load)."""
    vws.manager.shutdown(ALICE, running, Op.SHUTDOWN)
    workspace = vws.manager.start(ALICE, running)
    (other,) = vws.manager.create(ALICE, request())
    vws.settle()
    vws.manager.on_domain_event(workspace.node, workspace.domain, event)
    # Events are handled one at a time, in order: once a real crash reported after it has been
    # handled, so has the stale one.
    vws.pool._driver(other.node).destroy(other.domain)
    vws.manager.on_domain_event(other.node, other.domain, "crashed")
    vws.states.wait_for(other.id, State.CORRUPTED)
    assert (vws.manager.get(ALICE, running).state, vws.domain_state(workspace)) == (State.RUNNING, "running")


def test_a_create_and_destroy_churn_leaves_no_bookkeeping_behind(vws):
    """Destroyed before their bring-up ran, or after: nothing per workspace stays in memory."""
    for _ in range(30):
        (created,) = vws.manager.create(ALICE, request())
        vws.manager.destroy(ALICE, created.id)
    vws.settle()
    (last,) = vws.manager.create(ALICE, request())
    vws.settle()
    vws.manager.destroy(ALICE, last.id)
    vws.manager.close()  # once libvirt's events of those destroys are handled too
    assert vws.manager.bookkeeping() == {"locks in use": 0, "destroys waiting": 0, "copies in flight": 0}
    assert vws.manager.snapshots_kept() == 0


@pytest.mark.parametrize("op", [Op.READY_FOR_TRANSPORT, Op.SHUTDOWN, Op.PAUSE])
def test_an_operation_during_the_bring_up_is_refused_and_changes_nothing(vws, running, op):
    """Between a bring-up's steps (Propagated, its start still owed) a shutdown-save was once
    accepted, saved the disk, and then met the start: Corrupted for a request that was accepted."""
    vws.leave_as_killed(running, state=State.PROPAGATED.value, work_owed=1)
    with pytest.raises(IllegalState, match="still being deployed"):
        vws.manager.shutdown(ALICE, running, op)
    workspace = vws.manager.get(ALICE, running)
    assert (workspace.state, workspace.work_owed) == (State.PROPAGATED, True)


# A snapshot is built once per committed revision: reused while nothing it is built from has
# changed, rebuilt after any change to its row or its leases, never taken from a transaction
# that may still roll back.


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
