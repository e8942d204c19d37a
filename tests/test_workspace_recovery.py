"""Recovery and reconciliation through the workspace layer alone.

A crash is played by leaving a row as a kill at that instant leaves it, then starting a
new WorkspaceManager on the same store and pool, as a restart does.
"""

import pytest

from tests.workspaces import ALICE, layer, request
from vws.workspace.caller import SERVICE
from vws.workspace.states import Op, State


@pytest.fixture
def vws(tmp_path, clock):
    # A killed service hears no lifecycle events: the domain a test changes "before the kill"
    # must not be reported to the manager while the test writes the row the kill left.
    with layer(tmp_path, clock, domain_events=False) as opened:
        yield opened


@pytest.fixture
def running(vws):
    (created,) = vws.manager.create(ALICE, request())
    vws.settle()
    return vws.manager.get(ALICE, created.id)


def test_a_deployment_cut_off_between_stages_starts_again_from_its_reservation(vws, running):
    vws.pool.shutdown(running.node, running.domain)  # killed after the propagate commit, before the start
    vws.leave_as_killed(running.id, state=State.PROPAGATED.value, work_owed=1)
    findings = vws.restart()
    assert findings == [f"workspace {running.id}: its deployment was cut off; started again"]
    vws.settle()
    assert vws.states.seen[running.id] == [State.UNPROPAGATED, State.PROPAGATED, State.RUNNING]
    again = vws.manager.get(ALICE, running.id)
    assert (again.state, again.work_owed, vws.domain_state(again)) == (State.RUNNING, False, "running")
    assert again.leases == running.leases  # the reservation was kept


def test_a_destroy_cut_off_is_finished_and_gives_everything_back(vws, running):
    vws.leave_as_killed(running.id, state=State.CANCELLED.value)  # killed before the domain was removed
    assert vws.restart() == [f"workspace {running.id}: its destroy was cut off; finished"]
    assert vws.states.seen[running.id] == [State.CANCELLED, State.DESTROYED]
    assert vws.domain_state(running) == "missing" and vws.manager.workspaces(SERVICE) == []
    assert vws.rows("select count(*) from leases where workspace_id = ?", running.id) == [(0,)]


def test_an_unpropagation_cut_off_is_started_again(vws, running):
    vws.manager.shutdown(ALICE, running.id, Op.READY_FOR_TRANSPORT, "file://saved")
    vws.states.wait_for(running.id, State.TRANSPORT_READY)
    vws.leave_as_killed(running.id, state=State.UNPROPAGATING.value, work_owed=1)
    (vws.pool.repository.root / "saved").unlink()  # killed before the disk was saved
    assert vws.restart() == [f"workspace {running.id}: its unpropagation was cut off; started again"]
    vws.states.wait_for(running.id, State.TRANSPORT_READY)
    assert (vws.pool.repository.root / "saved").exists()
    assert not vws.manager.get(ALICE, running.id).work_owed


def test_a_shutdown_cut_off_after_libvirt_did_it_counts_as_done_not_corrupted(vws, running):
    vws.pool.shutdown(running.node, running.domain)  # killed after the domain stopped, before the commit
    vws.leave_as_killed(running.id, operation=Op.SHUTDOWN.value)
    findings = vws.restart()
    assert findings == [f"workspace {running.id}: its shutdown was cut off after libvirt did it; now propagated"]
    after = vws.manager.get(ALICE, running.id)
    assert (after.state, after.operation, vws.domain_state(after)) == (State.PROPAGATED, None, "shutoff")


def test_a_start_cut_off_before_libvirt_did_it_leaves_the_workspace_as_it_was(vws, running):
    vws.manager.shutdown(ALICE, running.id)
    vws.leave_as_killed(running.id, operation=Op.START.value)  # killed before the domain was started
    findings = vws.restart()
    assert findings == [f"workspace {running.id}: its start was cut off; still propagated"]
    after = vws.manager.get(ALICE, running.id)
    assert (after.state, after.operation, vws.domain_state(after)) == (State.PROPAGATED, None, "shutoff")
    assert vws.manager.start(ALICE, running.id).state is State.RUNNING


def test_reconciliation_corrupts_a_workspace_whose_domain_vanished_unreported(tmp_path, clock):
    with layer(tmp_path, clock, domain_events=False) as vws:
        (created,) = vws.manager.create(ALICE, request())
        vws.settle()
        running = vws.manager.get(ALICE, created.id)
        assert vws.manager.reconcile() == []
        vws.pool.remove(running.node, running.domain)  # behind the service's back
        reason = f"libvirt reports domain {running.domain} missing, expected running"
        assert vws.manager.reconcile() == [f"workspace {running.id}: {reason}"]
        corrupted = vws.manager.get(ALICE, running.id)
        assert (corrupted.state, corrupted.fault) == (State.CORRUPTED, reason)
        assert vws.manager.reconcile() == []  # Corrupted is settled: found once
