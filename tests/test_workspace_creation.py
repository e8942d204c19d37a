"""Creating workspaces through the workspace layer alone: reservation, policy, bring-up."""

from datetime import timedelta

import pytest

from tests.workspaces import ALICE, layer, request
from vws.config import PolicyConfig
from vws.errors import InvalidMetadata, RequestDenied
from vws.workspace.request import DeploymentRequest, DiskRequest, MachineRequest, NicRequest
from vws.workspace.states import State


def test_create_answers_unpropagated_with_its_lease_then_a_deployer_starts_it(tmp_path, clock):
    with layer(tmp_path, clock) as vws:
        (created,) = vws.manager.create(ALICE, request())
        assert created.state is State.UNPROPAGATED and created.work_owed
        assert created.owner == ALICE.identity and created.node == "node1" and created.leases
        assert created.termination_time == clock.now() + timedelta(seconds=PolicyConfig().default_running_seconds)
        vws.settle()
        running = vws.manager.get(ALICE, created.id)
        assert (running.state, running.work_owed, running.started_at) == (State.RUNNING, False, clock.now())
        assert vws.domain_state(running) == "running"
        assert vws.states.seen[created.id] == [State.UNPROPAGATED, State.PROPAGATED, State.RUNNING]


@pytest.mark.parametrize(
    "initial_state, expected, domain",
    [("Unpropagated", State.UNPROPAGATED, "missing"), ("Propagated", State.PROPAGATED, "shutoff")],
)
def test_initial_state_is_where_the_bring_up_stops(tmp_path, clock, initial_state, expected, domain):
    with layer(tmp_path, clock) as vws:
        (created,) = vws.manager.create(ALICE, request(initial_state))
        vws.settle()
        workspace = vws.manager.get(ALICE, created.id)
        assert (workspace.state, vws.domain_state(workspace)) == (expected, domain)


@pytest.mark.parametrize(
    "fields, policy, error, words",
    [
        ({"node_number": 0}, {}, InvalidMetadata, "NodeNumber must be at least 1"),
        ({"node_number": 3}, {"max_group_size": 2}, RequestDenied, "a group may have at most 2"),
        ({"duration": timedelta(days=30)}, {}, RequestDenied, "exceeds the maximum"),
        ({"initial_state": "Flying"}, {}, InvalidMetadata, "unknown InitialState"),
    ],
)
def test_a_request_policy_refuses_reserves_nothing(tmp_path, clock, fields, policy, error, words):
    with layer(tmp_path, clock, PolicyConfig(**policy)) as vws:
        with pytest.raises(error, match=words):
            vws.manager.create(ALICE, request(**fields))
        assert vws.rows("select count(*) from workspaces") == [(0,)]
        assert vws.rows("select count(*) from leases where workspace_id is not null") == [(0,)]


def test_an_admission_check_refuses_inside_the_reservation_and_nothing_is_written(tmp_path, clock):
    def over_quota(db, caller, asked, duration):  # type: ignore[no-untyped-def]
        raise RequestDenied(f"over quota: {caller.identity} asked for {asked.node_number}")

    with layer(tmp_path, clock) as vws:
        vws.manager.add_admission_check(over_quota)
        with pytest.raises(RequestDenied, match="over quota"):
            vws.manager.create(ALICE, request(node_number=2))
        assert vws.rows("select count(*) from workspaces") == [(0,)]


def test_a_group_shares_a_key_and_each_member_saves_to_its_own_target(tmp_path, clock):
    with layer(tmp_path, clock) as vws:
        members = vws.manager.create(ALICE, request(node_number=2, save_target="file://saved"))
        vws.settle()
        assert len({member.group_key for member in members}) == 1 and members[0].group_key
        assert [member.request.save_target for member in members] == [f"file://saved-{m.id}" for m in members]
        assert {vws.manager.get(ALICE, m.id).state for m in members} == {State.RUNNING}


def test_held_workspaces_wait_unpropagated_until_released_together(tmp_path, clock):
    with layer(tmp_path, clock) as vws:
        held = vws.manager.create_held(ALICE, request(), "ensemble-1")
        held += vws.manager.create_held(ALICE, request("Paused"), "ensemble-1")
        assert [(w.state, w.work_owed, w.ensemble_key) for w in held] == [(State.UNPROPAGATED, False, "ensemble-1")] * 2
        vws.settle()  # nothing is owed: they stay as they are
        assert {vws.domain_state(w) for w in held} == {"missing"}
        released = vws.manager.release_held([w.id for w in held])
        assert all(w.work_owed for w in released)
        vws.settle()
        assert [vws.manager.get(ALICE, w.id).state for w in held] == [State.RUNNING, State.PAUSED]


def test_a_stored_request_reads_back_equal_and_immutable():
    # A read shares the parsed request between snapshots, and status answers are cached per
    # snapshot: nothing JSON hands back as a list may stay one.
    root = DiskRequest("file://appliance.qcow2", "sda1", layers=("a" * 64, "b" * 64))
    stored = DeploymentRequest("ws", MachineRequest(256, root=root, nics=(NicRequest("eth0", "public"),)))
    again = DeploymentRequest.from_json(stored.to_json())
    assert again == stored
    assert hash(again) == hash(stored)
