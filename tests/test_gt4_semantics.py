"""Semantics as GT4/Nimbus had them, over the wire: ShutdownMechanism Trash, a shutdown-save's
PostShutdown target, and when a Corrupted workspace's fault happened."""

from datetime import timedelta

import pytest
from lxml import etree

from clients.listener import TERMINATED, NotificationListener, state_of
from tests.deployments import settler
from tests.gt4wire import SAMPLES, SoapFault, created_eprs, shutdown_body
from tests.resources import GROUP_ACTION, STATE_TOPIC, TERMINATION_TOPIC, create, create_request, reference, subscribe
from tests.test_stock_clients import NIMBUS, deploy_nimbus_sample
from vws.workspace.manager import SERVICE
from vws.xmlns import GROUP, NEGOTIABLE, TYPES, WORKSPACE, WSRP, qname

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
        ((NIMBUS / "sample-workspace.xml", NIMBUS / "sample-deployment-request.xml"), ["Cancelled", TERMINATED]),
        ((SAMPLES / "workspace.xml", SAMPLES / "deployment-request.xml"), ["Propagated", "Cancelled", TERMINATED]),
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
        assert [state_of(listener.received.get(timeout=10)) for _ in seen] == seen
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
