"""Wire helpers for the context broker tests: contexts, members that join them, agents' reports.

SOAP bodies as the 2008/12 clients send them (tests.gt4wire), and the agents' plain HTTP
door (vws.soap.ctxagent) through urllib, as a guest's curl would use it.
"""

import urllib.error
import urllib.request
from dataclasses import dataclass

from lxml import etree

from tests import resources
from tests.gt4wire import Gt4Client
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import CTX, CTX_DESCRIPTION, CTX_TYPES, LOGISTICS, TYPES, WSRL, WSRL_ACTION, qname

CTX_ACTION = CTX + "/NimbusContextBrokerPortType/"
STATUS = qname(CTX_TYPES, "contextualizationContext")


@dataclass(frozen=True)
class Created:
    epr: EndpointReference
    broker_url: str
    key: str
    secret: str


def broker(client: Gt4Client) -> EndpointReference:
    return EndpointReference(client.base_url + "NimbusContextBroker")


def create_context(client: Gt4Client, expect_injections: bool = False) -> Created:
    body = etree.Element(qname(CTX, "createContext"))
    etree.SubElement(body, qname(CTX_TYPES, "expectInjections")).text = "true" if expect_injections else "false"
    reply = client.call(broker(client), CTX_ACTION + "createRequest", body)
    contact = reply.find(qname(CTX_TYPES, "contact"))
    return Created(
        EndpointReference.from_element(reply.find(qname(CTX_TYPES, "contextEPR"))),
        *(contact.findtext(qname(CTX_DESCRIPTION, name)) for name in ("brokerURL", "contextID", "secret")),
    )


def member_request(context: EndpointReference | None, node_number: int = 1, **member: object) -> etree._Element:
    """The sample create body joining ``context`` (see ``contextualize`` for ``member``)."""
    return contextualize(resources.create_request(node_number=node_number), context, **member)  # type: ignore[arg-type]


def contextualize(
    body: etree._Element,
    context: EndpointReference | None,
    provides: tuple[str, ...] = (),
    requires_roles: tuple[str, ...] = (),
    requires_data: tuple[str, ...] = (),
    all_identities: bool = True,
    lock: bool = False,
) -> etree._Element:
    """A create ``body`` given a logistics/contextualization and the ``context`` to join."""
    logistics = body.find(f"{qname(TYPES, 'metadata')}/{qname(LOGISTICS, 'logistics')}")
    ctx = etree.SubElement(logistics, qname(LOGISTICS, "contextualization"))
    offered = etree.SubElement(ctx, qname(LOGISTICS, "provides"))
    etree.SubElement(offered, qname(LOGISTICS, "identity"))
    for role in provides:
        etree.SubElement(offered, qname(LOGISTICS, "role")).text = role
    required = etree.SubElement(ctx, qname(LOGISTICS, "requires"))
    if all_identities:
        etree.SubElement(required, qname(LOGISTICS, "identity"))
    for role in requires_roles:
        etree.SubElement(required, qname(LOGISTICS, "role"), name=role, hostname="true", pubkey="true")
    for name in requires_data:
        etree.SubElement(required, qname(LOGISTICS, "data"), name=name)
    if context is not None:
        body.append(context.to_element(qname(TYPES, "contextEPR")))
        etree.SubElement(body, qname(TYPES, "lockContext")).text = "true" if lock else "false"
    return body


def join(client: Gt4Client, context: EndpointReference, **member: object) -> etree._Element:
    return resources.create(client, member_request(context, **member))  # type: ignore[arg-type]


def call(client: Gt4Client, context: EndpointReference, operation: str, body: etree._Element) -> etree._Element:
    return client.call(context, CTX_ACTION + operation + "Request", body)


def inject(client: Gt4Client, context: EndpointReference, **data: str) -> etree._Element:
    body = etree.Element(qname(CTX, "injectData"))
    for name, value in data.items():
        etree.SubElement(body, qname(CTX_TYPES, "data"), {qname(CTX_TYPES, "name"): name}).text = value
    return call(client, context, "injectdata", body)


def no_more_injections(client: Gt4Client, context: EndpointReference) -> etree._Element:
    return call(client, context, "noMoreInjections", etree.Element(qname(CTX, "noMoreInjections")))


def status(client: Gt4Client, context: EndpointReference) -> dict[str, str]:
    """The contextualizationContext RP, child name -> text (matchedRole elements left out)."""
    (rp,) = client.get_property(context, STATUS)
    return {etree.QName(child).localname: child.text for child in rp if len(child) == 0}


def destroy(client: Gt4Client, context: EndpointReference) -> etree._Element:
    return client.call(context, WSRL_ACTION + "Destroy", etree.Element(qname(WSRL, "Destroy")))


def addresses(created: etree._Element) -> list[tuple[str, str]]:
    """(IP, hostname) of each workspace a create response lists."""
    return [
        (
            nic.findtext(f"{qname(LOGISTICS, 'ipConfig')}/{qname(LOGISTICS, 'ipAddress')}"),
            nic.findtext(f"{qname(LOGISTICS, 'ipConfig')}/{qname(LOGISTICS, 'hostname')}"),
        )
        for nic in created.iter(qname(LOGISTICS, "nic"))
    ]


def agent_post(context: Created, action: str, report: str, secret: str | None = None) -> tuple[int, str]:
    """What a member's agent POSTs to the broker's door: (HTTP status, answer text)."""
    request = urllib.request.Request(
        f"{context.broker_url}{context.key}/{action}",
        data=report.encode(),
        headers={"X-Vws-Context-Secret": context.secret if secret is None else secret, "Content-Type": "text/plain"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def identity_line(ip: str, hostname: str, key: str = "ssh-rsa AAAAB3Nza test@vws") -> str:
    return f"identity eth0 {ip} {hostname} {key}\n"


def state_of(answer: str) -> str:
    return next(line.split(" ", 1)[1] for line in answer.splitlines() if line.startswith("state "))
