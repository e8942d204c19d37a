"""End to end over real HTTP with hand-built GT4-style envelopes (WS-Addressing 2004/03
headers with the WorkspaceKey), as legacy clients send them."""

import threading
from datetime import timedelta

import pytest
from lxml import etree

from tests.gt4wire import FACTORY_ACTION, SAMPLES, SoapFault, create_body, created_eprs, envelope
from vws.workspace.caller import SERVICE
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import (
    LOGISTICS,
    SOAP_ENV,
    TYPES,
    WORKSPACE,
    WSRL,
    WSRL_ACTION,
    WSRP,
    WSRP_ACTION,
    XPATH_DIALECT,
    qname,
)

STATE = qname(TYPES, "currentState")


def deploy(gt4) -> EndpointReference:
    (epr,) = created_eprs(gt4.create())
    return epr


def test_deploy_reaches_running_with_an_address_from_the_public_pool(gt4):
    response = gt4.create()
    (created,) = response.iterchildren(qname(TYPES, "CreatedWorkspace"))
    ip = created.findtext(f".//{{{LOGISTICS}}}ipAddress")
    mac = created.findtext(f".//{{{LOGISTICS}}}MAC")
    assert ip and mac and len(mac) == 17
    epr = created_eprs(response)[0]
    assert epr.address.endswith("/wsrf/services/WorkspaceService")
    assert epr.key(qname(WORKSPACE, "WorkspaceKey")).isdigit()
    assert gt4.state(epr) == "Running"
    logistics = gt4.get_property(epr, qname(LOGISTICS, "logistics"))
    assert logistics.findtext(f".//{{{LOGISTICS}}}ipAddress") == ip


def test_reply_carries_action_and_relates_to(gt4):
    body = create_body(
        etree.parse(str(SAMPLES / "workspace.xml")).getroot(),
        etree.parse(str(SAMPLES / "deployment-request.xml")).getroot(),
    )
    message = envelope(gt4.factory().address, FACTORY_ACTION + "createRequest", body)
    message_id = etree.fromstring(message).findtext(".//{http://schemas.xmlsoap.org/ws/2004/03/addressing}MessageID")
    status, reply = gt4.post(gt4.factory().address, message)
    wsa = "{http://schemas.xmlsoap.org/ws/2004/03/addressing}"
    assert status == 200
    assert reply.findtext(f".//{wsa}Action") == FACTORY_ACTION + "createResponse"
    assert reply.findtext(f".//{wsa}RelatesTo") == message_id


def test_lifecycle_pause_start_shutdown_start_reboot(gt4):
    epr = deploy(gt4)
    gt4.shutdown(epr, "Pause")
    assert gt4.state(epr) == "Paused"
    gt4.start(epr)
    assert gt4.state(epr) == "Running"
    gt4.shutdown(epr, "Normal")
    assert gt4.state(epr) == "Propagated"
    gt4.start(epr)
    gt4.shutdown(epr, "Reboot")
    assert gt4.state(epr) == "Running"


def test_operation_not_allowed_in_state_is_a_start_fault_and_changes_nothing(gt4):
    epr = deploy(gt4)
    with pytest.raises(SoapFault) as fault:
        gt4.start(epr)
    assert fault.value.element == qname(TYPES, "WorkspaceStartFault")
    assert "Running" in fault.value.description
    assert fault.value.detail.find("{*}Timestamp") is not None
    assert gt4.state(epr) == "Running"


def test_serialize_and_trash_are_refused_with_shutdown_faults(gt4):
    epr = deploy(gt4)
    for kind in ("Serialize", "Trash"):
        with pytest.raises(SoapFault) as fault:
            gt4.shutdown(epr, kind)
        assert fault.value.element == qname(TYPES, "WorkspaceShutdownFault")
    assert gt4.state(epr) == "Running"


def test_destroy_then_the_key_is_unknown_everywhere(gt4, service):
    epr = deploy(gt4)
    gt4.destroy(epr)
    with pytest.raises(SoapFault) as start_fault:
        gt4.start(epr)
    assert start_fault.value.element == qname(TYPES, "WorkspaceUnknownFault")
    with pytest.raises(SoapFault) as rp_fault:
        gt4.state(epr)
    assert rp_fault.value.element == qname(WSRP, "ResourceUnknownFault")
    with pytest.raises(SoapFault) as destroy_fault:
        gt4.destroy(epr)
    assert destroy_fault.value.element == qname(WSRL, "ResourceUnknownFault")
    assert service.pool.domain_states() == {}


def test_get_multiple_and_xpath_query(gt4):
    epr = deploy(gt4)
    body = etree.Element(qname(WSRP, "GetMultipleResourceProperties"), nsmap={"wsrp": WSRP, "t": TYPES, "wsrl": WSRL})
    for name in ("t:currentState", "wsrl:TerminationTime"):
        etree.SubElement(body, qname(WSRP, "ResourceProperty")).text = name
    reply = gt4.call(epr, WSRP_ACTION + "GetMultipleResourceProperties", body)
    assert [etree.QName(child).localname for child in reply] == ["currentState", "TerminationTime"]

    query = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP, "t": TYPES})
    expression = etree.SubElement(query, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT)
    expression.text = "string(/*/t:currentState/t:state)"
    assert gt4.call(epr, WSRP_ACTION + "QueryResourceProperties", query).text == "Running"


@pytest.mark.parametrize(
    "dialect, text, fault",
    [
        ("urn:not-xpath", "/*", "UnknownQueryExpressionDialectFault"),
        (XPATH_DIALECT, "/*[", "InvalidQueryExpressionFault"),
        (XPATH_DIALECT, "t:nope()", "QueryEvaluationErrorFault"),
        (XPATH_DIALECT, "count(1)", "QueryEvaluationErrorFault"),
    ],
)
def test_bad_queries_get_their_declared_faults(gt4, dialect, text, fault):
    epr = deploy(gt4)
    query = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP, "t": TYPES})
    etree.SubElement(query, qname(WSRP, "QueryExpression"), Dialect=dialect).text = text
    with pytest.raises(SoapFault) as raised:
        gt4.call(epr, WSRP_ACTION + "QueryResourceProperties", query)
    assert raised.value.element == qname(WSRP, fault)


def test_unknown_property_name(gt4):
    epr = deploy(gt4)
    with pytest.raises(SoapFault) as raised:
        gt4.get_property(epr, qname(TYPES, "noSuchProperty"))
    assert raised.value.element == qname(WSRP, "InvalidResourcePropertyQNameFault")


def test_factory_resource_properties(gt4):
    associations = gt4.get_property(gt4.factory(), qname(TYPES, "Associations"))
    assert [a.text for a in associations.iter(qname(TYPES, "association"))] == ["public"]
    maximum = gt4.get_property(gt4.factory(), qname(TYPES, "MaximumRunningTime"))
    assert maximum[0].text == "P14DT0H0M0S"


def _drop_root_disk(metadata, request):
    root = metadata.find(".//{*}rootVBD")
    root.getparent().remove(root)


def _set(document: str, path: str, value: str):
    def edit(metadata, request):
        (metadata if document == "metadata" else request).find(".//{*}" + path).text = value

    return edit


@pytest.mark.parametrize(
    "edit, fault",
    [
        (_drop_root_disk, "WorkspaceMetadataFault"),
        (_set("metadata", "association", "nowhere"), "WorkspaceMetadataFault"),
        (_set("request", "IndividualPhysicalMemory/{*}Exact", "999999"), "WorkspaceSchedulingFault"),
        (_set("request", "DeploymentTime/{*}minDuration", "P30D"), "WorkspaceResourceRequestDeniedFault"),
    ],
    ids=["no-root-disk", "unknown-network-pool", "more-memory-than-any-node", "longer-than-the-maximum"],
)
def test_refused_requests_get_their_fault_and_reserve_nothing(gt4, service, edit, fault):
    metadata = etree.parse(str(SAMPLES / "workspace.xml")).getroot()
    request = etree.parse(str(SAMPLES / "deployment-request.xml")).getroot()
    edit(metadata, request)
    with pytest.raises(SoapFault) as raised:
        gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request))
    assert raised.value.element == qname(TYPES, fault)
    assert service.manager.workspaces(SERVICE) == []


@pytest.mark.parametrize(
    "document",
    [
        b"<soapenv:Envelope xmlns:soapenv='" + SOAP_ENV.encode() + b"'><soapenv:Body><unclosed></soapenv:Body>",
        b"<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>"
        b"<soapenv:Envelope xmlns:soapenv='"
        + SOAP_ENV.encode()
        + b"'><soapenv:Body>&b;</soapenv:Body></soapenv:Envelope>",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
        b"<soapenv:Envelope xmlns:soapenv='"
        + SOAP_ENV.encode()
        + b"'><soapenv:Body>&xxe;</soapenv:Body></soapenv:Envelope>",
        b"<notsoap/>",
        b"<soapenv:Envelope xmlns:soapenv='"
        + SOAP_ENV.encode()
        + b"'><soapenv:Body><x:nope xmlns:x='urn:x'/></soapenv:Body></soapenv:Envelope>",
    ],
    ids=["malformed", "entity-expansion", "external-entity", "not-soap", "unknown-operation"],
)
def test_hostile_or_broken_documents_get_client_faults(gt4, document):
    status, reply = gt4.post(gt4.factory().address, document)
    fault = reply.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None and fault.findtext("faultcode") == "soapenv:Client"
    assert b"root:" not in etree.tostring(reply)


def test_wrong_type_in_key_header_is_an_unknown_workspace(gt4):
    epr = EndpointReference(gt4.base_url + "WorkspaceService", (key_property(qname(WORKSPACE, "WorkspaceKey"), "abc"),))
    with pytest.raises(SoapFault) as raised:
        gt4.start(epr)
    assert raised.value.element == qname(TYPES, "WorkspaceUnknownFault")


def test_set_termination_time_within_policy(gt4, clock):
    epr = deploy(gt4)
    new = clock.now() + timedelta(hours=2)
    body = etree.Element(qname(WSRL, "SetTerminationTime"), nsmap={"wsrl": WSRL})
    etree.SubElement(body, qname(WSRL, "RequestedTerminationTime")).text = new.isoformat()
    reply = gt4.call(epr, WSRL_ACTION + "SetTerminationTime", body)
    assert reply.findtext(qname(WSRL, "NewTerminationTime")).startswith(new.strftime("%Y-%m-%dT%H:%M:%S"))
    too_late = etree.Element(qname(WSRL, "SetTerminationTime"), nsmap={"wsrl": WSRL})
    etree.SubElement(too_late, qname(WSRL, "RequestedTerminationTime")).text = (
        clock.now() + timedelta(days=60)
    ).isoformat()
    with pytest.raises(SoapFault) as raised:
        gt4.call(epr, WSRL_ACTION + "SetTerminationTime", too_late)
    assert raised.value.element == qname(WSRL, "TerminationTimeChangeRejectedFault")


def test_lease_expiry_destroys_the_workspace_driven_by_the_clock(gt4, service, clock):
    epr = deploy(gt4)
    gone = threading.Event()
    service.manager.add_listener(lambda workspace: workspace.state.gone and gone.set())
    clock.advance(timedelta(minutes=31))
    assert gone.wait(10)
    with pytest.raises(SoapFault):
        gt4.state(epr)
    assert service.pool.domain_states() == {}


def test_shutdown_save_onto_a_taken_image_is_refused_at_once_and_changes_nothing(gt4, service):
    epr = deploy(gt4)
    (workspace,) = service.manager.workspaces(SERVICE)
    (service.pool.repository.root / f"{workspace.domain}.qcow2").write_bytes(b"someone else's image")
    with pytest.raises(SoapFault) as refused:
        gt4.shutdown(epr, "ReadyForTransport")
    assert refused.value.element == qname(TYPES, "WorkspaceShutdownFault")
    assert "already exists" in refused.value.description
    assert gt4.state(epr) == "Running"
