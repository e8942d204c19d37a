"""A zeep session with a vws (or GT4) workspace service.

zeep loads the WSDL each service publishes at ``?wsdl``; a plugin adds the
WS-Addressing 2004/03 headers GT4 containers expect (zeep's own WSA plugin speaks
the 2005/08 namespace) and echoes the EPR's reference properties (the resource key).
"""

from dataclasses import dataclass
from pathlib import Path

import zeep
import zeep.exceptions
from lxml import etree
from zeep.plugins import Plugin

from clients.wsse import GsiSecureMessage
from vws.wsrf.addressing import EndpointReference, request_headers
from vws.xmlns import METADATA, NEGOTIABLE, SOAP_ENV, WSA, qname
from vws.xmlparse import parse

FACTORY = "WorkspaceFactoryService"
WORKSPACE = "WorkspaceService"


class Addressing200403(Plugin):
    """Adds To, Action, MessageID and the target's reference properties to each request."""

    def __init__(self, target: EndpointReference) -> None:
        self.target = target

    def egress(self, envelope, http_headers, operation, binding_options):  # type: ignore[no-untyped-def]
        header = envelope.find(qname(SOAP_ENV, "Header"))
        if header is None:
            header = etree.Element(qname(SOAP_ENV, "Header"))
            envelope.insert(0, header)
        action = (operation.soapaction or "").strip('"')
        for element in request_headers(self.target.address, action, self.target.properties):
            header.append(element)
        return envelope, http_headers


@dataclass
class Port:
    """One service endpoint (a factory or a WS-Resource) reached through zeep."""

    client: zeep.Client
    service: zeep.proxy.ServiceProxy

    def call(self, operation: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        return getattr(self.service, operation)(*args, **kwargs)

    def element(self, name: str):  # type: ignore[no-untyped-def]
        return self.client.get_element(name)


def services_url(service_url: str) -> str:
    """Where a service's siblings are: its URL (a factory URL, or an EPR's address) without the service name."""
    base, slash, name = service_url.rpartition("/")
    if not slash or not (name.startswith("Workspace") or name == "NimbusContextBroker"):
        raise ValueError(f"{service_url} is not a workspace service URL (one ending with /{FACTORY})")
    return base + slash


class Session:
    def __init__(
        self,
        service_url: str,
        transport: zeep.Transport | None = None,
        plugins: list | None = None,
        wsse: GsiSecureMessage | None = None,
    ) -> None:
        """``service_url`` names any of the services (all are found beside it).

        ``wsse`` signs every request and verifies every reply (GSI Secure Message); None sends anonymously.
        """
        self.base_url = services_url(service_url)
        self._transport = transport or zeep.Transport()
        self._plugins = plugins or []
        self._wsse = wsse
        self._wsdl: dict[str, zeep.Client] = {}

    def port(self, target: EndpointReference) -> Port:
        """A zeep proxy bound to ``target``'s address that sends its reference properties."""
        name = target.address.rstrip("/").rsplit("/", 1)[-1]
        client = self._client(name, target)
        binding = next(iter(client.wsdl.bindings))
        return Port(client, client.create_service(binding, target.address))

    def raw(self, target: EndpointReference, action: str, body: etree._Element) -> etree._Element:
        """POST a hand-built body to ``target`` (for messages zeep cannot express); a fault raises."""
        envelope = etree.Element(qname(SOAP_ENV, "Envelope"), nsmap={"soapenv": SOAP_ENV})
        etree.SubElement(envelope, qname(SOAP_ENV, "Header")).extend(
            request_headers(target.address, action, target.properties)
        )
        etree.SubElement(envelope, qname(SOAP_ENV, "Body")).append(body)
        if self._wsse is not None:
            self._wsse.apply(envelope, {})
        reply = self._transport.session.post(
            target.address,
            data=etree.tostring(envelope),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'},
            timeout=self._transport.operation_timeout,
        )
        document = parse(reply.content)
        if self._wsse is not None:
            self._wsse.verify(document)
        payload = document.find(qname(SOAP_ENV, "Body"))[0]
        if payload.tag == qname(SOAP_ENV, "Fault"):
            message = payload.findtext("faultstring") or "fault without a faultstring"
            raise zeep.exceptions.Fault(message, detail=payload.find("detail"))
        return payload

    @staticmethod
    def fault_name(error: Exception) -> str | None:
        """The local name of the fault element in a SOAP fault's detail (zeep's or ``raw``'s)."""
        if not isinstance(error, zeep.exceptions.Fault) or error.detail is None or not len(error.detail):
            return None
        return etree.QName(error.detail[0]).localname

    @property
    def factory_epr(self) -> EndpointReference:
        return EndpointReference(self.base_url + FACTORY)

    def factory(self) -> Port:
        return self.port(self.factory_epr)

    def _client(self, name: str, target: EndpointReference) -> zeep.Client:
        # One WSDL load per service; the addressing plugin is per target.
        cached = self._wsdl.get(name)
        wsdl = cached.wsdl if cached else self.base_url + name + "?wsdl"
        client = zeep.Client(
            wsdl, transport=self._transport, wsse=self._wsse, plugins=[Addressing200403(target), *self._plugins]
        )
        self._wsdl.setdefault(name, client)
        return client


def load_document(path: Path, port: Port, name: str):  # type: ignore[no-untyped-def]
    """Parse a VirtualWorkspace or WorkspaceDeployment file into zeep's value for it (ValueError if it is not one)."""
    try:
        root = etree.parse(str(path)).getroot()
        return port.element(name).parse(root, port.client.wsdl.types)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except (etree.XMLSyntaxError, zeep.exceptions.XMLParseError, zeep.exceptions.ValidationError) as exc:
        raise ValueError(f"{path} is not a valid {etree.QName(name).localname} document: {exc}") from None


METADATA_ELEMENT = qname(METADATA, "VirtualWorkspace")
REQUEST_ELEMENT = qname(NEGOTIABLE, "WorkspaceDeployment")
EPR_ELEMENT = qname(WSA, "EndpointReference")
