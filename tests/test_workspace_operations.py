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
    vws.manager.on_domain_event(workspace.node, workspace.domain, "crashed")
    vws.states.wait_for(running, State.CORRUPTED)
    assert "crashed unexpectedly" in vws.manager.get(ALICE, running).fault
    assert vws.manager.destroy(ALICE, running).state is State.DESTROYED
