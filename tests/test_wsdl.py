"""The hand-written contract in wsdl/ against the code that speaks the wire.

The operation tables are not written out here: they are read from the port types
the running service routes (every Operation's request element, actions and fault
table), so a WSDL and the code cannot drift apart silently. Every top-level WSDL
loads in zeep; every schema compiles; zeep serialises a create request that
validates; and what the running service actually sends (create responses, every
resource property, the other operations' replies, a fault, a notification) is
valid against the schemas and is the output element the WSDL declares.
"""

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import zeep
from lxml import etree

import vws.service
from tests import resources
from tests.conftest import make_config
from tests.gt4wire import Gt4Client, SoapFault, create_body, created_eprs
from vws.soap.dispatch import Operation
from vws.wsrf import notification
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import (
    DEFINITION,
    ENSEMBLE,
    GROUP,
    JSDL,
    METADATA,
    NEGOTIABLE,
    SOAP_ENV,
    STATUS,
    TOPIC_SIMPLE,
    TYPES,
    WORKSPACE,
    WSA,
    WSNT,
    WSRL,
    WSRP,
    WSTOP,
    XPATH_DIALECT,
    XSD,
    qname,
)

ROOT = Path(__file__).resolve().parents[1]
WSDL_DIR = ROOT / "wsdl"
SAMPLES = ROOT / "etc" / "samples"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
TOP_LEVEL = sorted(path.stem for path in WSDL_DIR.glob("*.wsdl"))
# For clients' listeners, not routed by the server: its one operation is what vws sends them.
CONSUMER = "NotificationConsumerService"


def wsdl_path(service: str) -> Path:
    return WSDL_DIR / f"{service}.wsdl"


# ---- what the code dispatches on ------------------------------------------------------


@pytest.fixture(scope="module")
def routed(tmp_path_factory) -> dict[str, list[Operation]]:
    """{service: its Operations}, exactly as vws.service.Service routes them."""
    captured: dict[str, list[Operation]] = {}
    real = vws.service.wsgi_application

    def spy(port_type, *rest):  # type: ignore[no-untyped-def]
        captured[port_type.service] = list(port_type.operations())
        return real(port_type, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vws.service, "wsgi_application", spy)
        running = vws.service.Service(make_config(tmp_path_factory.mktemp("routed") / "state"))
        running.start()
        running.stop()
    return captured


def code_table(routed: dict[str, list[Operation]], service: str) -> dict[str, tuple]:
    """{operation: (request element, action, reply action, fault elements it may answer)}."""
    if service == CONSUMER:
        return {"Notify": (qname(WSNT, "Notify"), notification.NOTIFY_ACTION, None, frozenset())}
    return {
        op.name: (
            op.request,
            op.action,
            op.reply_action,
            frozenset(filter(None, (op.faults.general, *op.faults.specific.values()))),
        )
        for op in routed[service]
    }


# ---- what the WSDL says ---------------------------------------------------------------

_clients: dict[str, zeep.Client] = {}


def client(service: str) -> zeep.Client:
    """One zeep client per WSDL, read from its file path, for the whole module."""
    if service not in _clients:
        _clients[service] = zeep.Client(str(wsdl_path(service)))
    return _clients[service]


def port(service: str):  # type: ignore[no-untyped-def]
    (zeep_service,) = client(service).wsdl.services.values()
    assert zeep_service.name == service
    (only,) = zeep_service.ports.values()
    return only


def wsdl_table(service: str) -> tuple[dict[str, tuple], frozenset]:
    """The WSDL's own table in code_table's shape (declared faults, a superset, apart)."""
    binding = port(service).binding
    port_type = binding.port_type.name.localname
    declared = etree.parse(str(wsdl_path(service))).find(f"{{{WSDL_NS}}}portType[@name='{port_type}']")
    table, faults = {}, set()
    for name, bound in binding._operations.items():
        abstract = declared.find(f"{{{WSDL_NS}}}operation[@name='{name}']")
        action = abstract.find(f"{{{WSDL_NS}}}input").get(qname(WSA, "Action"))
        assert bound.soapaction == action, f"{name}: soapAction and wsa:Action differ"
        output = abstract.find(f"{{{WSDL_NS}}}output")
        assert (output is None) == (bound.output is None)
        declared_faults = frozenset(
            str(part.element.qname) for fault in bound.faults.values() for part in fault.abstract.parts.values()
        )
        faults |= {(name, element) for element in declared_faults}
        table[name] = (
            str(bound.input.body.qname),
            action,
            None if output is None else output.get(qname(WSA, "Action")),
            declared_faults,
        )
    return table, frozenset(faults)


def output_element(service: str, operation: str) -> str:
    return str(port(service).binding._operations[operation].output.body.qname)


def inline_schema(service: str) -> etree.XMLSchema:
    return inline_schema_at(wsdl_path(service))


_schemas: dict[str, etree.XMLSchema] = {}


def all_schema_files() -> etree.XMLSchema:
    """Every schema file under wsdl/ (one per namespace) in one schema."""
    if "" not in _schemas:
        wrapper = etree.Element(qname(XSD, "schema"))
        for path in sorted(WSDL_DIR.rglob("*.xsd")):
            namespace = etree.parse(str(path)).getroot().get("targetNamespace")
            etree.SubElement(wrapper, qname(XSD, "import"), namespace=namespace, schemaLocation=path.as_uri())
        _schemas[""] = etree.XMLSchema(wrapper)
    return _schemas[""]


def assert_valid(service: str, element: etree._Element) -> None:
    """Valid against the service's WSDL: its inline schema for its own namespace, else the schema files."""
    inline = etree.parse(str(wsdl_path(service))).find(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    if inline is not None and etree.QName(element).namespace == inline.get("targetNamespace"):
        if service not in _schemas:
            _schemas[service] = inline_schema(service)
        _schemas[service].assertValid(element)
    else:
        all_schema_files().assertValid(element)


def inline_schema_at(path: Path) -> etree.XMLSchema:
    """A WSDL's own xsd:schema, standalone (tostring keeps the inherited prefixes)."""
    element = etree.parse(str(path)).find(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    return etree.XMLSchema(etree.fromstring(etree.tostring(element), base_url=str(path)))


# ---- the WSDL files themselves --------------------------------------------------------


def test_every_routed_service_has_its_wsdl(routed):
    assert set(TOP_LEVEL) == set(routed) | {CONSUMER}


@pytest.mark.parametrize("service", TOP_LEVEL)
def test_wsdl_matches_the_port_type(routed, service):
    """Operations, input elements, soapAction = wsa:Action, reply actions; every fault the code answers is declared."""
    bound = port(service)
    assert bound.name == bound.binding.port_type.name.localname + "Port"
    assert bound.binding_options["address"] == f"http://localhost:8443/wsrf/services/{service}"
    table, _ = wsdl_table(service)
    code = code_table(routed, service)
    assert {name: entry[:3] for name, entry in table.items()} == {name: entry[:3] for name, entry in code.items()}
    undeclared = {name: missing for name in code if (missing := code[name][3] - table[name][3])}
    assert not undeclared, f"faults the code answers but the WSDL does not declare: {undeclared}"


@pytest.mark.parametrize("service", TOP_LEVEL)
def test_resource_property_document(service):
    """Port types with resource properties name their document, a global element of the inline schema."""
    root = etree.parse(str(wsdl_path(service))).getroot()
    (port_type,) = root.iterchildren(f"{{{WSDL_NS}}}portType")
    document = port_type.get(qname(WSRP, "ResourceProperties"))
    has_properties = port_type.find(f"{{{WSDL_NS}}}operation[@name='GetResourceProperty']") is not None
    assert (document is not None) == has_properties
    if document is not None:
        assert _rp_elements(service)


SCHEMA_DOCUMENTS = sorted(WSDL_DIR.rglob("*.xsd")) + [
    path for path in sorted(WSDL_DIR.rglob("*.wsdl")) if etree.parse(str(path)).find(f"{{{WSDL_NS}}}types") is not None
]


@pytest.mark.parametrize("path", SCHEMA_DOCUMENTS, ids=lambda path: str(path.relative_to(WSDL_DIR)))
def test_schema_compiles(path):
    """Every schema file, and every WSDL's inline schema, resolves all its references."""
    if path.suffix == ".xsd":
        etree.XMLSchema(etree.parse(str(path)))
    else:
        inline_schema_at(path)


@pytest.mark.parametrize(
    ("sample", "schema"),
    [("workspace.xml", "workspace/metadata/vw.xsd"), ("deployment-request.xml", "workspace/negotiable.xsd")],
)
def test_legacy_sample_documents_validate(sample, schema):
    """The files a legacy user passes to --metadata and --request."""
    etree.XMLSchema(etree.parse(str(WSDL_DIR / schema))).assertValid(etree.parse(str(SAMPLES / sample)))


def test_topic_spaces():
    """The workspace publishes on currentState and ResourceTermination, and says so in WS-Topics terms."""
    topics_schema = etree.XMLSchema(etree.parse(str(WSDL_DIR / "wsrf/notification/WS-Topics.xsd")))
    documents = [wsdl_path("WorkspaceService"), WSDL_DIR / "wsrf/lifetime/WS-ResourceLifetime.wsdl"]
    topics = set()
    for document in documents:
        for space in etree.parse(str(document)).getroot().iterchildren(qname(WSTOP, "topicSpace")):
            topics_schema.assertValid(space)
            topics |= {qname(space.get("targetNamespace"), topic.get("name")) for topic in space}
    from vws.soap.porttypes.producer import TOPICS

    assert topics == set(TOPICS)


# ---- zeep builds a create request from the samples ------------------------------------

# The legacy client's sample: `workspace --deploy --metadata sample-workspace.xml
# --deploy-duration 30 --deploy-mem 256 --deploy-state Running`.
SAMPLE_METADATA = {
    "name": "http://vws.example.org/samples/ttylinux",
    "logistics": {
        "networking": {
            "nic": [
                {"name": "eth0", "ipConfig": {"acquisitionMethod": "AllocateAndConfigure"}, "association": "public"}
            ]
        }
    },
    "definition": {
        "requirements": {"CPUArchitecture": {"CPUArchitectureName": "x86_64"}},
        "diskCollection": {
            "rootVBD": {"location": "file://ttylinux-xen", "mountAs": "sda1", "permissions": "ReadWrite"}
        },
    },
}
SAMPLE_REQUEST = {
    "DeploymentTime": {"minDuration": timedelta(minutes=30)},
    "InitialState": "Running",
    "ResourceAllocation": {"IndividualCPUCount": {"Exact": [1]}, "IndividualPhysicalMemory": {"Exact": [256]}},
    "NodeNumber": 1,
}
SAMPLE_OPTIONAL = {
    "filewrite": [{"content": "ssh-rsa AAAAB3Nza... user@host", "pathOnVM": "/root/.ssh/authorized_keys"}],
    "mdServerUserdata": "#!/bin/sh\necho hello\n",
}


def _sample_files(factory: zeep.Client) -> dict:
    """The sample files read through the factory's WSDL, as vws-client deploy does."""

    def load(name: str, element: str):  # type: ignore[no-untyped-def]
        return factory.get_element(element).parse(etree.parse(str(SAMPLES / name)).getroot(), factory.wsdl.types)

    return {
        "metadata": load("workspace.xml", qname(METADATA, "VirtualWorkspace")),
        "resourceRequest": load("deployment-request.xml", qname(NEGOTIABLE, "WorkspaceDeployment")),
    }


ZEEP_CREATES = {
    "sample-files": _sample_files,
    "sample-values": lambda factory: {"metadata": SAMPLE_METADATA, "resourceRequest": SAMPLE_REQUEST},
    "with-options": lambda factory: {
        "metadata": SAMPLE_METADATA,
        "resourceRequest": SAMPLE_REQUEST,
        "optionalParameters": SAMPLE_OPTIONAL,
        "partOfEnsemble": True,
        "ensembleDone": False,
    },
}


@pytest.mark.parametrize("arguments", ZEEP_CREATES.values(), ids=ZEEP_CREATES)
def test_zeep_create_request_validates(arguments):
    factory = client("WorkspaceFactoryService")
    envelope = factory.create_message(factory.service, "create", **arguments(factory))
    (body,) = envelope.find(qname(SOAP_ENV, "Body"))
    assert body.tag == qname(WORKSPACE, "create")
    inline_schema("WorkspaceFactoryService").assertValid(body)
    request = body.find(qname(TYPES, "resourceRequest"))
    assert request.findtext(f"{{{NEGOTIABLE}}}DeploymentTime/{{{NEGOTIABLE}}}minDuration") == "PT30M"
    memory = f"{{{NEGOTIABLE}}}ResourceAllocation/{{{JSDL}}}IndividualPhysicalMemory/{{{JSDL}}}Exact"
    assert float(request.findtext(memory)) == 256
    root_disk = f"{{{DEFINITION}}}definition/{{{DEFINITION}}}diskCollection/{{{DEFINITION}}}rootVBD"
    assert body.findtext(f"{{{TYPES}}}metadata/{root_disk}/{{{DEFINITION}}}location") == "file://ttylinux-xen"


# ---- what the running service sends follows this contract ----------------------------


def _sample_create() -> etree._Element:
    return create_body(
        etree.parse(str(SAMPLES / "workspace.xml")).getroot(),
        etree.parse(str(SAMPLES / "deployment-request.xml")).getroot(),
    )


WIRE_CREATES: dict[str, Callable[[], etree._Element]] = {
    "sample": _sample_create,
    "group": lambda: resources.create_request(node_number=2),
    "ensemble": lambda: resources.in_ensemble(resources.create_request(), None),
}


class Wire:
    """Calls a running service by body element, with the action the routed port type expects."""

    def __init__(self, gt4: Gt4Client, routed: dict[str, list[Operation]], clock) -> None:  # type: ignore[no-untyped-def]
        self.gt4 = gt4
        self._routed = routed
        self.now = clock.now

    def epr(self, service: str) -> EndpointReference:
        return EndpointReference(self.gt4.base_url + service)

    def call(self, service: str, body: etree._Element, epr: EndpointReference | None = None) -> etree._Element:
        """The reply payload, checked to be the output element the WSDL declares and valid."""
        (operation,) = (op for op in self._routed[service] if op.request == body.tag)
        reply = self.gt4.call(epr or self.epr(service), operation.action, body)
        assert reply.tag == output_element(service, operation.name)
        assert_valid(service, reply)
        return reply

    def create(self, body: etree._Element) -> etree._Element:
        inline_schema("WorkspaceFactoryService").assertValid(body)
        return self.call("WorkspaceFactoryService", body)


@pytest.fixture
def wire(gt4, routed, clock) -> Iterator[Wire]:
    yield Wire(gt4, routed, clock)


@pytest.mark.parametrize("body", WIRE_CREATES.values(), ids=WIRE_CREATES)
def test_create_request_and_response_validate(wire, body):
    """The body tests.gt4wire builds (as legacy clients nest the sample documents), and the reply."""
    created = wire.create(body())
    assert created_eprs(created)


def _rp_elements(service: str) -> list[str]:
    """The properties the port type's RP document declares, in order (from the WSDL and its schemas)."""
    root = etree.parse(str(wsdl_path(service))).getroot()
    (port_type,) = root.iterchildren(f"{{{WSDL_NS}}}portType")
    prefix, _, local = port_type.get(qname(WSRP, "ResourceProperties")).partition(":")
    namespace = port_type.nsmap[prefix]
    schemas = [*root.iterfind(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")]
    schemas += [etree.parse(str(path)).getroot() for path in sorted(WSDL_DIR.rglob("*.xsd"))]
    (document,) = (
        element
        for schema in schemas
        if schema.get("targetNamespace") == namespace
        for element in schema.iterfind(f"{{{XSD}}}element[@name='{local}']")
    )
    names = []
    for ref in document.iter(f"{{{XSD}}}element"):
        if ref.get("ref"):
            ref_prefix, _, ref_local = ref.get("ref").partition(":")
            names.append(qname(ref.nsmap[ref_prefix], ref_local))
    return names


def _get_property(wire: Wire, service: str, epr: EndpointReference, name: str) -> etree._Element:
    body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "p": etree.QName(name).namespace})
    body.text = "p:" + etree.QName(name).localname
    return wire.call(service, body, epr)


def _targets(wire: Wire) -> dict[str, EndpointReference]:
    """A resource of every service with resource properties: factory, a workspace, status, a subscription."""
    (workspace,) = created_eprs(wire.create(_sample_create()))
    consumer = EndpointReference("http://127.0.0.1:9/wsrf/services/NotificationConsumerService")
    subscribe = notification.subscribe_request(consumer, qname(TYPES, "currentState"))
    subscription = wire.call("WorkspaceService", subscribe, workspace)
    return {
        "WorkspaceFactoryService": wire.epr("WorkspaceFactoryService"),
        "WorkspaceService": workspace,
        "WorkspaceStatusService": wire.epr("WorkspaceStatusService"),
        "SubscriptionManagerService": EndpointReference.from_element(
            subscription.find(qname(WSNT, "SubscriptionReference"))
        ),
    }


WITH_PROPERTIES = [
    "WorkspaceFactoryService",
    "WorkspaceService",
    "WorkspaceStatusService",
    "SubscriptionManagerService",
]


# (Not "service": that is conftest's running-service fixture, which these tests use.)
@pytest.mark.parametrize("target", WITH_PROPERTIES)
def test_get_resource_property_replies_validate(wire, target):
    """GetResourceProperty of every declared property: the reply, and each value as its own declared element."""
    resource = _targets(wire)[target]
    for name in _rp_elements(target):
        reply = _get_property(wire, target, resource, name)
        for value in reply:
            assert value.tag == name
            assert_valid(target, value)


def _query_everything() -> etree._Element:
    query = etree.Element(qname(WSRP, "QueryResourceProperties"))
    etree.SubElement(query, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT).text = "/*"
    return query


@pytest.mark.parametrize("target", WITH_PROPERTIES[:3])  # SubscriptionManager offers GetResourceProperty only
def test_whole_property_document_validates(wire, target):
    (document,) = wire.call(target, _query_everything(), _targets(wire)[target])
    assert_valid(target, document)


def test_fault_detail_validates(wire):
    (workspace,) = created_eprs(wire.create(_sample_create()))
    with pytest.raises(SoapFault) as fault:
        _get_property(wire, "WorkspaceService", workspace, qname(TYPES, "noSuchProperty"))
    assert fault.value.element == qname(WSRP, "InvalidResourcePropertyQNameFault")
    assert_valid("WorkspaceService", fault.value.detail)


def _element(tag: str, *children: tuple[str, str]) -> etree._Element:
    element = etree.Element(tag)
    for child, text in children:
        etree.SubElement(element, child).text = text
    return element


def test_other_replies_validate(wire):
    """The remaining operations' replies, each checked by Wire.call."""
    created = wire.create(resources.in_ensemble(resources.create_request(node_number=2), None))
    group = EndpointReference.from_element(created.find(qname(TYPES, "GroupEPR")))
    ensemble = EndpointReference.from_element(created.find(qname(TYPES, "EnsembleEPR")))
    workspace = created_eprs(created)[0]
    calls = [
        ("WorkspaceStatusService", _element(qname(STATUS, "queryCurrentWorkspaces")), None),
        ("WorkspaceStatusService", _element(qname(STATUS, "queryUsedAndReserved")), None),
        ("WorkspaceEnsembleService", _element(qname(ENSEMBLE, "done")), ensemble),
        (
            "WorkspaceEnsembleService",
            _element(qname(ENSEMBLE, "report"), (qname(TYPES, "returnOnlyIfErrorPresent"), "false")),
            ensemble,
        ),
        ("WorkspaceService", _current_message_request(), workspace),
        (
            "WorkspaceService",
            _element(
                qname(WSRL, "SetTerminationTime"), (qname(WSRL, "RequestedTerminationTime"), "2026-11-26T12:00:00Z")
            ),
            workspace,
        ),
        (
            "WorkspaceGroupService",
            _element(qname(GROUP, "shutdownWorkspaces"), (qname(TYPES, "shutdownType"), "Normal")),
            group,
        ),
        ("WorkspaceGroupService", _element(qname(GROUP, "startWorkspaces")), group),
        (
            "WorkspaceService",
            _element(qname(WORKSPACE, "shutdownWorkspace"), (qname(TYPES, "shutdownType"), "Pause")),
            workspace,
        ),
        ("WorkspaceService", _element(qname(WORKSPACE, "startWorkspace")), workspace),
        ("WorkspaceService", _element(qname(WSRL, "Destroy")), workspace),
        ("WorkspaceGroupService", _element(qname(WSRL, "Destroy")), group),
    ]
    for service, body, epr in calls:
        wire.call(service, body, epr)
    report = wire.call("WorkspaceStatusService", _element(qname(STATUS, "queryCurrentWorkspaces")))
    assert report.tag == qname(STATUS, "currentWorkspaces")


def _current_message_request() -> etree._Element:
    request = etree.Element(qname(WSNT, "GetCurrentMessage"), nsmap={"wsnt": WSNT, "t": TYPES})
    etree.SubElement(request, qname(WSNT, "Topic"), Dialect=TOPIC_SIMPLE).text = "t:currentState"
    return request


def test_notify_validates(wire):
    """What vws POSTs to a subscriber's NotificationConsumer, with each topic's message as the service makes it."""
    (workspace,) = created_eprs(wire.create(_sample_create()))
    (state_message,) = wire.call("WorkspaceService", _current_message_request(), workspace)
    messages = {
        qname(TYPES, "currentState"): state_message,
        qname(WSRL, "ResourceTermination"): notification.termination(wire.now(), "destroyed"),
    }
    consumer = EndpointReference(wire.gt4.base_url + CONSUMER, (etree.Element("{urn:example:listener}Key"),))
    for topic, message in messages.items():
        envelope = notification.notify_envelope(topic, workspace, consumer, message)
        (body,) = envelope.find(qname(SOAP_ENV, "Body"))
        assert body.tag == str(port(CONSUMER).binding._operations["Notify"].input.body.qname)
        assert_valid(CONSUMER, body)
        (payload,) = body.find(f"{{{WSNT}}}NotificationMessage/{{{WSNT}}}Message")
        assert_valid("WorkspaceService", payload)
