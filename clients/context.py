"""vws-client's context broker actions: contexts, their members' outcomes, and whole clusters.

``cluster --file cluster.xml`` takes the cloud client's cluster document (``<cluster>`` of
``<workspace>``s, each with ``name``, ``image``, ``quantity``, ``nic`` and ``ctx``: what it
provides and requires), creates a context, deploys each group of members into it (the
last one locks it), waits for them to run, then for the context to complete, and prints
each member's outcome. Exit status as vws-client's, 3 when a member failed.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from clients import monitor
from clients.errors import ClientError
from clients.session import Session
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import (
    CTX,
    CTX_DESCRIPTION,
    CTX_TYPES,
    DEFINITION,
    JSDL,
    LOGISTICS,
    METADATA,
    NEGOTIABLE,
    TYPES,
    WORKSPACE,
    WSRP,
    WSRP_ACTION,
    qname,
)

BROKER = "NimbusContextBroker"
_ACTION = CTX + "/NimbusContextBrokerPortType/"
_FACTORY_ACTION = WORKSPACE + "/WorkspaceFactoryPortType/createRequest"
_STATUS = qname(CTX_TYPES, "contextualizationContext")


@dataclass(frozen=True)
class Outcome:
    """One member as ``identities`` lists it."""

    address: str
    hostname: str | None
    exited: bool
    ok: bool
    error: str | None

    def __str__(self) -> str:
        where = f"{self.address} ({self.hostname})" if self.hostname else self.address
        if not self.exited:
            return f"member {where}: contextualizing"
        return f"member {where}: " + ("ok" if self.ok else f"error: {self.error}")


# ---- the broker's operations -------------------------------------------------------------


def create_context(session: Session, expect_injections: bool) -> tuple[EndpointReference, str]:
    """A new context: its EPR and the context id."""
    body = etree.Element(qname(CTX, "createContext"))
    etree.SubElement(body, qname(CTX_TYPES, "expectInjections")).text = "true" if expect_injections else "false"
    reply = session.raw(EndpointReference(session.base_url + BROKER), _ACTION + "createRequest", body)
    epr = EndpointReference.from_element(reply.find(qname(CTX_TYPES, "contextEPR")))
    return epr, reply.findtext(f"{qname(CTX_TYPES, 'contact')}/{qname(CTX_DESCRIPTION, 'contextID')}") or ""


def status(session: Session, context: EndpointReference) -> dict[str, str]:
    """The contextualizationContext property, each simple child by name."""
    body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"ctx-types": CTX_TYPES})
    body.text = "ctx-types:contextualizationContext"
    (rp,) = session.raw(context, WSRP_ACTION + "GetResourceProperty", body)
    return {etree.QName(child).localname: child.text or "" for child in rp if not len(child)}


def outcomes(session: Session, context: EndpointReference) -> list[Outcome]:
    body = etree.Element(qname(CTX, "identities"))
    etree.SubElement(body, qname(CTX_TYPES, "all")).text = "true"
    found = []
    for node in session.raw(context, _ACTION + "identitiesRequest", body):
        identity = node.find(qname(CTX_TYPES, "identity"))
        found.append(
            Outcome(
                identity.findtext(qname(CTX_DESCRIPTION, "ip")) or "?",
                identity.findtext(qname(CTX_DESCRIPTION, "hostname")),
                node.findtext(qname(CTX_TYPES, "exited")) == "true",
                node.findtext(qname(CTX_TYPES, "ok")) == "true",
                node.findtext(qname(CTX_TYPES, "errorMessage")),
            )
        )
    return found


def inject(session: Session, context: EndpointReference, data: list[tuple[str, str]]) -> None:
    body = etree.Element(qname(CTX, "injectData"))
    for name, value in data:
        etree.SubElement(body, qname(CTX_TYPES, "data"), {qname(CTX_TYPES, "name"): name}).text = value
    session.raw(context, _ACTION + "injectdataRequest", body)


def no_more_injections(session: Session, context: EndpointReference) -> None:
    session.raw(context, _ACTION + "noMoreInjectionsRequest", etree.Element(qname(CTX, "noMoreInjections")))


def wait_until_settled(session: Session, context: EndpointReference, args: argparse.Namespace) -> int:
    """Poll until every member has exited (or one failed); print each one's outcome."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while True:
        rp = status(session, context)
        members = outcomes(session, context)
        failed = rp.get("errorPresent") == "true"
        if failed or (members and all(member.exited for member in members)):
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the context was not contextualized within {args.timeout} s")
        time.sleep(args.poll_delay / 1000)
    for member in members:
        print(member)
    return monitor.EXIT_STATE if failed or not all(member.ok for member in members) else 0


# ---- the command-line actions -----------------------------------------------------------


def context_create(session: Session, args: argparse.Namespace) -> int:
    epr, key = create_context(session, args.expect_injections)
    args.file.write_bytes(etree.tostring(epr.to_element(), pretty_print=True))
    print(f"context {key} created: EPR written to {args.file}")
    return 0


def context_status(session: Session, args: argparse.Namespace) -> int:
    context = _read(args.eprFile)
    if args.wait:
        return wait_until_settled(session, context, args)
    rp = status(session, context)
    print(
        f"complete: {rp['complete']}  members: {rp['totalNodes']} ({rp['numNodesRegistered']} reported)  "
        f"all ok: {rp['allOK']}  error: {rp['errorPresent']}"
    )
    for member in outcomes(session, context):
        print(f"  {member}")
    return 0


def context_inject(session: Session, args: argparse.Namespace) -> int:
    data = [_pair(text) for text in args.data] + [
        (name, Path(path).read_text()) for name, path in map(_pair, args.file)
    ]
    if not data:
        raise ClientError("nothing to inject: give --data NAME=VALUE or --file NAME=PATH")
    inject(session, _read(args.eprFile), data)
    if args.last:
        no_more_injections(session, _read(args.eprFile))
    print(f"injected {', '.join(name for name, _ in data)}" + ("; no more injections" if args.last else ""))
    return 0


def context_no_more(session: Session, args: argparse.Namespace) -> int:
    no_more_injections(session, _read(args.eprFile))
    print("no more injections")
    return 0


def cluster(session: Session, args: argparse.Namespace) -> int:
    groups = read_cluster(args.file)
    context, key = create_context(session, expect_injections=False)
    if args.context_file:
        args.context_file.write_bytes(etree.tostring(context.to_element(), pretty_print=True))
    print(f"context {key} created")
    created: list[EndpointReference] = []
    for number, group in enumerate(groups, 1):
        body = create_body(group, context, lock=number == len(groups), args=args)
        reply = session.raw(session.factory_epr, _FACTORY_ACTION, body)
        eprs = [
            EndpointReference.from_element(made.find(qname(TYPES, "epr")))
            for made in reply.iterchildren(qname(TYPES, "CreatedWorkspace"))
        ]
        print(f"{group.name}: {len(eprs)} workspace(s) created")
        created += eprs
    if args.eprs:
        for epr in created:
            path = args.eprs.with_name(f"{args.eprs.name}-{epr.key(monitor.WORKSPACE_KEY).zfill(3)}.epr")
            path.write_bytes(etree.tostring(epr.to_element(), pretty_print=True))
    outcome = monitor.wait_for(created, "Running", session, args, session.base_url)
    if outcome != 0:
        return outcome
    return wait_until_settled(session, context, args)


# ---- the cluster document ----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    name: str
    image: str
    quantity: int
    nics: list[str]  # network pools, one NIC each
    ctx: etree._Element  # provides/requires, unqualified as the cloud client writes them


def read_cluster(path: Path) -> list[Group]:
    try:
        root = etree.parse(str(path)).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise ClientError(f"cannot read the cluster document {path}: {exc}") from None
    groups = [_group(workspace, path) for workspace in root.iter("workspace")]
    if etree.QName(root).localname != "cluster" or not groups:
        raise ClientError(f"{path} is no cluster document: a <cluster> of <workspace> elements")
    return groups


def _group(workspace: etree._Element, path: Path) -> Group:
    image, quantity = workspace.findtext("image"), workspace.findtext("quantity") or "1"
    if not image or not quantity.strip().isdigit() or workspace.find("ctx") is None:
        raise ClientError(f"{path}: each workspace needs an image, a quantity and a ctx")
    nics = [(nic.text or "").strip() for nic in workspace.findall("nic")] or ["public"]
    name = workspace.findtext("name") or image
    return Group(name, image, int(quantity), nics, workspace.find("ctx"))


def create_body(group: Group, context: EndpointReference, lock: bool, args: argparse.Namespace) -> etree._Element:
    """A factory create for one group: the image, its NICs, its contextualization, the context."""
    body = etree.Element(qname(WORKSPACE, "create"), nsmap={"types": TYPES, "log": LOGISTICS})
    metadata = etree.SubElement(body, qname(TYPES, "metadata"))
    _sub(metadata, METADATA, "name", f"http://vws.invalid/cluster/{group.name}")
    logistics = _sub(metadata, LOGISTICS, "logistics")
    networking = _sub(logistics, LOGISTICS, "networking")
    for number, pool in enumerate(group.nics):
        nic = _sub(networking, LOGISTICS, "nic")
        _sub(nic, LOGISTICS, "name", f"eth{number}")
        _sub(_sub(nic, LOGISTICS, "ipConfig"), LOGISTICS, "acquisitionMethod", "AllocateAndConfigure")
        _sub(nic, LOGISTICS, "association", pool)
    logistics.append(_in_logistics(group.ctx, "contextualization"))
    definition = _sub(metadata, DEFINITION, "definition")
    requirements = _sub(definition, DEFINITION, "requirements")
    _sub(_sub(requirements, JSDL, "CPUArchitecture"), JSDL, "CPUArchitectureName", "x86_64")
    root = _sub(_sub(definition, DEFINITION, "diskCollection"), DEFINITION, "rootVBD")
    location = group.image if "://" in group.image else f"file://{group.image}"
    for name, value in (("location", location), ("mountAs", "sda1"), ("permissions", "ReadWrite")):
        _sub(root, DEFINITION, name, value)
    request = etree.SubElement(body, qname(TYPES, "resourceRequest"))
    _sub(_sub(request, NEGOTIABLE, "DeploymentTime"), NEGOTIABLE, "minDuration", f"PT{args.deploy_duration}M")
    _sub(request, NEGOTIABLE, "InitialState", "Running")
    allocation = _sub(request, NEGOTIABLE, "ResourceAllocation")
    _sub(_sub(allocation, JSDL, "IndividualPhysicalMemory"), JSDL, "Exact", str(args.deploy_mem))
    _sub(request, NEGOTIABLE, "NodeNumber", str(group.quantity))
    body.append(context.to_element(qname(TYPES, "contextEPR")))
    _sub(body, TYPES, "lockContext", "true" if lock else "false")
    return body


def _in_logistics(element: etree._Element, name: str) -> etree._Element:
    """The cloud client's unqualified ctx, as the metadata's logistics elements."""
    copy = etree.Element(qname(LOGISTICS, name), dict(element.attrib))
    copy.text = element.text
    for child in element:
        if isinstance(child.tag, str):
            copy.append(_in_logistics(child, etree.QName(child).localname))
    return copy


def _sub(parent: etree._Element, namespace: str, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, qname(namespace, name))
    element.text = text
    return element


def _pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise ClientError(f"{text!r} is not NAME=VALUE")
    return name, value


def _read(path: Path) -> EndpointReference:
    try:
        return EndpointReference.from_element(etree.parse(str(path)).getroot())
    except (OSError, etree.XMLSyntaxError, ValueError) as exc:
        raise ClientError(f"cannot read an EPR from {path}: {exc}") from None


def add_actions(actions: argparse._SubParsersAction) -> None:
    """context-create, -status, -inject, -no-more-injections and cluster, for vws-client's parser."""
    create = actions.add_parser("context-create", help="create a context at the broker for a cluster's members")
    create.add_argument("--expect-injections", action="store_true", help="data will be injected (context-inject)")
    create.add_argument("--file", type=Path, required=True, help="write the context's EPR here")
    create.set_defaults(run=context_create)

    show = actions.add_parser("context-status", help="the context's state and each member's outcome")
    show.add_argument("-e", "--eprFile", type=Path, required=True, help="the context's EPR")
    show.add_argument("--wait", action="store_true", help="until every member exited (exit 3 if one failed)")
    _waiting(show)
    show.set_defaults(run=context_status)

    data = actions.add_parser("context-inject", help="give the members data they require")
    data.add_argument("-e", "--eprFile", type=Path, required=True, help="the context's EPR")
    data.add_argument("--data", action="append", default=[], metavar="NAME=VALUE")
    data.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="a datum from a file")
    data.add_argument("--last", action="store_true", help="no more injections after these")
    data.set_defaults(run=context_inject)

    done = actions.add_parser("context-no-more-injections", help="the context takes no more data")
    done.add_argument("-e", "--eprFile", type=Path, required=True, help="the context's EPR")
    done.set_defaults(run=context_no_more)

    whole = actions.add_parser("cluster", help="deploy a cluster document's members into a new context")
    whole.add_argument("--file", type=Path, required=True, help="the cluster document")
    whole.add_argument("--context-file", type=Path, help="write the context's EPR here")
    whole.add_argument("--eprs", type=Path, metavar="PREFIX", help="write each member's EPR to PREFIX-<key>.epr")
    whole.add_argument("--deploy-mem", type=int, default=256, metavar="MB")
    whole.add_argument("--deploy-duration", type=int, default=60, metavar="MIN")
    monitor.add_options(whole)
    whole.set_defaults(run=cluster)


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-delay", type=int, default=2000, metavar="MS")
    parser.add_argument("--timeout", type=float, metavar="SECONDS")
