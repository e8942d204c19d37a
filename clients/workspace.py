"""``vws-client``: what a grid user types to deploy and manage workspaces.

Modelled on the GT4 ``workspace`` client (whose own flag syntax the ``workspace``
command accepts on top of this one): ``deploy`` writes the new workspace's EPR to a
file, and every other action takes that file (``-e/--eprFile``); the EPR names the
service, so ``-s`` is needed only to deploy, or to list all one's workspaces.

    vws-client -s http://host:8443/wsrf/services/WorkspaceFactoryService \\
        deploy --metadata workspace.xml --request deployment-request.xml --file ws.epr
    vws-client status -e ws.epr
    vws-client destroy -e ws.epr

Deploy, subscribe and shutdown-save wait for states through notifications to a
local listener (``--listener-address`` behind NAT) or by polling (``--poll``,
``--poll-delay``), showing how far an image copy is meanwhile; the subscriptions
end with the wait, however it ends.

Exit status: 0 the exit state was reached (or the action done); 1 the service
refused (a fault); 2 bad usage or a bad input file; 3 a workspace ended up
Corrupted, Cancelled or destroyed instead of at the exit state (or, for match, no
factory can run the appliance); 4 --timeout passed first; 130 interrupted (Ctrl-C).
"""

import argparse
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

import zeep.exceptions
from lxml import etree

from clients import context, matching, monitor, resource
from clients.errors import ClientError
from clients.proxy_init import default_proxy_path
from clients.session import EPR_ELEMENT, METADATA_ELEMENT, REQUEST_ELEMENT, Port, Session, load_document
from clients.wsse import GsiSecureMessage
from vws.errors import VwsError
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import APPLIANCES, JSDL, LOGISTICS, RESOURCES, TYPES, WSA, WSRL, WSRP, WSRP_ACTION, XPATH_DIALECT, qname

DEFAULT_FACTORY = "http://127.0.0.1:8443/wsrf/services/WorkspaceFactoryService"
SAMPLES = Path(__file__).resolve().parents[1] / "etc" / "samples"
GROUP_SERVICE = "WorkspaceGroupService"
STATUS = "WorkspaceStatusService"
CATALOG = "ApplianceCatalogService"
EXIT_FAULT, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 4, 130  # and monitor.EXIT_STATE, 3


# ---- the actions -------------------------------------------------------------------


def deploy(session: Session, args: argparse.Namespace) -> int:
    factory = session.factory()
    metadata = load_document(args.metadata, factory, METADATA_ELEMENT)
    request = load_document(args.request, factory, REQUEST_ELEMENT)
    _apply_overrides(request, args)
    fields = {**_ensemble(factory, args), **_context(factory, args)}
    response = factory.call("create", metadata=metadata, resourceRequest=request, **fields)
    created = [_epr(workspace.epr) for workspace in response.CreatedWorkspace]
    _write_created(created, args.file)
    for name, value, path in (
        ("group", response.GroupEPR, args.groupfile),
        ("ensemble", response.EnsembleEPR, args.ensfile),
    ):
        if value is not None and path is not None:
            _write_epr(path, _epr(value))
            print(f"{name} EPR written to {path}")
    if args.start_at:
        print(f"reserved from {args.start_at.isoformat()}: Unpropagated until then")
        return 0  # an advance reservation: nothing happens before its start
    if args.no_wait or args.new_ensemble or args.join_ensemble and not args.last_in_ensemble:
        return 0  # asked not to wait, or nothing starts before the ensemble is done
    return _wait(session, created, args.exit_state or request.InitialState or "Running", args)


def _write_created(created: list[EndpointReference], path: Path | None) -> None:
    """One workspace's EPR to ``path``; a group's each to ``<path>-<key>.epr``, as the GT4 client names them."""
    for epr in created:
        key = epr.key(monitor.WORKSPACE_KEY) or "?"
        if path is None:
            print(f"workspace {key} created")
            continue
        written = path if len(created) == 1 else path.with_name(f"{path.name}-{key.zfill(3)}.epr")
        _write_epr(written, epr)
        print(f"workspace {key}: EPR written to {written}")


def _ensemble(factory: Port, args: argparse.Namespace) -> dict:
    """The create request's ensemble fields: a new ensemble, or join one (maybe as the last)."""
    if not (args.new_ensemble or args.join_ensemble):
        return {}
    fields = {"partOfEnsemble": True, "ensembleDone": bool(args.last_in_ensemble)}
    if args.join_ensemble:
        epr_type = factory.client.get_type(qname(WSA, "EndpointReferenceType"))
        ensemble = read_epr(args.join_ensemble).to_element()
        fields["ensembleEPR"] = epr_type.parse_xmlelement(ensemble, factory.client.wsdl.types)
    return fields


def _context(factory: Port, args: argparse.Namespace) -> dict:
    """The create request's context fields: join the context of --context, and maybe lock it."""
    if not args.context:
        if args.lock_context:
            raise ClientError("--lock-context needs --context")
        return {}
    epr_type = factory.client.get_type(qname(WSA, "EndpointReferenceType"))
    reference = epr_type.parse_xmlelement(read_epr(args.context).to_element(), factory.client.wsdl.types)
    return {"contextEPR": reference, "lockContext": bool(args.lock_context)}


def _apply_overrides(request, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    if args.deploy_mem:
        request.ResourceAllocation.IndividualPhysicalMemory.Exact = [{"_value_1": float(args.deploy_mem)}]
    if args.deploy_duration:
        request.DeploymentTime.minDuration = timedelta(minutes=args.deploy_duration)
    if args.deploy_state:
        request.InitialState = args.deploy_state
    if args.numnodes:
        request.NodeNumber = args.numnodes
    if args.trash_at_shutdown:
        request.ShutdownMechanism = "Trash"
    if args.save_target:
        request.PostShutdown = _post_shutdown(args.save_target)
    if args.start_at:
        request.DeploymentTime._value_1 = [_reservation(args.start_at)]


def _reservation(start: datetime) -> etree._Element:
    """vws's advance reservation (vws-res:reservation), beside minDuration in DeploymentTime."""
    if start.tzinfo is None:
        raise ClientError("--start-at needs a time zone, e.g. 2026-12-24T18:00:00Z")
    element = etree.Element(qname(RESOURCES, "reservation"), nsmap={"vws-res": RESOURCES})
    etree.SubElement(element, qname(RESOURCES, "start")).text = start.isoformat()
    return element


def subscribe(session: Session, args: argparse.Namespace) -> int:
    """Wait, through notifications (or polling), until the workspace is at ``--exit-state``."""
    epr = read_epr(args.eprFile)
    if _is_group(epr):
        raise ClientError(f"{args.eprFile} is a group's EPR: subscribe to one workspace (one of its member EPRs)")
    return _wait(session, [epr], args.exit_state or "Running", args)


def _wait(session: Session, eprs: list[EndpointReference], target: str, args: argparse.Namespace) -> int:
    outcome = monitor.wait_for(eprs, target, session, args, session.base_url)
    if outcome == 0 and target == "Running":
        for epr in eprs:
            nics = _logistics(session, epr).iter(qname(LOGISTICS, "nic"))
            print(f"workspace {epr.key(monitor.WORKSPACE_KEY)}: " + ", ".join(_address(nic) for nic in nics))
    return outcome


def status_all(session: Session, args: argparse.Namespace) -> int:
    """Every workspace of mine, from the status service."""
    response = session.port(EndpointReference(session.base_url + STATUS)).call("queryCurrentWorkspaces")
    for one in response or []:
        epr = _epr(one.epr)
        state = one.currentState.state if hasattr(one.currentState, "state") else one.currentState
        print(f"workspace {epr.key(monitor.WORKSPACE_KEY)}: {state}  ends {one.schedule.ActualTerminationTime}")
    return 0


def usage(session: Session, args: argparse.Namespace) -> int:
    response = session.port(EndpointReference(session.base_url + STATUS)).call("queryUsedAndReservedTime")
    print(f"used: {response.usedTime}  reserved: {response.reservedTime}")
    return 0


def ensemble_done(session: Session, args: argparse.Namespace) -> int:
    session.port(read_epr(args.eprFile)).call("done")
    print("ensemble done: its workspaces are starting together")
    return 0


def ensemble_report(session: Session, args: argparse.Namespace) -> int:
    port = session.port(read_epr(args.eprFile))
    response = port.call("report", returnOnlyIfErrorPresent=args.error_only, returnOnlyIfAllAtState=args.all_at)
    entries = response if isinstance(response, list) else getattr(response, "report", None) or []
    for entry in entries:
        print(f"workspace {_epr(entry.epr).key(monitor.WORKSPACE_KEY)}: {entry.currentState.state}")
    return 0 if entries or not (args.error_only or args.all_at) else monitor.EXIT_STATE


def status(session: Session, args: argparse.Namespace) -> int:
    if args.eprFile is None:
        return status_all(session, args)
    epr = read_epr(args.eprFile)
    print(f"state: {resource.current_state(session, epr)}")
    for copy in resource.copies(session, epr):
        print(f"  {copy}")
    for nic in _logistics(session, epr).iter(qname(LOGISTICS, "nic")):
        print(f"  {nic.findtext(qname(LOGISTICS, 'name'))}: {_address(nic)}")
    return 0


def rpquery(session: Session, args: argparse.Namespace) -> int:
    """Print the whole resource-property document (an XPath query for /*)."""
    # QueryExpression is mixed content, which zeep cannot write: this one body is built by hand.
    query = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP})
    etree.SubElement(query, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT).text = "/*"
    response = session.raw(read_epr(args.eprFile), WSRP_ACTION + "QueryResourceProperties", query)
    for element in response:
        print(etree.tostring(element, pretty_print=True).decode(), end="")
    return 0


def factoryrp(session: Session, args: argparse.Namespace) -> int:
    for name in ("DefaultRunningTime", "MaximumRunningTime", "Associations"):
        (value,) = resource.get_property(session, session.factory_epr, qname(TYPES, name))
        print(f"{name}: {' '.join(value.itertext()).strip()}")
    return 0


def match(session: Session, args: argparse.Namespace) -> int:
    """For each factory, whether the appliance can run there and if not, why; exit 3 when none can."""
    wanted = matching.requirements(args.metadata, args.request)
    hosts = 0
    for url in args.factories or [session.base_url + "WorkspaceFactoryService"]:
        there = Session(url, wsse=_security(args)) if args.factories else session
        pool = matching.offers(there, there.factory_epr)
        reason = matching.verdict(wanted, pool)
        kinds = matching.hosting(wanted, pool)
        if reason is None and kinds:
            hosts += 1
            print(f"{url}: can run it, on " + "; ".join(map(matching.describe, kinds)))
        else:
            print(f"{url}: cannot run it: {reason or 'it has no active node'}")
    return 0 if hosts else monitor.EXIT_STATE


def appliances(session: Session, args: argparse.Namespace) -> int:
    """The appliances I may deploy here, from the catalogue (those an XPath query selects)."""
    query = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP})
    expression = etree.SubElement(
        query, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT, nsmap={"app": APPLIANCES}
    )
    expression.text = args.query
    response = session.raw(
        EndpointReference(session.base_url + CATALOG), WSRP_ACTION + "QueryResourceProperties", query
    )
    for appliance in response.iter(qname(APPLIANCES, "appliance")):
        print(matching.listed(appliance))
    return 0


def operate(session: Session, args: argparse.Namespace) -> int:
    """start, shutdown, pause, reboot, shutdown-save or destroy a workspace, or every member of a group."""
    epr = read_epr(args.eprFile)
    if args.action == "destroy":
        resource.destroy(session, epr)
        print("destroyed")
        return 0
    port = session.port(epr)
    if args.action == "start":
        port.call("start")
    else:
        port.call("shutdown", shutdownType=_SHUTDOWN_TYPES[args.action], **_shutdown_options(args))
    if _is_group(epr):
        print(f"{args.action}: asked of every member of group {epr.address}")  # a group has no state to read
        return 0
    if args.action != "shutdown-save" or args.no_wait:
        print(f"state: {resource.current_state(session, epr)}")
        return 0
    outcome = _wait(session, [epr], "TransportReady", args)  # the disk is saved in the background
    if outcome == 0 and args.auto_destroy:
        resource.destroy(session, epr)
        print("disk saved; workspace destroyed (--auto-destroy)")
    return outcome


def _shutdown_options(args: argparse.Namespace) -> dict:
    if args.action != "shutdown-save":
        return {}
    if args.exit_state not in (None, "TransportReady"):
        raise ClientError("shutdown-save waits for TransportReady; --exit-state cannot name another state")
    return {"PostShutdown": _post_shutdown(args.save_target)} if args.save_target else {}


def _post_shutdown(target: str) -> dict:
    """Where a ReadyForTransport shutdown saves the root disk (overriding the create request's target)."""
    return {"rootPartitionUnpropagationTarget": target}


def set_termination_time(session: Session, args: argparse.Namespace) -> int:
    epr = read_epr(args.eprFile)
    # Count from the service's clock, not ours: grid hosts' clocks disagree.
    (now,) = resource.get_property(session, epr, qname(WSRL, "CurrentTime"))
    when = datetime.fromisoformat(now.text) + timedelta(minutes=args.minutes)
    response = session.port(epr).call("SetTerminationTime", RequestedTerminationTime=when)
    print(f"termination time: {response.NewTerminationTime.isoformat()}")
    return 0


def renegotiate(session: Session, args: argparse.Namespace) -> int:
    """Ask for a new allocation; print what is granted (the service refuses with a fault otherwise)."""
    if args.memory is None and args.cpus is None and args.cpu_percent is None:
        raise ClientError("renegotiate: give --memory, --cpus or --cpu-percent")
    granted = resource.renegotiate(
        session,
        read_epr(args.eprFile),
        memory_mb=args.memory,
        vcpus=args.cpus,
        cpu_percent=args.cpu_percent,
        at_next_start=args.at_next_start,
    )
    exact = {etree.QName(part).localname: part.findtext(qname(JSDL, "Exact")) for part in granted}
    share = f", {exact['CPUPercentage']}% of a CPU each" if "CPUPercentage" in exact else ""
    print(f"granted: {exact.get('IndividualPhysicalMemory')} MB, {exact.get('IndividualCPUCount')} CPUs{share}")
    return 0


def availability(session: Session, args: argparse.Namespace) -> int:
    """The earliest windows a workspace of that size would fit: what to pass to deploy --start-at."""
    duration = f"PT{args.duration}M"
    windows = resource.availability(session, session.factory_epr, args.memory, duration, args.cpus, args.count)
    for start, end in windows:
        print(f"{start} to {end}")
    if not windows:
        print("no window fits within the next 30 days")
    return 0


_SHUTDOWN_TYPES = {"shutdown": "Normal", "pause": "Pause", "reboot": "Reboot", "shutdown-save": "ReadyForTransport"}


# ---- helpers ---------------------------------------------------------------------------


def _logistics(session: Session, epr: EndpointReference) -> etree._Element:
    (logistics,) = resource.get_property(session, epr, qname(LOGISTICS, "logistics"))
    return logistics


def _is_group(epr: EndpointReference) -> bool:
    return epr.address.rstrip("/").endswith("/" + GROUP_SERVICE)


def _write_epr(path: Path, epr: EndpointReference) -> None:
    path.write_bytes(etree.tostring(epr.to_element(EPR_ELEMENT), pretty_print=True))


def _address(nic: etree._Element) -> str:
    ip = nic.findtext(f"{{{LOGISTICS}}}ipConfig/{{{LOGISTICS}}}ipAddress")
    host = nic.findtext(f"{{{LOGISTICS}}}ipConfig/{{{LOGISTICS}}}hostname")
    return f"IP {ip} ({host}), MAC {nic.findtext(qname(LOGISTICS, 'MAC'))}"


def _epr(value) -> EndpointReference:  # type: ignore[no-untyped-def]
    properties = tuple(e for e in (value.ReferenceProperties._value_1 or []) if isinstance(e, etree._Element))
    return EndpointReference(
        value.Address._value_1 if hasattr(value.Address, "_value_1") else value.Address, properties
    )


def read_epr(path: Path) -> EndpointReference:
    try:
        return EndpointReference.from_element(etree.parse(str(path)).getroot())
    except (OSError, etree.XMLSyntaxError, ValueError) as exc:
        raise ClientError(f"cannot read an EPR from {path}: {exc}") from None


# ---- command line --------------------------------------------------------------------


def parser(prog: str = "vws-client") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument(
        "-s", "--service", help=f"factory URL (default: the service the EPR file names, else {DEFAULT_FACTORY})"
    )
    top.add_argument("--proxy", type=Path, help="proxy credential (default: $X509_USER_PROXY, /tmp/x509up_u<uid>)")
    top.add_argument(
        "--trust-dir", type=Path, help="CA directory (default: $X509_CERT_DIR, /etc/grid-security/certificates)"
    )
    top.add_argument("--factory-id", metavar="DN", help="accept replies signed only by this service identity")
    top.add_argument("-a", "--anonymous", action="store_true", help="send unsigned messages (an --insecure service)")
    actions = top.add_subparsers(dest="action", required=True)

    dep = actions.add_parser("deploy", help="create a workspace and wait for its initial state")
    dep.add_argument("-w", "--metadata", type=Path, default=SAMPLES / "workspace.xml")
    dep.add_argument("-r", "--request", type=Path, default=SAMPLES / "deployment-request.xml")
    dep.add_argument("--deploy-mem", type=int, metavar="MB")
    dep.add_argument("--deploy-duration", type=int, metavar="MIN")
    dep.add_argument(
        "--deploy-state", type=monitor.state_name, choices=["Unpropagated", "Propagated", "Running", "Paused"]
    )
    dep.add_argument("-n", "--numnodes", type=int)
    dep.add_argument("--trash-at-shutdown", action="store_true", help="destroy it when its running time is over")
    dep.add_argument(
        "--save-target",
        metavar="URL",
        help="where shutdown-save saves the disk (default: an image named for the workspace)",
    )
    dep.add_argument("--groupfile", type=Path, help="write the group's EPR here (with --numnodes > 1)")
    together = dep.add_mutually_exclusive_group()
    together.add_argument("--new-ensemble", action="store_true", help="start a new ensemble with this request")
    together.add_argument("--join-ensemble", type=Path, metavar="ENSEMBLE_EPR", help="add this request to it")
    dep.add_argument("--last-in-ensemble", action="store_true", help="the ensemble is done after this request")
    dep.add_argument("--ensfile", type=Path, help="write the ensemble's EPR here")
    dep.add_argument("--context", type=Path, metavar="CONTEXT_EPR", help="join this context (context-create)")
    dep.add_argument("--lock-context", action="store_true", help="the context takes no more members after these")
    dep.add_argument("--no-wait", action="store_true", help="exit once created, without waiting for a state")
    dep.add_argument(
        "--start-at",
        type=datetime.fromisoformat,
        metavar="TIME",
        help="reserve from TIME (ISO 8601 with a time zone) for the deploy duration; exits once admitted",
    )
    monitor.add_options(dep)
    dep.add_argument(
        "--file", "-e", "--eprFile", dest="file", type=Path, help="write the EPR here (a group's: FILE-<key>.epr)"
    )
    dep.set_defaults(run=deploy)

    sub = actions.add_parser("subscribe", help="wait for a workspace's state changes until --exit-state")
    sub.add_argument("-e", "--eprFile", type=Path, required=True)
    monitor.add_options(sub)
    sub.set_defaults(run=subscribe)

    stat = actions.add_parser("status", help="print the state and addresses (without -e: all my workspaces)")
    stat.add_argument("-e", "--eprFile", type=Path)
    stat.set_defaults(run=status)
    actions.add_parser("status-all", help="list all my workspaces").set_defaults(run=status_all)
    actions.add_parser("usage", help="minutes my workspaces used and hold").set_defaults(run=usage)

    done = actions.add_parser("ens-done", help="the ensemble takes no more members: start it")
    done.add_argument("-e", "--eprFile", type=Path, required=True, help="the ensemble's EPR")
    done.set_defaults(run=ensemble_done)
    rep = actions.add_parser("ens-report", help="each member's state (exit 3 when a condition is unmet)")
    rep.add_argument("-e", "--eprFile", type=Path, required=True, help="the ensemble's EPR")
    rep.add_argument("--error-only", action="store_true", help="report only if a member is Corrupted")
    rep.add_argument("--all-at", metavar="STATE", help="report only if every member is at STATE")
    rep.set_defaults(run=ensemble_report)

    simple = {
        "rpquery": (rpquery, "print every resource property"),
        "start": (operate, "start (or unpause) the workspace, or every member of a group"),
        "shutdown": (operate, "shut the workspace down (it stays Propagated)"),
        "pause": (operate, "pause the workspace"),
        "reboot": (operate, "reboot the workspace"),
        "shutdown-save": (operate, "shut down and save the disk back, waiting for TransportReady"),
        "destroy": (operate, "destroy the workspace (group, ensemble) and free everything it held"),
    }
    for name, (run, text) in simple.items():
        sub = actions.add_parser(name, help=text)
        sub.add_argument("-e", "--eprFile", type=Path, required=True, help="a workspace's or a group's EPR")
        sub.set_defaults(run=run)
    save = actions.choices["shutdown-save"]
    save.add_argument("--save-target", metavar="URL", help="save the disk here instead of the target set at create")
    save.add_argument("--no-wait", action="store_true", help="exit once asked, without waiting for TransportReady")
    monitor.add_options(save)

    ttl = actions.add_parser("set-termination-time", help="move the end of the lease")
    ttl.add_argument("-e", "--eprFile", type=Path, required=True)
    ttl.add_argument("--minutes", type=int, required=True, help="from now, by the service's clock")
    ttl.set_defaults(run=set_termination_time)

    again = actions.add_parser("renegotiate", help="change a living workspace's memory, CPUs or CPU share")
    again.add_argument("-e", "--eprFile", type=Path, required=True)
    again.add_argument("--memory", type=int, metavar="MB")
    again.add_argument("--cpus", type=int)
    again.add_argument("--cpu-percent", type=int, metavar="PERCENT", help="of one host CPU, per vCPU (1-100)")
    again.add_argument(
        "--at-next-start",
        action="store_true",
        help="what cannot be applied to the running guest waits for its next start",
    )
    again.set_defaults(run=renegotiate)

    free = actions.add_parser("availability", help="the earliest windows a workspace of that size would fit")
    free.add_argument("--memory", type=int, metavar="MB", required=True)
    free.add_argument("--cpus", type=int, default=1)
    free.add_argument("--duration", type=int, metavar="MIN", required=True)
    free.add_argument("--count", type=int, default=3, help="how many windows (at most 10)")
    free.set_defaults(run=availability)

    actions.add_parser("factoryrp", help="print the factory's resource properties").set_defaults(run=factoryrp)

    cat = actions.add_parser("appliances", help="list the appliances I may deploy (from the catalogue)")
    cat.add_argument(
        "--query",
        default="/*/app:appliance",
        metavar="XPATH",
        help="select appliances (prefix app:), e.g. \"//app:appliance[app:attribute[@name='role']='torque-worker']\"",
    )
    cat.set_defaults(run=appliances)

    fit = actions.add_parser("match", help="say whether each factory can run an appliance, and if not, why")
    fit.add_argument("-w", "--metadata", type=Path, required=True, help="the appliance's VirtualWorkspace metadata")
    fit.add_argument("-r", "--request", type=Path, help="a deployment request: match its memory and CPUs too")
    fit.add_argument("-s", "--service", dest="factories", nargs="+", metavar="FACTORY", help="factory URLs to ask")
    fit.set_defaults(run=match)

    context.add_actions(actions)
    return top


def _service_url(args: argparse.Namespace) -> str:
    """-s, else the address in the EPR file the action reads, else the local default."""
    if args.service:
        return args.service
    if getattr(args, "factories", None):
        return args.factories[0]
    epr_file = getattr(args, "eprFile", None)
    return read_epr(epr_file).address if epr_file else DEFAULT_FACTORY


def _security(args: argparse.Namespace) -> GsiSecureMessage | None:
    """GSI Secure Message with the user's proxy, unless --anonymous."""
    if args.anonymous:
        return None
    proxy = args.proxy or default_proxy_path()
    if not proxy.exists():
        raise ClientError(f"no proxy credential at {proxy}: run vws-proxy-init (or pass --anonymous)")
    trust = args.trust_dir or Path(os.environ.get("X509_CERT_DIR") or "/etc/grid-security/certificates")
    return GsiSecureMessage.from_files(proxy, trust, server_identity=args.factory_id)


def main(argv: list[str] | None = None, prog: str = "vws-client") -> int:
    args = parser(prog).parse_args(argv)
    try:
        return args.run(Session(_service_url(args), wsse=_security(args)), args)
    except zeep.exceptions.Fault as fault:
        print(f"{prog}: {args.action} failed: {fault.message}", file=sys.stderr)
        return EXIT_FAULT
    except TimeoutError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except zeep.exceptions.Error as exc:  # what zeep refuses to send: a document the schema does not allow
        print(f"{prog}: cannot send the {args.action} request: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (VwsError, ValueError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
