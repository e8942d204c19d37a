"""GT4 NIC metadata over the wire: a MAC the client asks for, and Advisory addresses.

What the client gets back (the create reply, the ``logistics`` property) and what libvirt
runs (the domain XML) must name the same MAC and address.
"""

import pytest
from lxml import etree

from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import FACTORY_ACTION, SAMPLES, Gt4Client, SoapFault, create_body, created_eprs
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.xmlns import LOGISTICS, TYPES, WORKSPACE, qname


@pytest.fixture
def static_service(tmp_path, clock):
    running = Service(make_config(tmp_path / "state", allow_static_addresses=True), clock=clock)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def static_gt4(static_service):
    client = Gt4Client(static_service.base_url, settle=settler(static_service))
    yield client
    client.close()


def create(client: Gt4Client, method: str = "AllocateAndConfigure", mac: str | None = None, ip: str | None = None):
    """The sample create, its one NIC asking for ``mac`` and ``ip`` by ``method``."""
    metadata = etree.parse(str(SAMPLES / "workspace.xml")).getroot()
    request = etree.parse(str(SAMPLES / "deployment-request.xml")).getroot()
    nic = metadata.find(f".//{{{LOGISTICS}}}nic")
    if mac is not None:
        nic.find(qname(LOGISTICS, "name")).addnext(etree.Element(qname(LOGISTICS, "MAC")))
        nic.find(qname(LOGISTICS, "MAC")).text = mac
    ip_config = nic.find(qname(LOGISTICS, "ipConfig"))
    ip_config.find(qname(LOGISTICS, "acquisitionMethod")).text = method
    if ip is not None:
        etree.SubElement(ip_config, qname(LOGISTICS, "ipAddress")).text = ip
    return client.call(client.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request))


def announced(reply: etree._Element) -> tuple[str, str, str]:
    """(MAC, ipAddress, acquisitionMethod) of the one NIC in a create reply or logistics."""
    nic = reply.find(f".//{{{LOGISTICS}}}nic")
    return tuple(nic.findtext(f".//{{{LOGISTICS}}}{name}") for name in ("MAC", "ipAddress", "acquisitionMethod"))


def test_a_requested_mac_is_what_the_reply_the_logistics_and_libvirt_say(static_gt4, static_service):
    reply = create(static_gt4, mac="A2:AA:BB:0C:0F:FE")
    assert announced(reply)[0] == "a2:aa:bb:0c:0f:fe"
    (epr,) = created_eprs(reply)
    assert static_gt4.state(epr) == "Running"
    assert announced(static_gt4.get_property(epr, qname(LOGISTICS, "logistics"))) == announced(reply)
    workspace = static_service.manager.get(SERVICE, int(epr.key(qname(WORKSPACE, "WorkspaceKey"))))
    xml = static_service.pool._driver(workspace.node).xml(workspace.domain)
    assert etree.fromstring(xml).find("devices/interface/mac").get("address") == "a2:aa:bb:0c:0f:fe"


def test_a_mac_already_in_use_is_a_scheduling_fault(static_gt4):
    create(static_gt4, mac="a2:aa:bb:0c:0f:fe")
    with pytest.raises(SoapFault) as raised:
        create(static_gt4, mac="a2:aa:bb:0c:0f:fe")
    assert raised.value.element == qname(TYPES, "WorkspaceSchedulingFault")
    assert "in use by workspace" in raised.value.description


def test_a_requested_mac_is_refused_by_default_and_reserves_nothing(gt4, service):
    with pytest.raises(SoapFault) as raised:
        create(gt4, mac="A2:AA:BB:0C:0F:FE")
    assert raised.value.element == qname(TYPES, "WorkspaceResourceRequestDeniedFault")
    assert "requesting a MAC address is not allowed" in raised.value.description
    assert service.manager.workspaces(SERVICE) == []


def test_a_multicast_mac_is_a_metadata_fault(static_gt4, static_service):
    with pytest.raises(SoapFault) as raised:
        create(static_gt4, mac="A3:AA:BB:0C:0F:FE")
    assert raised.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert "not a unicast MAC" in raised.value.description
    assert static_service.manager.workspaces(SERVICE) == []


def test_advisory_gets_the_address_asked_for_while_it_is_free(gt4):
    assert announced(create(gt4, "Advisory", ip="192.168.128.15"))[1:] == ("192.168.128.15", "AcceptAndConfigure")
    _, ip, method = announced(create(gt4, "Advisory", ip="192.168.128.15"))
    assert ip != "192.168.128.15" and method == "AllocateAndConfigure"
