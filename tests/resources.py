"""Wire helpers for the issue #5 tests: create variants, subscriptions, groups, ensembles, status.

Hand-built GT4-style bodies, as legacy clients send them, sent with tests.gt4wire.
"""

from lxml import etree

from tests import gt4wire
from tests.gt4wire import ENSEMBLE_ACTION, FACTORY_ACTION, Gt4Client, create_body
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import (
    ENSEMBLE,
    GROUP,
    JSDL,
    NEGOTIABLE,
    STATUS,
    TOPIC_SIMPLE,
    TYPES,
    WSNT,
    WSNT_ACTION,
    WSRL,
    WSRL_ACTION,
    qname,
)

STATE_TOPIC = qname(TYPES, "currentState")
TERMINATION_TOPIC = qname(WSRL, "ResourceTermination")
GROUP_ACTION = GROUP + "/WorkspaceGroupPortType/"
STATUS_ACTION = STATUS + "/WorkspaceStatusPortType/"


def create_request(
    initial_state: str = "Running", node_number: int = 1, memory_mb: int = 256, duration: str = "PT30M"
) -> etree._Element:
    """The sample create body with the deployment request's main knobs set."""
    metadata = etree.parse(str(gt4wire.SAMPLES / "workspace.xml")).getroot()
    request = etree.parse(str(gt4wire.SAMPLES / "deployment-request.xml")).getroot()
    request.find(f"{{{NEGOTIABLE}}}InitialState").text = initial_state
    request.find(f"{{{NEGOTIABLE}}}NodeNumber").text = str(node_number)
    request.find(f".//{{{JSDL}}}IndividualPhysicalMemory/{{{JSDL}}}Exact").text = str(memory_mb)
    request.find(f".//{{{NEGOTIABLE}}}minDuration").text = duration
    return create_body(metadata, request)


def in_ensemble(body: etree._Element, ensemble: EndpointReference | None, done: bool = False) -> etree._Element:
    etree.SubElement(body, qname(TYPES, "partOfEnsemble")).text = "true"
    if ensemble is not None:
        body.append(ensemble.to_element(qname(TYPES, "ensembleEPR")))
    etree.SubElement(body, qname(TYPES, "ensembleDone")).text = "true" if done else "false"
    return body


def create(client: Gt4Client, body: etree._Element) -> etree._Element:
    return client.call(client.factory(), FACTORY_ACTION + "createRequest", body)


def reference(response: etree._Element, name: str) -> EndpointReference | None:
    """GroupEPR or EnsembleEPR of a create response; None when nil."""
    element = response.find(qname(TYPES, name))
    return None if element is None or not len(element) else EndpointReference.from_element(element)


def subscribe(client: Gt4Client, epr: EndpointReference, consumer: EndpointReference, topic: str):
    body = etree.Element(qname(WSNT, "Subscribe"), nsmap={"wsnt": WSNT, "t": etree.QName(topic).namespace})
    body.append(consumer.to_element(qname(WSNT, "ConsumerReference")))
    expression = etree.SubElement(body, qname(WSNT, "TopicExpression"), Dialect=TOPIC_SIMPLE)
    expression.text = "t:" + etree.QName(topic).localname
    reply = client.call(epr, WSNT_ACTION + "Subscribe", body)
    return EndpointReference.from_element(reply.find(qname(WSNT, "SubscriptionReference")))


def subscription_call(client: Gt4Client, subscription: EndpointReference, operation: str) -> etree._Element:
    """PauseSubscription, ResumeSubscription (WSN) or Destroy (WSRL) on a subscription."""
    namespace, action = (WSRL, WSRL_ACTION) if operation == "Destroy" else (WSNT, WSNT_ACTION)
    return client.call(subscription, action + operation, etree.Element(qname(namespace, operation)))


def group_call(client: Gt4Client, group: EndpointReference, operation: str, shutdown_type: str = "Normal"):
    if operation == "Destroy":
        return client.call(group, WSRL_ACTION + "Destroy", etree.Element(qname(WSRL, "Destroy")))
    body = etree.Element(qname(GROUP, operation + "Workspaces"), nsmap={"types": TYPES})
    if operation == "shutdown":
        etree.SubElement(body, qname(TYPES, "shutdownType")).text = shutdown_type
    return client.call(group, GROUP_ACTION + operation + "Request", body)


def ensemble_done(client: Gt4Client, ensemble: EndpointReference) -> etree._Element:
    return client.call(ensemble, ENSEMBLE_ACTION + "doneRequest", etree.Element(qname(ENSEMBLE, "done")))


def ensemble_report(
    client: Gt4Client, ensemble: EndpointReference, error_only: bool = False, all_at: str | None = None
) -> list[etree._Element]:
    body = etree.Element(qname(ENSEMBLE, "report"))
    etree.SubElement(body, qname(TYPES, "returnOnlyIfErrorPresent")).text = "true" if error_only else "false"
    if all_at:
        etree.SubElement(body, qname(TYPES, "returnOnlyIfAllAtState")).text = all_at
    return list(client.call(ensemble, ENSEMBLE_ACTION + "reportRequest", body))


def status_call(client: Gt4Client, operation: str, request: str) -> etree._Element:
    status = EndpointReference(client.base_url + "WorkspaceStatusService")
    return client.call(status, STATUS_ACTION + operation + "Request", etree.Element(qname(STATUS, request)))
