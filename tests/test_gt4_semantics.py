"""Semantics as GT4/Nimbus had them, over the wire: ShutdownMechanism Trash, a shutdown-save's
PostShutdown target, and when a Corrupted workspace's fault happened."""

import threading
from datetime import timedelta

import pytest
from lxml import etree
from sqlite_utils import Database

from clients.listener import NotificationListener, notified_state
from clients.resource import DESTROYED
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import SAMPLES, Gt4Client, SoapFault, created_eprs, shutdown_body
from tests.resources import GROUP_ACTION, STATE_TOPIC, TERMINATION_TOPIC, create, create_request, reference, subscribe
from tests.test_stock_clients import NIMBUS, deploy_nimbus_sample
from vws.clock import timestamp
from vws.service import Service
from vws.store.schema import MIGRATIONS
from vws.workspace.caller import SERVICE
from vws.workspace.states import State
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import GROUP, NEGOTIABLE, TYPES, WORKSPACE, WSBF, WSRP, qname

# ---- ShutdownMechanism Trash (Nimbus's sample asks for it) ------------------------------


def test_nimbus_sample_shut_down_stays_propagated_and_starts_again(gt4):
    """Trash is what happens when the running time is exceeded; an explicit shutdown is only that."""
    epr = deploy_nimbus_sample(gt4)
    gt4.shutdown(epr)
    assert gt4.state(epr) == "Propagated"
    gt4.start(epr)
    assert gt4.state(epr) == "Running"


@pytest.mark.parametrize(
    ("documents", "seen"),
    [
        ((NIMBUS / "sample-workspace.xml", NIMBUS / "sample-deployment-request.xml"), ["Cancelled", DESTROYED]),
        ((SAMPLES / "workspace.xml", SAMPLES / "deployment-request.xml"), ["Propagated", "Cancelled", DESTROYED]),
    ],
    ids=["Trash", "Normal"],
)
def test_the_lease_end_destroys_a_trash_workspace_without_shutting_it_down(gt4, service, clock, documents, seen):
    (epr,) = created_eprs(gt4.create(*documents))
    with NotificationListener(("127.0.0.1", 0)) as listener:
        consumer = listener.consumer_reference(gt4.base_url)
        for topic in (STATE_TOPIC, TERMINATION_TOPIC):
            subscribe(gt4, epr, consumer, topic)
        clock.advance(timedelta(minutes=31))
        assert [notified_state(listener.received.get(timeout=10)).state for _ in seen] == seen
    with pytest.raises(SoapFault) as gone:
        gt4.state(epr)
    assert gone.value.element == qname(WSRP, "ResourceUnknownFault")
    assert service.pool.domain_states() == {}


# ---- PostShutdown: the client's --save-target ---------------------------------------------


def _saved(service, target: str) -> bool:
    return (service.pool.repository.root / target.removeprefix("file://")).is_file()


def test_a_shutdown_save_target_overrides_the_one_given_at_create(gt4, service):
    body = create_request()
    _post_shutdown(body, "file://at-create.qcow2")
    (epr,) = created_eprs(create(gt4, body))
    gt4.shutdown(epr, "ReadyForTransport", "file://saved/elsewhere.qcow2")
    settler(service)()
    assert gt4.state(epr) == "TransportReady"
    assert _saved(service, "file://saved/elsewhere.qcow2")
    assert not _saved(service, "file://at-create.qcow2")


@pytest.mark.parametrize("at_create", [False, True], ids=["at-shutdown", "at-create"])
def test_a_group_save_target_is_a_base_name_each_member_appends_its_id_to(gt4, service, at_create):
    body = create_request(node_number=2)
    if at_create:
        _post_shutdown(body, "file://batch.qcow2")
    created = create(gt4, body)
    shutdown = shutdown_body(GROUP, "ReadyForTransport", None if at_create else "file://batch.qcow2")
    gt4.call(reference(created, "GroupEPR"), GROUP_ACTION + "shutdownRequest", shutdown)
    settler(service)()
    for epr in created_eprs(created):
        assert gt4.state(epr) == "TransportReady"
        assert _saved(service, f"file://batch.qcow2-{epr.key(qname(WORKSPACE, 'WorkspaceKey'))}")


def _post_shutdown(create_body: etree._Element, target: str) -> None:
    """The request's own PostShutdown, as the client's deploy --save-target writes it."""
    post = etree.SubElement(create_body.find(qname(TYPES, "resourceRequest")), qname(NEGOTIABLE, "PostShutdown"))
    etree.SubElement(post, qname(NEGOTIABLE, "rootPartitionUnpropagationTarget")).text = target


@pytest.mark.parametrize(("kind", "target"), [("Normal", "file://x.qcow2"), ("ReadyForTransport", "")])
def test_a_post_shutdown_that_cannot_apply_is_refused_and_changes_nothing(gt4, service, kind, target):
    (epr,) = created_eprs(gt4.create())
    with pytest.raises(SoapFault) as refused:
        gt4.shutdown(epr, kind, target)
    assert refused.value.element == qname(TYPES, "WorkspaceShutdownFault")
    assert refused.value.code == "soapenv:Client"
    assert gt4.state(epr) == "Running"
    assert not _saved(service, "file://x.qcow2")


def test_a_save_target_already_taken_is_refused_at_once_and_the_old_target_kept(gt4, service):
    (epr,) = created_eprs(gt4.create())
    (service.pool.repository.root / "taken.qcow2").write_bytes(b"someone else's image")
    with pytest.raises(SoapFault) as refused:
        gt4.shutdown(epr, "ReadyForTransport", "file://taken.qcow2")
    assert "already exists" in refused.value.description
    assert gt4.state(epr) == "Running"
    (workspace,) = service.manager.workspaces(SERVICE)
    assert workspace.request.save_target is None


# ---- a Corrupted workspace's WorkspaceFault ---------------------------------------------


def _fault_timestamp(client: Gt4Client, epr) -> str:  # type: ignore[no-untyped-def]
    state = client.get_property(epr, qname(TYPES, "currentState"))
    assert state.findtext(f"{{{TYPES}}}currentState/{{{TYPES}}}state") == "Corrupted"
    return state.findtext(f"{{{TYPES}}}currentState/{{{TYPES}}}WorkspaceFault/{{{WSBF}}}Timestamp")


def test_the_fault_of_a_corrupted_workspace_says_when_it_failed_on_every_read_and_after_a_restart(tmp_path, clock):
    config = make_config(tmp_path / "state")
    first = Service(config, clock=clock)
    first.start()
    try:
        client = Gt4Client(first.base_url, settle=settler(first))
        (epr,) = created_eprs(client.create())
        (workspace,) = first.manager.workspaces(SERVICE)
        corrupted = threading.Event()
        first.manager.add_listener(lambda changed: changed.state is State.CORRUPTED and corrupted.set())
        failed_at = clock.now()
        first.pool._driver(workspace.node).destroy(workspace.domain)  # an operator's `virsh destroy`
        assert corrupted.wait(10)
        clock.advance(timedelta(minutes=5))
        assert _fault_timestamp(client, epr) == _fault_timestamp(client, epr) == timestamp(failed_at)
        client.close()
    finally:
        first.stop()
    clock.advance(timedelta(minutes=5))
    second = Service(config, clock=clock)
    second.start()
    try:
        client = Gt4Client(second.base_url)
        moved = EndpointReference(second.base_url + "WorkspaceService", epr.properties)  # a new port
        assert _fault_timestamp(client, moved) == timestamp(failed_at)
        client.close()
    finally:
        second.stop()


def test_a_database_from_before_keeps_the_moment_of_its_faults(tmp_path):
    """m012 gives faults already recorded the time of the workspace's Corrupted event."""
    db = Database(tmp_path / "vws.sqlite")
    MIGRATIONS.apply(db, stop_before="m012_fault_time")
    db["workspaces"].insert(
        {
            "id": 7,
            "owner": "u",
            "state": "corrupted",
            "fault": "it died",
            "memory_mb": 1,
            "vcpus": 1,
            "created_at": "2026-01-01T00:00:00.000000Z",
            "termination_time": "2026-01-02T00:00:00.000000Z",
            "request": "{}",
        }
    )
    for at, state in (("2026-01-01T00:00:01.000000Z", "running"), ("2026-01-01T00:10:00.000000Z", "corrupted")):
        db["workspace_events"].insert({"workspace_id": 7, "at": at, "state": state, "detail": None})
    MIGRATIONS.apply(db)
    assert db["workspaces"].get(7)["fault_at"] == "2026-01-01T00:10:00.000000Z"
