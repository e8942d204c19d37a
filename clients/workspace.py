"""``vws-client``: what a grid user types to deploy and manage workspaces.

Modelled on the GT4 ``workspace`` client: ``deploy`` writes the new workspace's EPR
to a file, and every other action takes that file (``-e/--eprFile``).

    vws-client -s http://host:8443/wsrf/services/WorkspaceFactoryService \\
        deploy --metadata workspace.xml --request deployment-request.xml -e ws.epr
    vws-client status -e ws.epr
    vws-client destroy -e ws.epr
"""

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zeep.exceptions
from lxml import etree

from clients.session import EPR_ELEMENT, METADATA_ELEMENT, REQUEST_ELEMENT, Port, Session, load_document
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import LOGISTICS, TYPES, XPATH_DIALECT, qname

DEFAULT_FACTORY = "http://127.0.0.1:8443/wsrf/services/WorkspaceFactoryService"
SAMPLES = Path(__file__).resolve().parents[1] / "etc" / "samples"
TERMINAL = {"Corrupted", "Cancelled"}
EXIT_FAULT, EXIT_USAGE, EXIT_STATE = 1, 2, 3


class ClientError(Exception):
    """A failure to report in one line, without a traceback."""


# ---- the actions -------------------------------------------------------------------


def deploy(session: Session, args: argparse.Namespace) -> int:
    factory = session.factory()
    metadata = load_document(args.metadata, factory, METADATA_ELEMENT)
    request = load_document(args.request, factory, REQUEST_ELEMENT)
    _apply_overrides(request, args)
    response = factory.call("create", metadata=metadata, resourceRequest=request)
    created = [_epr(workspace.epr) for workspace in response.CreatedWorkspace]
    for index, epr in enumerate(created):
        path = args.eprFile if len(created) == 1 else args.eprFile.with_name(f"{args.eprFile.name}-{index}")
        path.write_bytes(etree.tostring(epr.to_element(EPR_ELEMENT), pretty_print=True))
        print(f"workspace {epr.key(qname(_WORKSPACE_NS, 'WorkspaceKey'))}: EPR written to {path}")
    target = args.exit_state or request.InitialState or "Running"
    return max(_wait_for(session.port(epr), target, args.poll_delay) for epr in created)


def _apply_overrides(request, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    if args.deploy_mem:
        request.ResourceAllocation.IndividualPhysicalMemory.Exact = [args.deploy_mem]
    if args.deploy_duration:
        request.DeploymentTime.minDuration = timedelta(minutes=args.deploy_duration)
    if args.deploy_state:
        request.InitialState = args.deploy_state
    if args.numnodes:
        request.NodeNumber = args.numnodes


def status(session: Session, args: argparse.Namespace) -> int:
    port = session.port(_read_epr(args.eprFile))
    print(f"state: {_state(port)}")
    for nic in _property(port, qname(LOGISTICS, "logistics")).iter(qname(LOGISTICS, "nic")):
        print(f"  {nic.findtext(qname(LOGISTICS, 'name'))}: {_address(nic)}")
    return 0


def rpquery(session: Session, args: argparse.Namespace) -> int:
    """Print the whole resource-property document (an XPath query for /*)."""
    port = session.port(_read_epr(args.eprFile))
    response = port.call("QueryResourceProperties", QueryExpression={"Dialect": XPATH_DIALECT, "_value_1": "/*"})
    for element in _any_elements(response):
        print(etree.tostring(element, pretty_print=True).decode(), end="")
    return 0


def factoryrp(session: Session, args: argparse.Namespace) -> int:
    factory = session.factory()
    for name in ("DefaultRunningTime", "MaximumRunningTime", "Associations"):
        value = _property(factory, qname(TYPES, name))
        text = " ".join(value.itertext()).strip()
        print(f"{name}: {text}")
    return 0


def operate(session: Session, args: argparse.Namespace) -> int:
    port = session.port(_read_epr(args.eprFile))
    if args.action == "start":
        port.call("start")
    elif args.action == "destroy":
        port.call("Destroy")
        print("destroyed")
        return 0
    else:
        port.call("shutdown", shutdownType=_SHUTDOWN_TYPES[args.action])
    print(f"state: {_state(port)}")
    return 0


def set_termination_time(session: Session, args: argparse.Namespace) -> int:
    port = session.port(_read_epr(args.eprFile))
    when = datetime.now(UTC) + timedelta(minutes=args.minutes)
    response = port.call("SetTerminationTime", RequestedTerminationTime=when)
    print(f"termination time: {response.NewTerminationTime.isoformat()}")
    return 0


_SHUTDOWN_TYPES = {"shutdown": "Normal", "pause": "Pause", "reboot": "Reboot", "shutdown-save": "ReadyForTransport"}
_WORKSPACE_NS = "http://www.globus.org/2008/06/workspace"


# ---- helpers ---------------------------------------------------------------------------


def _wait_for(port: Port, target: str, poll_delay_ms: int) -> int:
    """Poll currentState until it is ``target`` (exit 0) or a dead end (exit 3)."""
    seen = None
    while True:
        state = _state(port)
        if state != seen:
            print(f"state: {state}")
            seen = state
        if state == target:
            if state == "Running":
                nics = _property(port, qname(LOGISTICS, "logistics")).iter(qname(LOGISTICS, "nic"))
                print("  " + ", ".join(_address(nic) for nic in nics))
            return 0
        if state in TERMINAL:
            return EXIT_STATE
        time.sleep(poll_delay_ms / 1000)  # polling is the protocol here: GT4 clients behind NAT do this


def _address(nic: etree._Element) -> str:
    ip = nic.findtext(f"{{{LOGISTICS}}}ipConfig/{{{LOGISTICS}}}ipAddress")
    host = nic.findtext(f"{{{LOGISTICS}}}ipConfig/{{{LOGISTICS}}}hostname")
    return f"IP {ip} ({host}), MAC {nic.findtext(qname(LOGISTICS, 'MAC'))}"


def _state(port: Port) -> str:
    return _property(port, qname(TYPES, "currentState")).findtext(qname(TYPES, "state"))


def _property(port: Port, name: str) -> etree._Element:
    response = port.call("GetResourceProperty", etree.QName(name))
    (element,) = _any_elements(response)
    return element


def _any_elements(response) -> list[etree._Element]:  # type: ignore[no-untyped-def]
    values = response if isinstance(response, list) else getattr(response, "_value_1", None) or []
    return [value for value in values if isinstance(value, etree._Element)]


def _epr(value) -> EndpointReference:  # type: ignore[no-untyped-def]
    properties = tuple(e for e in (value.ReferenceProperties._value_1 or []) if isinstance(e, etree._Element))
    return EndpointReference(
        value.Address._value_1 if hasattr(value.Address, "_value_1") else value.Address, properties
    )


def _read_epr(path: Path) -> EndpointReference:
    try:
        return EndpointReference.from_element(etree.parse(str(path)).getroot())
    except (OSError, etree.XMLSyntaxError, ValueError) as exc:
        raise ClientError(f"cannot read an EPR from {path}: {exc}") from None


# ---- command line --------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="vws-client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("-s", "--service", default=DEFAULT_FACTORY, help="factory URL (default %(default)s)")
    actions = top.add_subparsers(dest="action", required=True)

    dep = actions.add_parser("deploy", help="create a workspace and wait for its initial state")
    dep.add_argument("-w", "--metadata", type=Path, default=SAMPLES / "workspace.xml")
    dep.add_argument("-r", "--request", type=Path, default=SAMPLES / "deployment-request.xml")
    dep.add_argument("--deploy-mem", type=int, metavar="MB")
    dep.add_argument("--deploy-duration", type=int, metavar="MIN")
    dep.add_argument("--deploy-state", choices=["Unpropagated", "Propagated", "Running", "Paused"])
    dep.add_argument("-n", "--numnodes", type=int)
    dep.add_argument("--exit-state", help="state to wait for (default: the initial state)")
    dep.add_argument("--poll-delay", type=int, default=200, metavar="MS")
    dep.add_argument("-e", "--eprFile", "--file", type=Path, required=True)
    dep.set_defaults(run=deploy)

    simple = {
        "status": (status, "print the state and addresses"),
        "rpquery": (rpquery, "print every resource property"),
        "start": (operate, "start (or unpause) the workspace"),
        "shutdown": (operate, "shut the workspace down (it stays Propagated)"),
        "pause": (operate, "pause the workspace"),
        "reboot": (operate, "reboot the workspace"),
        "shutdown-save": (operate, "shut down and save the disk back (TransportReady)"),
        "destroy": (operate, "destroy the workspace and free everything it held"),
    }
    for name, (run, text) in simple.items():
        sub = actions.add_parser(name, help=text)
        sub.add_argument("-e", "--eprFile", type=Path, required=True)
        sub.set_defaults(run=run)

    ttl = actions.add_parser("set-termination-time", help="move the end of the lease")
    ttl.add_argument("-e", "--eprFile", type=Path, required=True)
    ttl.add_argument("--minutes", type=int, required=True, help="from now")
    ttl.set_defaults(run=set_termination_time)

    actions.add_parser("factoryrp", help="print the factory's resource properties").set_defaults(run=factoryrp)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(Session(args.service), args)
    except zeep.exceptions.Fault as fault:
        print(f"vws-client: {args.action} failed: {fault.message}", file=sys.stderr)
        return EXIT_FAULT
    except (ClientError, ValueError, OSError) as exc:
        print(f"vws-client: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
