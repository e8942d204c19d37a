"""The appliance catalogue over HTTP: the appliances a user may deploy (signed by a trusted
producer), found by XPath, listed by ``vws-client appliances``, and deployed by name."""

from pathlib import Path

import pytest
from lxml import etree

from clients.appliance import main as appliance
from clients.workspace import main as client
from tests import test_appliance_trust as trust
from tests.gt4wire import SoapFault, created_eprs
from tests.test_appliance_layers import reads
from tests.test_appliance_trust import create, credential, refused, worker
from tests.test_wsdl import assert_valid
from vws.workspace.caller import SERVICE
from vws.xmlns import APPLIANCES, WORKSPACE, WSRP, WSRP_ACTION, XPATH_DIALECT, qname

CATALOG = "ApplianceCatalogService"
producer, trusting = trust.producer, trust.trusting  # alice, and a service trusting only her


def signed(repository: Path, producer: tuple[Path, Path], tmp_path: Path, name: str, arch: str, role: str) -> None:
    """Another appliance over app.qcow2, described and signed into the repository as NAME.xml."""
    unsigned = tmp_path / f"{name}-unsigned.xml"
    describe = ["describe", "--image", str(repository / "app.qcow2"), "--name", name, "--version", "2.0"]
    assert appliance([*describe, "--arch", arch, "--attribute", f"role={role}", "-o", str(unsigned)]) == 0
    key, cert = producer
    assert (
        appliance(
            ["sign", "--key", str(key), "--cert", str(cert), str(unsigned), "-o", str(repository / f"{name}.xml")]
        )
        == 0
    )


@pytest.fixture
def catalogue(trusting, producer, tmp_path):
    """worker (x86_64, torque-worker) and builder (aarch64, builder) by alice; rogue by mallory."""
    service, gt4 = trusting
    repository = service.pool.repository.root
    worker(repository, producer, tmp_path)
    signed(repository, producer, tmp_path, "builder", "aarch64", "builder")
    (tmp_path / "mallory").mkdir()
    signed(repository, credential(tmp_path / "mallory", "mallory"), tmp_path, "rogue", "x86_64", "torque-worker")
    return service, gt4


def query(gt4, expression: str) -> list[etree._Element]:
    body = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP})
    element = etree.SubElement(body, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT, nsmap={"app": APPLIANCES})
    element.text = expression
    epr = gt4.factory()
    catalogue = type(epr)(epr.address.replace("WorkspaceFactoryService", CATALOG))
    return list(gt4.call(catalogue, WSRP_ACTION + "QueryResourceProperties", body))


def test_the_catalogue_lists_what_trusted_producers_signed_and_xpath_finds_by_attribute(catalogue):
    _, gt4 = catalogue
    (document,) = query(gt4, "/")
    assert [entry.get("location") for entry in document] == ["appliance:builder/2.0", "appliance:worker/1.0"]
    assert_valid(CATALOG, document)
    found = query(gt4, "//app:appliance[app:attribute[@name='role']='torque-worker'][app:architecture='x86_64']")
    assert [entry.findtext(qname(APPLIANCES, "name")) for entry in found] == ["worker"]
    assert found[0].findtext(qname(APPLIANCES, "producer")) == "CN=alice,OU=Appliances,O=Grid"


def test_vws_client_appliances_lists_them(catalogue, capsys):
    service, _ = catalogue
    factory = service.base_url + "WorkspaceFactoryService"
    assert client(["--anonymous", "-s", factory, "appliances"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "appliance:builder/2.0  aarch64  role=builder  (signed by CN=alice,OU=Appliances,O=Grid)",
        "appliance:worker/1.0  x86_64  role=torque-worker  (signed by CN=alice,OU=Appliances,O=Grid)",
    ]
    assert client(["--anonymous", "-s", factory, "appliances", "--query", "//app:appliance[app:name='worker']"]) == 0
    assert capsys.readouterr().out.startswith("appliance:worker/1.0  x86_64")


def test_a_root_may_name_a_catalogue_entry(catalogue):
    service, gt4 = catalogue
    (epr,) = created_eprs(create(gt4, "appliance:worker"))
    assert gt4.state(epr) == "Running"
    workspace = service.manager.get(SERVICE, int(epr.key(qname(WORKSPACE, "WorkspaceKey"))))
    overlay = service.config.service.state_dir / "nodes" / "node1" / "domains" / workspace.domain / "root.qcow2"
    assert reads(overlay, "system") and reads(overlay, "app")


def test_an_entry_not_in_the_catalogue_is_refused_naming_what_is(catalogue):
    service, gt4 = catalogue
    assert "offered: none by that name" in refused(service, gt4, "appliance:rogue")
    assert "offered: appliance:worker/1.0" in refused(service, gt4, "appliance:worker/9.9")


def test_a_bad_query_gets_the_declared_fault(catalogue):
    _, gt4 = catalogue
    with pytest.raises(SoapFault) as raised:
        query(gt4, "app:appliance[")
    assert raised.value.element == qname(WSRP, "InvalidQueryExpressionFault")


def test_the_factory_publishes_the_catalogue_too(catalogue):
    _, gt4 = catalogue
    published = gt4.get_property(gt4.factory(), qname(APPLIANCES, "appliance"))
    assert [entry.get("location") for entry in published] == ["appliance:builder/2.0", "appliance:worker/1.0"]
    for entry in published:
        assert_valid("WorkspaceFactoryService", entry)
