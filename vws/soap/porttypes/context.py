"""The NimbusContextBroker port type (2008/12) and the create request's context parts.

``create`` (element createContext) makes a context owned by the caller and answers its EPR
(key: NimbusContextBrokerKey) and its contact, the brokerURL/contextID/secret an agent
uses. Workspaces join a context when a factory ``create`` carries its ``contextEPR``; the
metadata's ``logistics/contextualization`` says what they provide and require, and
``lockContext`` that no more will join. ``retrieve``, ``okExiting`` and ``errorExiting`` act
for the member whose leased address an identity names (agents themselves use the text
door in vws.soap.ctxagent); ``identities`` lists the members. Destroy (WS-ResourceLifetime)
is a vws addition: Nimbus's contexts only ended with their lifetime.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lxml import etree

from vws.context.bootstrap import drive_files
from vws.context.broker import ContextBroker, Credentials
from vws.context.model import Contextualization, Identity, Member, RequiredRole, complete, role_counts
from vws.errors import InvalidMetadata, MalformedMessage
from vws.soap import faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import (
    CONTEXT_KEY,
    CONTEXT_SERVICE,
    Endpoints,
    custom_operation,
    property_operations,
    resource_key,
    wsrf_operation,
)
from vws.workspace.caller import Caller
from vws.workspace.request import DeploymentRequest
from vws.wsrf import lifetime, properties
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import CTX, CTX_DESCRIPTION, CTX_TYPES, LOGISTICS, TYPES, WSRL, WSRL_ACTION, qname

_PORT = "NimbusContextBrokerPortType"
_NSMAP = {"ctx": CTX, "ctx-types": CTX_TYPES, "ctxdesc": CTX_DESCRIPTION}
# The 2008/12 schemas qualify their attributes (attributeFormDefault="qualified").
_NAME_ATTRIBUTE = qname(CTX_DESCRIPTION, "name")
# Role and data names become file names in the guest (the role scripts' directories).
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


class ContextPortType:
    service = CONTEXT_SERVICE

    def __init__(self, broker: ContextBroker, endpoints: Endpoints) -> None:
        self._broker = broker
        self._endpoints = endpoints

    def operations(self) -> Sequence[Operation]:
        table = faults.CONTEXT
        return [
            custom_operation(_PORT, "create", qname(CTX, "createContext"), self.create, table),
            custom_operation(_PORT, "noMoreInjections", qname(CTX, "noMoreInjections"), self.no_more, table),
            custom_operation(_PORT, "injectdata", qname(CTX, "injectData"), self.inject, table),
            custom_operation(_PORT, "retrieve", qname(CTX, "retrieve"), self.retrieve, table),
            custom_operation(_PORT, "errorExiting", qname(CTX, "errorExiting"), self.error_exiting, table),
            custom_operation(_PORT, "okExiting", qname(CTX, "okExiting"), self.ok_exiting, table),
            custom_operation(_PORT, "identities", qname(CTX, "identities"), self.identities, table),
            *property_operations(self._document),
            wsrf_operation(WSRL_ACTION, WSRL, "Destroy", self.destroy, faults.DESTROY),
        ]

    def create(self, call: Call) -> etree._Element:
        expect = _boolean(call.body.findtext(qname(CTX_TYPES, "expectInjections")), "expectInjections")
        credentials = self._broker.create(call.caller, expect)
        response = etree.Element(qname(CTX, "createContextResponse"), nsmap=_NSMAP)
        response.append(self._endpoints.context(credentials.key).to_element(qname(CTX_TYPES, "contextEPR")))
        contact = etree.SubElement(response, qname(CTX_TYPES, "contact"))
        for name, value in (
            ("brokerURL", self._endpoints.agent_url),
            ("contextID", credentials.key),
            ("secret", credentials.secret),
        ):
            etree.SubElement(contact, qname(CTX_DESCRIPTION, name)).text = value
        return response

    def no_more(self, call: Call) -> etree._Element:
        self._broker.no_more_injections(call.caller, resource_key(call, CONTEXT_KEY))
        return etree.Element(qname(CTX, "noMoreInjectionsResponse"))

    def inject(self, call: Call) -> etree._Element:
        data = [
            (_name(_attribute(item, CTX_TYPES), "data"), item.text or "")
            for item in call.body.iter(qname(CTX_TYPES, "data"))
        ]
        if not data:
            raise MalformedMessage("injectData carries no data")
        self._broker.inject(call.caller, resource_key(call, CONTEXT_KEY), data)
        return etree.Element(qname(CTX, "injectDataResponse"))

    def retrieve(self, call: Call) -> etree._Element:
        answer = self._broker.retrieve(call.caller, resource_key(call, CONTEXT_KEY), _identities(call.body))
        response = etree.Element(qname(CTX, "retrieveResponse"), nsmap=_NSMAP)
        for name, value in (
            ("noMoreInjections", answer.no_more_injections),
            ("complete", answer.complete),
            ("cancelled", answer.cancelled),
        ):
            etree.SubElement(response, qname(CTX_TYPES, name)).text = _xsd(value)
        requires = etree.SubElement(response, qname(CTX_TYPES, "requires"))
        for identity in answer.identities:
            given = etree.SubElement(requires, qname(CTX_DESCRIPTION, "identity"))
            for name in ("ip", "hostname", "pubkey"):
                if getattr(identity, name):
                    etree.SubElement(given, qname(CTX_DESCRIPTION, name)).text = getattr(identity, name)
        for role, ip in answer.roles:
            etree.SubElement(requires, qname(CTX_DESCRIPTION, "role"), {_NAME_ATTRIBUTE: role}).text = ip
        for name, value in answer.data:
            etree.SubElement(requires, qname(CTX_DESCRIPTION, "data"), {_NAME_ATTRIBUTE: name}).text = value
        return response

    def ok_exiting(self, call: Call) -> etree._Element:
        self._broker.exiting(call.caller, resource_key(call, CONTEXT_KEY), _identities(call.body))
        return etree.Element(qname(CTX, "okExitingResponse"))

    def error_exiting(self, call: Call) -> etree._Element:
        code = call.body.findtext(qname(CTX_TYPES, "errorcode")) or ""
        try:
            error = (int(code), call.body.findtext(qname(CTX_TYPES, "message")) or "")
        except ValueError:
            raise MalformedMessage(f"errorcode {code!r} is not a number") from None
        self._broker.exiting(call.caller, resource_key(call, CONTEXT_KEY), _identities(call.body), error)
        return etree.Element(qname(CTX, "errorExitingResponse"))

    def identities(self, call: Call) -> etree._Element:
        context = self._broker.context(call.caller, resource_key(call, CONTEXT_KEY))
        ips = {(text or "").strip() for text in call.body.xpath("t:ip/text()", namespaces={"t": CTX_TYPES})}
        hosts = {(text or "").strip() for text in call.body.xpath("t:host/text()", namespaces={"t": CTX_TYPES})}
        every = any(_boolean(t, "all") for t in call.body.xpath("t:all/text()", namespaces={"t": CTX_TYPES}))
        response = etree.Element(qname(CTX, "identitiesResponse"), nsmap=_NSMAP)
        for member in context.members:
            if every or _matches(member, ips, hosts):
                response.append(_node(member))
        return response

    def destroy(self, call: Call) -> etree._Element:
        self._broker.destroy(call.caller, resource_key(call, CONTEXT_KEY))
        return lifetime.destroy_response()

    def _document(self, call: Call) -> properties.PropertyDocument:
        key = resource_key(call, CONTEXT_KEY)
        self._broker.context(call.caller, key)  # unknown to this caller: the fault, before any property
        tag = qname(CTX_TYPES, "contextualizationContext")
        return properties.PropertyDocument(
            qname(CTX, "ContextBrokerRPSet"),
            {tag: lambda: [self._status(call.caller, key)]},
            _NSMAP,
        )

    def _status(self, caller: Caller, key: str) -> etree._Element:
        context = self._broker.context(caller, key)
        members = context.members
        status = etree.Element(qname(CTX_TYPES, "contextualizationContext"), nsmap=_NSMAP)
        for name, value in (
            ("noMoreInjections", _xsd(not context.expect_injections)),
            ("complete", _xsd(complete(context))),
            ("totalNodes", str(len(members))),
            ("numNodesRegistered", str(sum(1 for member in members if member.reported))),
            ("allOK", _xsd(bool(members) and all(member.exited == "ok" for member in members))),
            ("errorPresent", _xsd(any(member.exited == "error" for member in members))),
        ):
            etree.SubElement(status, qname(CTX_TYPES, name)).text = value
        for count in role_counts(context):
            matched = etree.SubElement(status, qname(CTX_TYPES, "matchedRole"))
            etree.SubElement(matched, qname(CTX_TYPES, "name")).text = count.name
            etree.SubElement(matched, qname(CTX_TYPES, "numFilledProviders")).text = str(count.filled)
            etree.SubElement(matched, qname(CTX_TYPES, "numProvidersInContext")).text = str(count.providers)
        return status


# ---- joining from a factory create --------------------------------------------------------


@dataclass(frozen=True)
class Joining:
    """What a create request says about a context: which, what the members are, and whether it locks."""

    key: str
    spec: Contextualization
    lock: bool


def joining(create: etree._Element) -> Joining | None:
    """contextEPR / lockContext of a create body with the metadata's contextualization; None without one."""
    reference = create.find(qname(TYPES, "contextEPR"))
    if reference is None:
        return None
    try:
        key = EndpointReference.from_element(reference).key(CONTEXT_KEY)
    except ValueError as exc:
        raise MalformedMessage(f"bad contextEPR: {exc}") from None
    if not key:
        raise MalformedMessage("the contextEPR carries no NimbusContextBrokerKey")
    lock = _boolean(create.findtext(qname(TYPES, "lockContext")), "lockContext")
    found = create.find(
        f"{qname(TYPES, 'metadata')}/{qname(LOGISTICS, 'logistics')}/{qname(LOGISTICS, 'contextualization')}"
    )
    return Joining(key, _contextualization(found), lock)


def with_bootstrap(request: DeploymentRequest, credentials: Credentials, agent_url: str) -> DeploymentRequest:
    """The request with the context's bootstrap and agent for its config drive."""
    if not request.machine.nics:
        raise InvalidMetadata("a context member needs a NIC: its agent is recognised by its address")
    return replace(request, machine=replace(request.machine, context=drive_files(credentials, agent_url)))


def _contextualization(element: etree._Element | None) -> Contextualization:
    if element is None:
        return Contextualization()

    def under(path: str, local: str) -> list[etree._Element]:
        holder = element.find(qname(LOGISTICS, path))
        return [] if holder is None else holder.findall(qname(LOGISTICS, local))

    data = [(_name(item.get("name"), "data"), (item.text or "").strip()) for item in under("requires", "data")]
    return Contextualization(
        provides=tuple(_name((role.text or "").strip(), "role") for role in under("provides", "role")),
        requires_identities=bool(under("requires", "identity")),
        requires_roles=tuple(
            RequiredRole(
                _name(role.get("name"), "role"),
                _boolean(role.get("hostname"), "hostname"),
                _boolean(role.get("pubkey"), "pubkey"),
            )
            for role in under("requires", "role")
        ),
        requires_data=tuple(name for name, _ in data),
        data=tuple((name, value) for name, value in data if value),
    )


# ---- small translations -----------------------------------------------------------------


def _identities(body: etree._Element) -> list[Identity]:
    found = [
        Identity(
            *(identity.findtext(qname(CTX_DESCRIPTION, name)) for name in ("interface", "ip", "hostname", "pubkey"))
        )
        for identity in body.findall(qname(CTX_TYPES, "identity")) + body.findall(qname(CTX_DESCRIPTION, "identity"))
    ]
    if not found:
        raise MalformedMessage("the request names no identity")
    return found


def _node(member: Member) -> etree._Element:
    node = etree.Element(qname(CTX_TYPES, "node"))
    etree.SubElement(node, qname(CTX_TYPES, "exited")).text = _xsd(member.exited is not None)
    etree.SubElement(node, qname(CTX_TYPES, "ok")).text = _xsd(member.exited == "ok")
    if member.error_code is not None:
        etree.SubElement(node, qname(CTX_TYPES, "errorCode")).text = str(member.error_code)
    if member.error_message is not None:
        etree.SubElement(node, qname(CTX_TYPES, "errorMessage")).text = member.error_message
    for identity in member.known_identities:
        given = etree.SubElement(node, qname(CTX_TYPES, "identity"))
        for name in ("interface", "ip", "hostname", "pubkey"):
            if getattr(identity, name):
                etree.SubElement(given, qname(CTX_DESCRIPTION, name)).text = getattr(identity, name)
    return node


def _matches(member: Member, ips: set[str], hosts: set[str]) -> bool:
    return any(i.ip in ips or i.hostname in hosts for i in member.known_identities)


def _attribute(element: etree._Element, namespace: str) -> str | None:
    """The ``name`` attribute, qualified as the schema says, or unqualified as lenient readers send it."""
    return element.get(qname(namespace, "name"), element.get("name"))


def _name(text: str | None, what: str) -> str:
    if not text or not _NAME.fullmatch(text):
        raise InvalidMetadata(f"{what} name {text!r}: letters, digits, '.', '_' and '-' only (it names a file)")
    return text


def _boolean(text: str | None, what: str) -> bool:
    value = (text or "false").strip()
    if value not in ("true", "1", "false", "0"):
        raise MalformedMessage(f"{what} must be an xsd:boolean, not {value!r}")
    return value in ("true", "1")


def _xsd(value: bool) -> str:
    return "true" if value else "false"
