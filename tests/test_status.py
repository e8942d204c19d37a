"""WorkspaceStatusService end to end: each caller sees only its own workspaces."""

from datetime import timedelta

import pytest

from tests.callers import ALICE, BOB, client, serve
from tests.gt4wire import created_eprs
from tests.resources import create, create_request, status_call
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import JSDL, LOGISTICS, NEGOTIABLE, STATUS, TYPES, WORKSPACE, qname

KEY = qname(WORKSPACE, "WorkspaceKey")


@pytest.fixture
def callers(tmp_path, clock):
    with serve(tmp_path / "state", clock) as service:
        alice, bob = client(service, ALICE), client(service, BOB)
        yield alice, bob
        alice.close()
        bob.close()


def current(caller) -> dict[str, str]:
    """Workspace key -> state, from queryCurrentWorkspaces."""
    reply = status_call(caller, "queryCurrentWorkspaces", "queryCurrentWorkspaces")
    return {
        EndpointReference.from_element(one.find(qname(STATUS, "epr"))).key(KEY): one.findtext(
            f"{{{TYPES}}}currentState/{{{TYPES}}}state"
        )
        for one in reply.iterchildren(qname(STATUS, "oneCurrentWorkspace"))
    }


def test_each_caller_sees_only_its_own_workspaces(callers):
    alice, bob = callers
    mine = {epr.key(KEY) for epr in created_eprs(create(alice, create_request(node_number=2)))}
    (theirs,) = created_eprs(create(bob, create_request(initial_state="Propagated")))
    assert current(alice) == dict.fromkeys(mine, "Running")
    assert current(bob) == {theirs.key(KEY): "Propagated"}
    bob.destroy(theirs)
    assert current(bob) == {}


def test_each_entry_has_epr_state_schedule_allocation_and_logistics(callers):
    alice, _ = callers
    create(alice, create_request(memory_mb=512))
    (one,) = status_call(alice, "queryCurrentWorkspaces", "queryCurrentWorkspaces")
    assert [child.tag for child in one] == [
        qname(STATUS, "epr"),
        qname(TYPES, "currentState"),
        qname(TYPES, "schedule"),
        qname(NEGOTIABLE, "ResourceAllocation"),
        qname(LOGISTICS, "logistics"),
    ]
    assert one.findtext(f".//{{{JSDL}}}IndividualPhysicalMemory/{{{JSDL}}}Exact") == "512"


def test_used_and_reserved_time_are_the_callers_durations(callers, clock):
    alice, bob = callers
    (ended,) = created_eprs(create(alice, create_request(duration="PT30M")))
    clock.advance(timedelta(minutes=10, seconds=5))
    alice.destroy(ended)
    create(alice, create_request(duration="PT1H"))
    create(bob, create_request(duration="PT2H"))
    reply = status_call(alice, "queryUsedAndReservedTime", "queryUsedAndReserved")
    assert reply.findtext(qname(STATUS, "usedTime")) == "P0DT0H11M0S"  # rounded up to the minute
    assert reply.findtext(qname(STATUS, "reservedTime")) == "P0DT1H0M0S"


def test_charge_granularity_is_a_resource_property(tmp_path, clock):
    with serve(tmp_path / "state", clock, accounting={"charge_granularity_minutes": 15}) as service:
        caller = client(service, ALICE)
        status = EndpointReference(service.base_url + "WorkspaceStatusService")
        reply = caller.get_property(status, qname(STATUS, "chargeGranularity"))
        assert reply.findtext(qname(STATUS, "chargeGranularity")) == "15"
        caller.close()


def test_an_answer_lists_at_most_the_configured_number_the_oldest_first(tmp_path, clock):
    with serve(tmp_path / "state", clock, policy={"max_listed_workspaces": 2}) as service:
        alice = client(service, ALICE)
        eprs = created_eprs(create(alice, create_request(node_number=3)))
        assert list(current(alice)) == [epr.key(KEY) for epr in eprs[:2]]
        alice.destroy(eprs[0])
        assert list(current(alice)) == [epr.key(KEY) for epr in eprs[1:]]
        alice.close()


def test_an_admin_sees_every_live_workspace_within_the_same_bound(tmp_path, clock):
    with serve(tmp_path / "state", clock, policy={"max_listed_workspaces": 3}) as service:
        alice, bob = client(service, ALICE), client(service, BOB)
        admin = client(service, "/O=Grid/OU=Example/CN=Operator", admin=True)
        eprs = created_eprs(create(alice, create_request(node_number=2))) + created_eprs(create(bob, create_request()))
        assert list(current(admin)) == [epr.key(KEY) for epr in eprs]
        create(bob, create_request())
        assert list(current(admin)) == [epr.key(KEY) for epr in eprs]  # the oldest three
        for caller in (alice, bob, admin):
            caller.close()
