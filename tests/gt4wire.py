"""Hand-built GT4-style SOAP messages over a keep-alive HTTP connection.

What a legacy GT4 client puts on the wire: a SOAP 1.1 envelope with WS-Addressing
2004/03 To, Action and MessageID headers, plus the resource key echoed from the
EPR's ReferenceProperties. Used by the end-to-end tests and the benchmarks.
"""

import http.client
import select
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from vws.wsrf.addressing import EndpointReference, request_headers
from vws.xmlns import (
    ENSEMBLE,
    NEGOTIABLE,
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
from vws.xmlparse import detached

SAMPLES = Path(__file__).resolve().parents[1] / "etc" / "samples"
FACTORY_ACTION = WORKSPACE + "/WorkspaceFactoryPortType/"
WORKSPACE_ACTION = WORKSPACE + "/WorkspacePortType/"
ENSEMBLE_ACTION = ENSEMBLE + "/WorkspaceEnsemblePortType/"
# Called with every reply a Gt4Client receives (conftest adds the suite-wide checks).
REPLY_CHECKS: list[Callable[[etree._Element], None]] = []
# Operations whose workspaces are brought up in the background.
DEPLOYING_ACTIONS = frozenset({FACTORY_ACTION + "createRequest", ENSEMBLE_ACTION + "doneRequest"})


def envelope_element(to: str, action: str, body: etree._Element, key: tuple[etree._Element, ...] = ()):
    root = etree.Element(qname(SOAP_ENV, "Envelope"), nsmap={"soapenv": SOAP_ENV})
    etree.SubElement(root, qname(SOAP_ENV, "Header")).extend(request_headers(to, action, key))
    etree.SubElement(root, qname(SOAP_ENV, "Body")).append(body)
    return root


def envelope(to: str, action: str, body: etree._Element, key: tuple[etree._Element, ...] = ()) -> bytes:
    return etree.tostring(envelope_element(to, action, body, key))


class Gt4Client:
    """A minimal GT4 client: one keep-alive connection, raw envelopes in and out."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        sign: Callable[[etree._Element], object] | None = None,
        settle: Callable[[], None] | None = None,
        timeout: float = 30,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``sign``, when given, signs each envelope in place (GSI Secure Message).

        ``settle``, when given, is called after a create or an ensemble's done, whose
        workspaces come up in the background: a test then sees them in their initial
        state (the reply itself still shows what was true when it was sent).
        ``tls``, when given, is the client's side of GSI Transport (an https ``base_url``).
        """
        self.base_url = base_url
        self._sign = sign
        self._settle = settle
        self.last_reply: etree._Element | None = None
        self._headers = {"Content-Type": "text/xml; charset=utf-8", **(headers or {})}
        parts = urlsplit(base_url)
        if tls is None:
            self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        else:
            self._connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=tls)

    def post(self, url: str, data: bytes, action: str = "") -> tuple[int, etree._Element]:
        """One exchange; a reset or a dropped connection reaches the caller (nothing is sent twice)."""
        self._reopen_if_closed_while_idle()
        self._connection.request("POST", urlsplit(url).path, data, {**self._headers, "SOAPAction": f'"{action}"'})
        response = self._connection.getresponse()
        reply = etree.fromstring(response.read())
        for check in REPLY_CHECKS:
            check(reply)
        return response.status, reply

    def _reopen_if_closed_while_idle(self) -> None:
        # The server closes a keep-alive connection left idle past its deadline (a long boot or
        # settle). An idle connection has nothing to read unless the server closed it: then the
        # next request, of which no byte was sent, goes on a new connection.
        sock = self._connection.sock
        if sock is not None and select.select([sock], [], [], 0)[0]:
            self._connection.close()

    def call(self, epr: EndpointReference, action: str, body: etree._Element) -> etree._Element:
        """POST and return the response body's payload; raise SoapFault on a fault."""
        message = envelope_element(epr.address, action, body, epr.properties)
        if self._sign is not None:
            self._sign(message)
        status, reply = self.post(epr.address, etree.tostring(message), action)
        self.last_reply = reply
        payload = reply.find(qname(SOAP_ENV, "Body"))[0]
        if payload.tag == qname(SOAP_ENV, "Fault"):
            raise SoapFault(status, payload)
        if self._settle is not None and action in DEPLOYING_ACTIONS:
            self._settle()
        return payload

    def factory(self) -> EndpointReference:
        return EndpointReference(self.base_url + "WorkspaceFactoryService")

    def create(self, metadata: Path = SAMPLES / "workspace.xml", request: Path = SAMPLES / "deployment-request.xml"):
        body = create_body(etree.parse(str(metadata)).getroot(), etree.parse(str(request)).getroot())
        return self.call(self.factory(), FACTORY_ACTION + "createRequest", body)

    def get_property(self, epr: EndpointReference, name: str) -> etree._Element:
        body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "t": etree.QName(name).namespace})
        body.text = "t:" + etree.QName(name).localname
        return self.call(epr, WSRP_ACTION + "GetResourceProperty", body)

    def query(self, epr: EndpointReference, expression: str, namespaces: dict[str, str] | None = None):
        """QueryResourceProperties with an XPath ``expression`` (prefixes bound as ``namespaces``)."""
        body = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP, **(namespaces or {})})
        etree.SubElement(body, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT).text = expression
        return self.call(epr, WSRP_ACTION + "QueryResourceProperties", body)

    def state(self, epr: EndpointReference) -> str:
        return self.get_property(epr, qname(TYPES, "currentState")).findtext(
            f"{{{TYPES}}}currentState/{{{TYPES}}}state"
        )

    def start(self, epr: EndpointReference) -> etree._Element:
        return self.call(epr, WORKSPACE_ACTION + "startRequest", etree.Element(qname(WORKSPACE, "startWorkspace")))

    def shutdown(self, epr: EndpointReference, kind: str = "Normal", save_target: str | None = None):
        """``save_target``: a PostShutdown rootPartitionUnpropagationTarget (the client's --save-target)."""
        return self.call(epr, WORKSPACE_ACTION + "shutdownRequest", shutdown_body(WORKSPACE, kind, save_target))

    def destroy(self, epr: EndpointReference) -> etree._Element:
        return self.call(epr, WSRL_ACTION + "Destroy", etree.Element(qname(WSRL, "Destroy")))

    def close(self) -> None:
        self._connection.close()


def shutdown_body(namespace: str, kind: str, save_target: str | None = None) -> etree._Element:
    """shutdownWorkspace (``namespace`` WORKSPACE) or shutdownWorkspaces (GROUP) of one shutdownType."""
    body = etree.Element(qname(namespace, "shutdownWorkspace" if namespace == WORKSPACE else "shutdownWorkspaces"))
    etree.SubElement(body, qname(TYPES, "shutdownType")).text = kind
    if save_target is not None:
        post = etree.SubElement(body, qname(NEGOTIABLE, "PostShutdown"))
        etree.SubElement(post, qname(NEGOTIABLE, "rootPartitionUnpropagationTarget")).text = save_target
    return body


def create_body(metadata: etree._Element, request: etree._Element) -> etree._Element:
    """A factory ``create`` body holding the two documents' contents, as GT4 clients nest them."""
    body = etree.Element(qname(WORKSPACE, "create"), nsmap={"types": TYPES})
    for tag, document in (("metadata", metadata), ("resourceRequest", request)):
        holder = etree.SubElement(body, qname(TYPES, tag))
        holder.extend(detached(child) for child in document if isinstance(child.tag, str))
    return body


def created_eprs(response: etree._Element) -> list[EndpointReference]:
    return [
        EndpointReference.from_element(created.find(qname(TYPES, "epr")))
        for created in response.iterchildren(qname(TYPES, "CreatedWorkspace"))
    ]


class SoapFault(Exception):
    def __init__(self, status: int, fault: etree._Element) -> None:
        self.status = status
        self.code = fault.findtext("faultcode")
        self.description = fault.findtext("faultstring")
        detail = fault.find("detail")
        self.detail = detail[0] if detail is not None and len(detail) else None
        super().__init__(f"{self.code}: {self.description}")

    @property
    def element(self) -> str | None:
        return None if self.detail is None else self.detail.tag
