"""The hand-written contract in wsdl/: what zeep reads from it and what it validates.

Every top-level WSDL loads in zeep with the expected service, port and operations;
each operation has the input element, soapAction and wsa:Action the SOAP layer
codes against; every schema compiles; a create request that zeep builds from the
legacy client's sample values validates against the schemas, and so do the replies
of a running service.
"""

from datetime import timedelta
from pathlib import Path

import pytest
import zeep
from lxml import etree

from tests.gt4wire import SoapFault, create_body, created_eprs
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
    TYPES,
    WORKSPACE,
    WSA,
    WSNT,
    WSNT_ACTION,
    WSRL,
    WSRL_ACTION,
    WSRP,
    WSRP_ACTION,
    WSTOP,
    XPATH_DIALECT,
    XSD,
    qname,
)

ROOT = Path(__file__).resolve().parents[1]
WSDL_DIR = ROOT / "wsdl"
SAMPLES = ROOT / "etc" / "samples"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"


def _spec(namespace: str, *names: str) -> dict[str, str]:
    """WSRF/WSN operations: the input element is named after the operation."""
    return {name: qname(namespace, name) for name in names}


PROPERTIES = _spec(WSRP, "GetResourceProperty", "GetMultipleResourceProperties", "QueryResourceProperties")
LIFETIME = _spec(WSRL, "Destroy", "SetTerminationTime")
PRODUCER = _spec(WSNT, "Subscribe", "GetCurrentMessage")

# Top-level WSDL (= service name) -> (port type, {operation: input element}).
SERVICES = {
    "WorkspaceFactoryService": (
        "WorkspaceFactoryPortType",
        {"create": qname(WORKSPACE, "create"), **PROPERTIES},
    ),
    "WorkspaceService": (
        "WorkspacePortType",
        {
            "start": qname(WORKSPACE, "startWorkspace"),
            "shutdown": qname(WORKSPACE, "shutdownWorkspace"),
            **PROPERTIES,
            **LIFETIME,
            **PRODUCER,
        },
    ),
    "WorkspaceGroupService": (
        "WorkspaceGroupPortType",
        {
            "start": qname(GROUP, "startWorkspaces"),
            "shutdown": qname(GROUP, "shutdownWorkspaces"),
            "Destroy": LIFETIME["Destroy"],
        },
    ),
    "WorkspaceEnsembleService": (
        "WorkspaceEnsemblePortType",
        {"done": qname(ENSEMBLE, "done"), "report": qname(ENSEMBLE, "report"), "Destroy": LIFETIME["Destroy"]},
    ),
    "WorkspaceStatusService": (
        "WorkspaceStatusPortType",
        {
            "queryCurrentWorkspaces": qname(STATUS, "queryCurrentWorkspaces"),
            "queryUsedAndReservedTime": qname(STATUS, "queryUsedAndReserved"),
            **PROPERTIES,
        },
    ),
    "SubscriptionManagerService": (
        "SubscriptionManager",
        {
            **_spec(WSNT, "PauseSubscription", "ResumeSubscription"),
            "GetResourceProperty": PROPERTIES["GetResourceProperty"],
            **LIFETIME,
        },
    ),
    "NotificationConsumerService": ("NotificationConsumer", _spec(WSNT, "Notify")),
}
SPEC_ACTIONS = {WSRP: WSRP_ACTION, WSRL: WSRL_ACTION, WSNT: WSNT_ACTION}
OPERATIONS = [(service, operation) for service, (_, ops) in SERVICES.items() for operation in ops]


def wsdl_path(service: str) -> Path:
    return WSDL_DIR / f"{service}.wsdl"


_clients: dict[str, zeep.Client] = {}


def client(service: str) -> zeep.Client:
    """One zeep client per WSDL for the whole module: loading one takes a while."""
    if service not in _clients:
        _clients[service] = zeep.Client(str(wsdl_path(service)))
    return _clients[service]


def expected_actions(service: str, operation: str) -> tuple[str, str]:
    """(request, response) actions: the spec's URI for WSRF/WSN, else <namespace>/<PortType>/<op>Request."""
    port_type, operations = SERVICES[service]
    namespace = etree.QName(operations[operation]).namespace
    if namespace in SPEC_ACTIONS:
        request = SPEC_ACTIONS[namespace] + operation
        return request, request + "Response"
    prefix = f"{namespace}/{port_type}/{operation}"
    return prefix + "Request", prefix + "Response"


def inline_schema(path: Path) -> etree.XMLSchema:
    """The WSDL's own xsd:schema, standalone (tostring keeps the inherited prefixes)."""
    element = etree.parse(str(path)).find(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    return etree.XMLSchema(etree.fromstring(etree.tostring(element), base_url=str(path)))


SCHEMA_DOCUMENTS = sorted(WSDL_DIR.rglob("*.xsd")) + [
    path for path in sorted(WSDL_DIR.rglob("*.wsdl")) if etree.parse(str(path)).find(f"{{{WSDL_NS}}}types") is not None
]


def test_every_top_level_wsdl_is_covered():
    assert {path.stem for path in WSDL_DIR.glob("*.wsdl")} == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_service_port_and_operations(service):
    port_type, operations = SERVICES[service]
    (zeep_service,) = client(service).wsdl.services.values()
    assert zeep_service.name == service
    (port,) = zeep_service.ports.values()
    assert port.name == port_type + "Port"
    assert port.binding.port_type.name.localname == port_type
    assert set(port.binding._operations) == set(operations)
    assert port.binding_options["address"] == f"http://localhost:8443/wsrf/services/{service}"


@pytest.mark.parametrize(("service", "operation"), OPERATIONS)
def test_operation_contract(service, operation):
    port_type, operations = SERVICES[service]
    (zeep_service,) = client(service).wsdl.services.values()
    (port,) = zeep_service.ports.values()
    bound = port.binding._operations[operation]
    request_action, response_action = expected_actions(service, operation)

    assert bound.input.body.qname == operations[operation]
    assert bound.soapaction == request_action

    declared = etree.parse(str(wsdl_path(service))).find(
        f"{{{WSDL_NS}}}portType[@name='{port_type}']/{{{WSDL_NS}}}operation[@name='{operation}']"
    )
    assert declared.find(f"{{{WSDL_NS}}}input").get(qname(WSA, "Action")) == request_action
    output = declared.find(f"{{{WSDL_NS}}}output")
    if operation == "Notify":  # one-way
        assert output is None and bound.output is None
    else:
        assert output.get(qname(WSA, "Action")) == response_action
        assert bound.output.body is not None


@pytest.mark.parametrize("path", SCHEMA_DOCUMENTS, ids=lambda path: str(path.relative_to(WSDL_DIR)))
def test_schema_compiles(path):
    """Every schema file, and every WSDL's inline schema, resolves all its references."""
    if path.suffix == ".xsd":
        etree.XMLSchema(etree.parse(str(path)))
    else:
        inline_schema(path)


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


CREATE_REQUESTS = {
    "sample-values": lambda factory: {"metadata": SAMPLE_METADATA, "resourceRequest": SAMPLE_REQUEST},
    "with-options": lambda factory: {
        "metadata": SAMPLE_METADATA,
        "resourceRequest": SAMPLE_REQUEST,
        "optionalParameters": SAMPLE_OPTIONAL,
        "partOfEnsemble": True,
        "ensembleDone": False,
    },
    "sample-files": _sample_files,
}


@pytest.mark.parametrize("arguments", CREATE_REQUESTS.values(), ids=CREATE_REQUESTS)
def test_create_request_validates(arguments):
    factory = client("WorkspaceFactoryService")
    envelope = factory.create_message(factory.service, "create", **arguments(factory))
    (body,) = envelope.find(qname(SOAP_ENV, "Body"))
    assert body.tag == qname(WORKSPACE, "create")
    inline_schema(wsdl_path("WorkspaceFactoryService")).assertValid(body)
    request = body.find(qname(TYPES, "resourceRequest"))
    assert request.findtext(f"{{{NEGOTIABLE}}}DeploymentTime/{{{NEGOTIABLE}}}minDuration") == "PT30M"
    memory = f"{{{NEGOTIABLE}}}ResourceAllocation/{{{JSDL}}}IndividualPhysicalMemory/{{{JSDL}}}Exact"
    assert float(request.findtext(memory)) == 256
    root_disk = f"{{{DEFINITION}}}definition/{{{DEFINITION}}}diskCollection/{{{DEFINITION}}}rootVBD"
    assert body.findtext(f"{{{TYPES}}}metadata/{root_disk}/{{{DEFINITION}}}location") == "file://ttylinux-xen"


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
    assert topics == {qname(TYPES, "currentState"), qname(WSRL, "ResourceTermination")}


# ---- what the running service sends follows this contract ----


def _query_everything() -> etree._Element:
    query = etree.Element(qname(WSRP, "QueryResourceProperties"))
    etree.SubElement(query, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT).text = "/*"
    return query


def test_service_replies_validate(gt4):
    """The sample create's response, the workspace's and the factory's RP documents, a fault."""
    created = gt4.create()
    inline_schema(wsdl_path("WorkspaceFactoryService")).assertValid(created)
    (workspace,) = created_eprs(created)
    for target, service in ((workspace, "WorkspaceService"), (gt4.factory(), "WorkspaceFactoryService")):
        (document,) = gt4.call(target, WSRP_ACTION + "QueryResourceProperties", _query_everything())
        inline_schema(wsdl_path(service)).assertValid(document)
    with pytest.raises(SoapFault) as fault:
        gt4.get_property(workspace, qname(TYPES, "noSuchProperty"))
    assert fault.value.element == qname(WSRP, "InvalidResourcePropertyQNameFault")
    inline_schema(wsdl_path("WorkspaceService")).assertValid(fault.value.detail)


def test_ensemble_report_validates(gt4):
    body = create_body(
        etree.parse(str(SAMPLES / "workspace.xml")).getroot(),
        etree.parse(str(SAMPLES / "deployment-request.xml")).getroot(),
    )
    etree.SubElement(body, qname(TYPES, "partOfEnsemble")).text = "true"
    created = gt4.call(gt4.factory(), f"{WORKSPACE}/WorkspaceFactoryPortType/createRequest", body)
    ensemble = EndpointReference.from_element(created.find(qname(TYPES, "EnsembleEPR")))
    report = etree.Element(qname(ENSEMBLE, "report"))
    etree.SubElement(report, qname(TYPES, "returnOnlyIfErrorPresent")).text = "false"
    schema = inline_schema(wsdl_path("WorkspaceEnsembleService"))
    schema.assertValid(report)
    schema.assertValid(gt4.call(ensemble, f"{ENSEMBLE}/WorkspaceEnsemblePortType/reportRequest", report))
