"""Issue #14, advance reservation: a create may ask for a window in the future (vws-res:reservation
in its DeploymentTime). It is admitted only if the pool can hold it alongside every admitted
reservation and running workspace, else refused naming the earliest window that fits; it waits
Unpropagated with its start in ``schedule``, is Running at its start, and survives a restart.
Best effort never takes the capacity it needs. Time is the injected clock."""

from datetime import timedelta

import pytest
from lxml import etree
from sqlite_utils import Database

from clients.workspace import main as client_main
from clients.workspace import read_epr
from tests.allocations import allocation_body, deploy, reservation_body
from tests.conftest import T0, make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault
from tests.workspaces import StateLog
from vws.clock import timestamp
from vws.pool import calendar, nodes, testnode
from vws.pool.calendar import Window
from vws.pool.placement import NodeLoad
from vws.service import Service
from vws.store.schema import MIGRATIONS
from vws.workspace.caller import SERVICE
from vws.workspace.renegotiation import AllocationChange
from vws.workspace.states import State
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import RESOURCES, TYPES, WORKSPACE, WSBF, WSRL, WSRL_ACTION, qname

START = T0 + timedelta(hours=2)  # the embedded node: 16 GiB, 8 CPUs
LEAD = timedelta(seconds=600)  # [policy] reservation_lead_seconds, by default
SCHEDULING = qname(TYPES, "WorkspaceSchedulingFault")


class Running:
    """A service on a state dir, restartable, with a client and a log of every state change."""

    def __init__(self, state, clock) -> None:
        self.state, self.clock = state, clock
        self.open()

    def open(self) -> None:
        self.service = Service(make_config(self.state), clock=self.clock)
        self.states = StateLog(self.service.manager)
        self.service.start()
        self.client = Gt4Client(self.service.base_url, settle=settler(self.service))

    def restart(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        self.client.close()
        self.service.stop()

    def epr(self, epr: EndpointReference) -> EndpointReference:
        """The same workspace's EPR at this run's address."""
        return EndpointReference(self.service.base_url + "WorkspaceService", epr.properties)


@pytest.fixture
def vws(tmp_path, clock):
    running = Running(tmp_path / "state", clock)
    yield running
    running.close()


def key(epr: EndpointReference) -> int:
    return int(epr.key(qname(WORKSPACE, "WorkspaceKey")))


def schedule(client: Gt4Client, epr: EndpointReference) -> tuple[str, str]:
    reply = client.get_property(epr, qname(TYPES, "schedule"))
    return tuple(reply.findtext(f".//{{{TYPES}}}{name}") for name in ("ActualInstantiationTime", "Duration"))


def refused(client: Gt4Client, body) -> SoapFault:
    with pytest.raises(SoapFault) as raised:
        deploy(client, body)
    assert raised.value.element == SCHEDULING
    return raised.value


def test_an_admitted_reservation_waits_unpropagated_with_its_start_in_schedule(vws):
    epr = deploy(vws.client, reservation_body(START, memory_mb=12288))
    assert vws.client.state(epr) == "Unpropagated"
    assert schedule(vws.client, epr) == (timestamp(START), "P0DT1H0M0S")
    assert vws.service.manager.get(SERVICE, key(epr)).termination_time == START + timedelta(hours=1)


def test_an_overlapping_reservation_is_refused_with_the_earliest_window_that_fits(vws):
    deploy(vws.client, reservation_body(START, memory_mb=12288))
    fault = refused(vws.client, reservation_body(START + timedelta(minutes=30), memory_mb=8192))
    assert f"the earliest window of 1:00:00 that fits starts at {timestamp(START + timedelta(hours=1))}" in (
        fault.description
    )
    assert len(vws.service.manager.workspaces(SERVICE)) == 1  # nothing of the refused one kept
    deploy(vws.client, reservation_body(START + timedelta(hours=1), memory_mb=8192))  # that window is admitted


def test_best_effort_never_takes_what_a_reservation_needs(vws):
    deploy(vws.client, reservation_body(START, memory_mb=12288))
    fault = refused(vws.client, allocation_body(memory_mb=8192, duration="PT3H"))  # would run into it
    assert "not enough memory" in fault.description
    epr = deploy(vws.client, allocation_body(memory_mb=8192, duration="PT1H"))  # ends before it starts
    assert vws.client.state(epr) == "Running"
    body = etree.Element(qname(WSRL, "SetTerminationTime"))
    etree.SubElement(body, qname(WSRL, "RequestedTerminationTime")).text = timestamp(T0 + timedelta(hours=3))
    with pytest.raises(SoapFault) as raised:  # nor may its lease be stretched into the reservation
        vws.client.call(epr, WSRL_ACTION + "SetTerminationTime", body)
    assert raised.value.element == qname(WSRL, "UnableToSetTerminationTimeFault")
    assert f"the lease still ends at {timestamp(T0 + timedelta(hours=1))}" in raised.value.description
    assert vws.service.manager.get(SERVICE, key(epr)).termination_time == T0 + timedelta(hours=1)


def test_a_reservation_is_running_at_its_start(vws):
    epr = deploy(vws.client, reservation_body(START))
    vws.clock.advance(START - LEAD - T0 - timedelta(seconds=1))
    assert vws.client.state(epr) == "Unpropagated"  # not due yet
    vws.clock.advance(timedelta(seconds=1))
    vws.states.wait_for(key(epr), State.RUNNING)
    assert vws.client.state(epr) == "Running" and vws.clock.now() < START


def test_a_reservation_survives_a_restart_and_comes_up_at_its_start(vws):
    epr = deploy(vws.client, reservation_body(START, memory_mb=12288))
    vws.restart()
    epr = vws.epr(epr)
    assert vws.client.state(epr) == "Unpropagated"
    assert schedule(vws.client, epr)[0] == timestamp(START)
    refused(vws.client, reservation_body(START, memory_mb=8192))  # what it holds, it still holds
    vws.clock.advance(START - T0)  # passed while the service ran: brought up at once
    vws.states.wait_for(key(epr), State.RUNNING)


@pytest.mark.parametrize(
    ("start", "initial", "why"),
    [
        (T0 - timedelta(minutes=1), "Running", "has passed"),
        (START, "Unpropagated", "InitialState Unpropagated cannot have one"),
    ],
)
def test_a_reservation_that_means_nothing_is_a_metadata_fault(vws, start, initial, why):
    with pytest.raises(SoapFault) as raised:
        deploy(vws.client, reservation_body(start, initial_state=initial))
    assert raised.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert why in raised.value.description


def test_a_reservation_whose_lease_is_ended_before_its_start_holds_nothing(vws):
    epr = deploy(vws.client, reservation_body(START, memory_mb=12288))
    vws.service.manager.set_termination_time(SERVICE, key(epr), START - timedelta(minutes=1))
    deploy(vws.client, reservation_body(START, memory_mb=8192))  # its window is empty now


def test_vws_client_deploy_start_at_reserves_and_returns(vws, tmp_path, capsys):
    epr = tmp_path / "ws.epr"
    factory = vws.service.base_url + "WorkspaceFactoryService"
    argv = ["-s", factory, "--anonymous", "deploy", "--start-at", START.isoformat(), "--eprFile", str(epr)]
    assert client_main(argv) == 0
    assert f"reserved from {START.isoformat()}" in capsys.readouterr().out
    assert vws.client.state(read_epr(epr)) == "Unpropagated"
    assert schedule(vws.client, read_epr(epr))[0] == timestamp(START)


def test_a_renegotiation_may_use_what_a_later_reservation_will_need_before_it_starts(vws):
    epr = deploy(vws.client, allocation_body(memory_mb=256, duration="PT1H"))  # ends before START
    deploy(vws.client, reservation_body(START, memory_mb=12288))
    change = AllocationChange(memory_mb=8192)  # 8 + 12 GiB > 16 GiB, but never at the same time
    vws.service.manager.renegotiate(SERVICE, key(epr), change, at_next_start=True)
    assert vws.service.manager.get(SERVICE, key(epr)).request.machine.memory_mb == 8192


def drain(service: Service, node: str, *others: str) -> None:
    """vws-admin nodes update --inactive ``node``; ``others``: nodes added beside it, each 16 GiB."""
    with service.store.transaction() as db:
        for name in others:
            uri = testnode.write_node(service.config.service.state_dir / "extra" / f"{name}.xml", 16384, 8)
            nodes.add_node(db, name, uri, 16384, 8)
        nodes.update_node(db, node, active=False)


def test_a_reservation_whose_node_was_drained_is_re_placed_at_its_bring_up(vws):
    epr = deploy(vws.client, reservation_body(START, memory_mb=12288))
    drain(vws.service, "node1", "node2")
    vws.clock.advance(START - T0)
    vws.states.wait_for(key(epr), State.RUNNING)
    assert vws.service.manager.get(SERVICE, key(epr)).node == "node2"


def test_a_reservation_no_node_can_hold_any_more_ends_corrupted_saying_why(vws):
    epr = deploy(vws.client, reservation_body(START, memory_mb=12288))
    drain(vws.service, "node1")
    vws.clock.advance(START - T0)
    vws.states.wait_for(key(epr), State.CORRUPTED)
    fault = vws.client.get_property(epr, qname(TYPES, "currentState")).findtext(f".//{{{WSBF}}}Description")
    assert "its node node1 is no longer available and no other can hold it" in fault


def test_placements_made_before_the_calendar_hold_their_node_until_their_lease_ends():
    db = Database(memory=True)
    MIGRATIONS.apply(db, stop_before="m020_resizes_and_capacity_calendar")
    db["workspaces"].insert(
        {"id": 7, "owner": "o", "state": "running", "memory_mb": 256, "vcpus": 1, "node": "node1", "request": "{}"}
        | {"created_at": timestamp(T0), "termination_time": timestamp(START)}
    )
    db["pool_placements"].insert({"workspace_id": 7, "node": "node1", "memory_mb": 256, "vcpus": 1, "held": 1})
    MIGRATIONS.apply(db)
    sizes = [NodeLoad("node1", 1024, 2)]
    (before,) = calendar.loads_over(db, sizes, Window(T0, START), T0)
    (after,) = calendar.loads_over(db, sizes, Window(START, START + timedelta(hours=1)), T0)
    assert (before.used_memory_mb, after.used_memory_mb) == (256, 0)


def test_availability_names_the_earliest_windows_that_fit(vws, capsys):
    deploy(vws.client, reservation_body(START, memory_mb=12288))
    factory = vws.service.base_url + "WorkspaceFactoryService"
    argv = ["-s", factory, "--anonymous", "availability", "--memory", "8192", "--duration", "180", "--count", "2"]
    assert client_main(argv) == 0
    after = START + timedelta(hours=1)  # 3 h of 8 GiB from now would run into it: from its end
    assert capsys.readouterr().out.splitlines() == [f"{timestamp(after)} to {timestamp(after + timedelta(hours=3))}"]
    argv[argv.index("8192")] = "2048"  # beside it there is room from now
    assert client_main(argv) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{timestamp(T0)} to {timestamp(T0 + timedelta(hours=3))}"


def test_availability_with_nonsense_is_a_metadata_fault(vws):
    body = etree.Element(qname(RESOURCES, "availability"))
    etree.SubElement(body, qname(RESOURCES, "memory")).text = "0"
    etree.SubElement(body, qname(RESOURCES, "duration")).text = "PT1H"
    with pytest.raises(SoapFault) as raised:
        vws.client.call(vws.client.factory(), f"{RESOURCES}/WorkspaceFactoryPortType/availabilityRequest", body)
    assert raised.value.element == qname(TYPES, "WorkspaceMetadataFault")
