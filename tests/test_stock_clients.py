"""What stock GT4/Nimbus clients do, over the wire, with Nimbus's own sample documents.

``workspace --rpquery`` and ``--factoryrp``, ``cloud-client --status`` and ``--networks``
send the XPath ``/`` and read the first element of the answer as the whole
resource-property document, which an Axis bean generated from Nimbus's schema then
reads as the sequence that schema declares: the document must be there, in that order,
with nothing else in it. The workspaces here are deployed from Nimbus's own sample
metadata and deployment request (tests/nimbus/, unchanged). tests/axis/StockRPQuery.java
is the stock client's own read path in Axis 1.4 (RPQueryInstance, RPQueryFactory).
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.deployments import settler
from tests.gt4wire import FACTORY_ACTION, Gt4Client, created_eprs
from tests.resources import create_request
from tests.test_axis import CLASSPATH, _generate, _merge, _run
from tests.test_axis import pytestmark as needs_axis
from tests.test_background_deploy import HeldImage, progress_shown
from tests.test_wsdl import WSDL_NS, assert_valid, wsdl_path
from vws.service import Service
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import (
    DEFINITION,
    JSDL,
    LOGISTICS,
    NEGOTIABLE,
    PROPAGATION,
    STATUS,
    TYPES,
    WORKSPACE,
    WSNT,
    WSRL,
    WSRP,
    WSRP_ACTION,
    XSD,
    qname,
)

NIMBUS = Path(__file__).parent / "nimbus"
READER = Path(__file__).parent / "axis" / "StockRPQuery.java"
MANY = None  # maxOccurs="unbounded"

# Each resource-property document as Nimbus declares it (messaging/gt4.0/schema/dist/
# workspace/*_port_type.wsdl): its element, then each member with minOccurs and maxOccurs.
NIMBUS_DOCUMENTS = {
    "WorkspaceFactoryService": (
        qname(WORKSPACE, "FactoryRPSet"),
        [
            (qname(TYPES, "DefaultRunningTime"), 1, 1),
            (qname(TYPES, "MaximumRunningTime"), 1, 1),
            (qname(JSDL, "CPUArchitectureName"), 0, 1),
            (qname(DEFINITION, "VMM"), 0, 1),
            (qname(TYPES, "Associations"), 0, 1),
        ],
    ),
    "WorkspaceService": (
        qname(WORKSPACE, "ServiceRPSet"),
        [
            (qname(TYPES, "currentState"), 1, 1),
            (qname(TYPES, "schedule"), 1, 1),
            (qname(NEGOTIABLE, "ResourceAllocation"), 1, 1),
            (qname(LOGISTICS, "logistics"), 1, 1),
            (qname(WSNT, "FixedTopicSet"), 1, 1),
            (qname(WSNT, "Topic"), 1, MANY),
            (qname(WSRL, "TerminationTime"), 1, 1),
            (qname(WSNT, "TopicExpressionDialects"), 1, MANY),
            (qname(WSRL, "CurrentTime"), 1, 1),
        ],
    ),
    "WorkspaceStatusService": (qname(STATUS, "StatusRPSet"), [(qname(STATUS, "chargeGranularity"), 1, 1)]),
}


def deploy_nimbus_sample(gt4: Gt4Client) -> EndpointReference:
    """`workspace --deploy --metadata sample-workspace.xml --request sample-deployment-request.xml`."""
    (epr,) = created_eprs(gt4.create(NIMBUS / "sample-workspace.xml", NIMBUS / "sample-deployment-request.xml"))
    return epr


def resources(gt4: Gt4Client) -> dict[str, EndpointReference]:
    """A resource of each service that has a resource-property document."""
    return {
        "WorkspaceFactoryService": gt4.factory(),
        "WorkspaceService": deploy_nimbus_sample(gt4),
        "WorkspaceStatusService": EndpointReference(gt4.base_url + "WorkspaceStatusService"),
    }


def whole_document(gt4: Gt4Client, epr: EndpointReference) -> etree._Element:
    """What a stock client reads: the first element of the answer to `/`."""
    return gt4.query(epr, "/")[0]


def assert_follows_nimbus(service: str, document: etree._Element) -> None:
    tag, members = NIMBUS_DOCUMENTS[service]
    assert document.tag == tag
    children = [child.tag for child in document]
    for name, least, most in members:
        count = 0
        while children and children[0] == name:
            children.pop(0)
            count += 1
        assert count >= least and (most is MANY or count <= most), f"{count} {name} in {service}'s document"
    assert not children, f"{children[0]} is not where Nimbus's schema allows it, or not allowed at all"
    assert_valid(service, document)


@pytest.fixture
def service(downloading_service: Service) -> Service:
    return downloading_service


@pytest.fixture
def image() -> Iterator[HeldImage]:
    with HeldImage() as held:
        yield held


@pytest.mark.parametrize("target", NIMBUS_DOCUMENTS)
def test_our_schema_declares_each_document_as_nimbus_does(target):
    tag, members = NIMBUS_DOCUMENTS[target]
    schema = etree.parse(str(wsdl_path(target))).find(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    (declared,) = schema.iterfind(f"{{{XSD}}}element[@name='{etree.QName(tag).localname}']")
    sequence = []
    for ref in declared.iterfind(f"{{{XSD}}}complexType/{{{XSD}}}sequence/{{{XSD}}}element"):
        prefix, _, local = ref.get("ref").rpartition(":")
        most = ref.get("maxOccurs", "1")
        least = int(ref.get("minOccurs", "1"))
        sequence.append((qname(ref.nsmap[prefix], local), least, MANY if most == "unbounded" else int(most)))
    assert sequence == members


def test_every_whole_document_follows_nimbus_schema_also_while_an_image_is_copied(service, image):
    """Nimbus's sample deployed unchanged; then a second workspace whose image download is held half-way."""
    gt4 = Gt4Client(service.base_url, settle=settler(service))
    watcher = Gt4Client(service.base_url)  # does not wait for the held deployment
    try:
        for target, epr in resources(gt4).items():
            assert_follows_nimbus(target, whole_document(gt4, epr))
        body = create_request()
        body.find(f".//{{{DEFINITION}}}location").text = image.url
        (copying,) = created_eprs(watcher.call(watcher.factory(), FACTORY_ACTION + "createRequest", body))
        progress = progress_shown(watcher, copying)
        assert progress.get("bytesDone") == str(1 << 20)
        document = whole_document(watcher, copying)
        assert document.findtext(f"{{{TYPES}}}currentState/{{{TYPES}}}state") == "Unpropagated"
        assert_follows_nimbus("WorkspaceService", document)
        assert not document.findall(f".//{{{PROPAGATION}}}propagation")
        assert gt4.query(copying, "count(//*[local-name()='propagation'])").text == "0"
    finally:
        image.release()
        gt4.close()
        watcher.close()


def test_progress_is_read_by_name(service, image):
    """vws-client and anyone who asks for vws:propagation by name (Get or GetMultiple) still see it."""
    client = Gt4Client(service.base_url)
    try:
        body = create_request()
        body.find(f".//{{{DEFINITION}}}location").text = image.url
        (epr,) = created_eprs(client.call(client.factory(), FACTORY_ACTION + "createRequest", body))
        progress_shown(client, epr)
        several = etree.Element(qname(WSRP, "GetMultipleResourceProperties"), nsmap={"wsrp": WSRP, "v": PROPAGATION})
        etree.SubElement(several, qname(WSRP, "ResourceProperty")).text = "v:propagation"
        (shown,) = client.call(epr, WSRP_ACTION + "GetMultipleResourceProperties", several)
        assert shown.get("node") == "node1"
    finally:
        image.release()
        client.close()


@pytest.fixture(scope="module")
def stock_reader(tmp_path_factory) -> Path:
    """Stubs of the workspace and factory WSDLs and the reader, compiled: a classpath entry."""
    root = tmp_path_factory.mktemp("axis")
    trees = [root / "generated" / name for name in ("WorkspaceService", "WorkspaceFactoryService")]
    for tree in trees:
        failure = _generate(str(wsdl_path(tree.name)), tree)
        assert failure is None, failure
    assert not _merge(trees, root / "src")
    classes = root / "classes"
    classes.mkdir()
    sources = [str(path) for path in (root / "src").rglob("*.java")] + [str(READER)]
    javac = ["javac", "-nowarn", "-proc:none", "-encoding", "UTF-8", "-cp", CLASSPATH, "-d", str(classes)]
    failure = _run(javac + sources)
    assert failure is None, failure
    return classes


def stock_read(classes: Path, *arguments: str) -> str:
    """What StockRPQuery read (it fails as a stock client would)."""
    command = ["java", "-cp", f"{CLASSPATH}:{classes}", "StockRPQuery", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_axis
def test_the_stock_client_reads_each_document_as_its_bean_also_while_an_image_is_copied(stock_reader, service, image):
    gt4 = Gt4Client(service.base_url, settle=settler(service))
    watcher = Gt4Client(service.base_url)  # does not wait for the held deployment
    key = qname(WORKSPACE, "WorkspaceKey")
    try:
        assert stock_read(stock_reader, "factory", gt4.factory().address) == "P1D public"
        epr = deploy_nimbus_sample(gt4)
        assert stock_read(stock_reader, "workspace", epr.address, epr.key(key)) == "Running 3"  # state, topics
        body = create_request()
        body.find(f".//{{{DEFINITION}}}location").text = image.url
        (copying,) = created_eprs(watcher.call(watcher.factory(), FACTORY_ACTION + "createRequest", body))
        progress_shown(watcher, copying)
        assert stock_read(stock_reader, "workspace", copying.address, copying.key(key)) == "Unpropagated 3"
    finally:
        image.release()
        gt4.close()
        watcher.close()


@pytest.mark.parametrize("target", NIMBUS_DOCUMENTS)
def test_slash_answers_the_whole_document_and_other_expressions_still_work(gt4, target):
    epr = resources(gt4)[target]
    (document,) = gt4.query(epr, "/")
    assert document.tag == NIMBUS_DOCUMENTS[target][0]
    assert len(document) > 0
    (same,) = gt4.query(epr, "/*")
    assert [child.tag for child in same] == [child.tag for child in document]
    assert gt4.query(epr, "count(/*/*)").text == str(len(document))
    assert gt4.query(epr, "/..").text is None and not len(gt4.query(epr, "/.."))


def test_a_path_below_the_root_still_selects_properties(gt4):
    epr = resources(gt4)["WorkspaceService"]
    (state,) = gt4.query(epr, "/*/t:currentState/t:state", {"t": TYPES})
    assert state.text == "Running"
    (termination,) = gt4.query(epr, "/*/wsrl:TerminationTime", {"wsrl": WSRL})
    assert termination.tag == qname(WSRL, "TerminationTime")


def test_topics_name_the_topics_published_wherever_they_are_read(gt4):
    """wsnt:Topic holds a QName: in the whole document and read by name, it resolves to each topic."""
    epr = resources(gt4)["WorkspaceService"]
    (document,) = gt4.query(epr, "/")
    by_name = gt4.get_property(epr, qname(WSNT, "Topic"))
    published = {
        qname(TYPES, "currentState"),
        qname(WSRL, "ResourceTermination"),
        qname(NEGOTIABLE, "ResourceAllocation"),
    }
    for topics in (document.findall(qname(WSNT, "Topic")), list(by_name)):
        assert {_resolved(topic) for topic in topics} == published


def _resolved(element) -> str:  # type: ignore[no-untyped-def]
    prefix, _, local = element.text.strip().rpartition(":")
    return qname(element.nsmap[prefix or None], local)
