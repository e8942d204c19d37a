"""GT4 2008/06 workspace XML <-> the workspace layer's types.

Reading: a ``create`` body (VirtualWorkspace metadata + WorkspaceDeployment request +
optional parameters) into a DeploymentRequest, refusing what is missing or wrong
with InvalidMetadata. Writing: schedules, current state, allocation and networking
exactly as the schemas in ``wsdl/workspace/`` declare them.
"""

import re
from datetime import datetime, timedelta

from lxml import etree

from vws.clock import timestamp
from vws.errors import InvalidMetadata
from vws.soap import allocation as resources
from vws.workspace.deployers import Propagation
from vws.workspace.records import NetworkLease, Workspace
from vws.workspace.request import (
    BlankDiskRequest,
    ContextFile,
    DeploymentRequest,
    DiskRequest,
    KernelRequest,
    MachineRequest,
    NicRequest,
    Vmm,
)
from vws.wsrf.basefaults import base_fault
from vws.xmlns import DEFINITION, JSDL, LOGISTICS, METADATA, NEGOTIABLE, PROPAGATION, RESOURCES, TYPES, qname

NSMAP = {"types": TYPES, "log": LOGISTICS, "neg": NEGOTIABLE, "jsdl": JSDL}


def _find(parent: etree._Element, namespace: str, path: str) -> etree._Element | None:
    """``path`` of local names, all in ``namespace`` unless a segment says ``ns:``."""
    for step in path.split("/"):
        if parent is None:
            return None
        space, _, local = step.rpartition(":")
        parent = parent.find(qname(_PREFIX[space] if space else namespace, local))
    return parent


def _text(parent: etree._Element | None, namespace: str, path: str) -> str | None:
    element = _find(parent, namespace, path) if parent is not None else None
    text = None if element is None or element.text is None else element.text.strip()
    return text or None


_PREFIX = {
    "jsdl": JSDL,
    "log": LOGISTICS,
    "def": DEFINITION,
    "neg": NEGOTIABLE,
    "meta": METADATA,
    "types": TYPES,
    "res": RESOURCES,
}


# ---- reading a create request -------------------------------------------------------


def parse_create(body: etree._Element) -> DeploymentRequest:
    metadata = _required(body, TYPES, "metadata", "the create request has no metadata")
    request = _required(body, TYPES, "resourceRequest", "the create request has no resourceRequest")
    optional = _find(body, TYPES, "optionalParameters")
    definition = _required(metadata, DEFINITION, "definition", "the metadata has no definition")
    allocation = _required(request, NEGOTIABLE, "ResourceAllocation", "the request has no ResourceAllocation")
    nics = tuple(_nic(nic) for nic in _all(metadata, LOGISTICS, "logistics/networking", "nic"))
    machine = MachineRequest(
        memory_mb=_memory(allocation),
        vcpus=resources.vcpus(allocation) or 1,
        root=_disk(_required(definition, DEFINITION, "diskCollection/rootVBD", "the metadata has no rootVBD")),
        partitions=tuple(_disk(p) for p in _all(definition, DEFINITION, "diskCollection", "partition")),
        blank_disks=_blank_disks(definition, allocation),
        nics=nics,
        kernel=_kernel(_find(definition, DEFINITION, "requirements/kernel")),
        architecture=_text(definition, DEFINITION, "requirements/jsdl:CPUArchitecture/jsdl:CPUArchitectureName"),
        vmm=_vmm(_find(definition, DEFINITION, "requirements/VMM")),
        files=tuple(_file(f) for f in _all(body, TYPES, "optionalParameters", "filewrite")),
        userdata=_userdata(optional),
        cpu_percent=resources.cpu_percent(allocation),
        bandwidth=resources.bandwidth(allocation, {nic.name for nic in nics}),
    )
    minimum = _text(request, NEGOTIABLE, "DeploymentTime/minDuration")
    start_at, reserved = _reservation(_find(request, NEGOTIABLE, "DeploymentTime/res:reservation"))
    return DeploymentRequest(
        name=_text(metadata, METADATA, "name") or "workspace",
        machine=machine,
        duration=reserved or (parse_duration(minimum) if minimum else None),
        start_at=start_at,
        initial_state=_text(request, NEGOTIABLE, "InitialState") or "Running",
        node_number=_node_number(_text(request, NEGOTIABLE, "NodeNumber") or "1"),
        trash_at_shutdown=_shutdown_mechanism(_text(request, NEGOTIABLE, "ShutdownMechanism")),
        save_target=_text(request, NEGOTIABLE, "PostShutdown/rootPartitionUnpropagationTarget"),
    )


def _reservation(element: etree._Element | None) -> tuple[datetime | None, timedelta | None]:
    """vws-res:reservation (vws's own, beside DeploymentTime): its start, and its duration when given
    (else the request's minDuration)."""
    if element is None:
        return None, None
    start = _text(element, RESOURCES, "start")
    if start is None:
        raise InvalidMetadata("a reservation needs a start (an xsd:dateTime with its time zone)")
    try:
        moment = datetime.fromisoformat(start)
    except ValueError:
        raise InvalidMetadata(f"the reservation's start {start[:40]!r} is not an xsd:dateTime") from None
    if moment.tzinfo is None:
        raise InvalidMetadata(f"the reservation's start {start[:40]!r} needs a time zone (e.g. Z)")
    duration = _text(element, RESOURCES, "duration")
    return moment, None if duration is None else parse_duration(duration)


def _required(parent: etree._Element, namespace: str, path: str, problem: str) -> etree._Element:
    element = _find(parent, namespace, path)
    if element is None:
        raise InvalidMetadata(problem)
    return element


def _all(parent: etree._Element, namespace: str, path: str, local: str) -> list[etree._Element]:
    holder = _find(parent, namespace, path)
    return [] if holder is None else holder.findall(qname(namespace, local))


def _memory(allocation: etree._Element) -> int:
    memory = resources.memory_mb(allocation)
    if memory is None:
        raise InvalidMetadata("ResourceAllocation must give IndividualPhysicalMemory/Exact (MB)")
    return memory


MAX_NODE_NUMBER = 32767  # NodeNumber is an xsd:short


def _node_number(text: str) -> int:
    return resources.whole(text, "NodeNumber", resources.XSD_INTEGER, MAX_NODE_NUMBER)


def _choice(text: str, allowed: tuple[str, ...], what: str) -> str:
    """An enumeration value the schema allows, or InvalidMetadata naming the choices."""
    if text not in allowed:
        raise InvalidMetadata(f"{what} must be one of {', '.join(allowed)}, not {text!r}")
    return text


def _disk(bound: etree._Element) -> DiskRequest:
    location = _text(bound, DEFINITION, "location")
    mount_as = _text(bound, DEFINITION, "mountAs")
    if not location or not mount_as:
        raise InvalidMetadata("every disk needs a location and mountAs")
    permissions = _choice(
        _text(bound, DEFINITION, "permissions") or "ReadWrite", ("ReadOnly", "ReadWrite"), "permissions"
    )
    return DiskRequest(location, mount_as, writable=permissions == "ReadWrite")


def _blank_disks(definition: etree._Element, allocation: etree._Element) -> tuple[BlankDiskRequest, ...]:
    sizes = {
        _text(entry, NEGOTIABLE, "partitionName"): resources.quantity(
            _text(entry, JSDL, "IndividualDiskSpace/Exact") or "", "IndividualDiskSpace"
        )
        for entry in _all(allocation, NEGOTIABLE, "Storage", "entry")
    }
    disks = []
    for blank in _all(definition, DEFINITION, "diskCollection", "blankspacePartition"):
        name = _text(blank, DEFINITION, "partitionName")
        if name not in sizes:
            raise InvalidMetadata(f"blank partition {name!r} has no Storage entry giving its size")
        disks.append(BlankDiskRequest(name, _text(blank, DEFINITION, "mountAs") or name, sizes[name]))
    return tuple(disks)


def _nic(nic: etree._Element) -> NicRequest:
    name = _text(nic, LOGISTICS, "name")
    association = _text(nic, LOGISTICS, "association")
    if not name or not association:
        raise InvalidMetadata("every nic needs a name and an association (the network pool)")
    method = _choice(
        _text(nic, LOGISTICS, "ipConfig/acquisitionMethod") or "AllocateAndConfigure",
        ("AllocateAndConfigure", "AcceptAndConfigure", "Advisory"),
        "acquisitionMethod",
    )
    return NicRequest(
        name=name,
        association=association,
        acquisition=method,
        mac=_text(nic, LOGISTICS, "MAC"),
        ip=_text(nic, LOGISTICS, "ipConfig/ipAddress"),
        hostname=_text(nic, LOGISTICS, "ipConfig/hostname"),
    )


def _kernel(kernel: etree._Element | None) -> KernelRequest | None:
    if kernel is None:
        return None
    # def:initrd is a vws extension (the GT4 Kernel_Type has only image and parameters):
    # a modular kernel cannot mount its root without one.
    return KernelRequest(
        image=_text(kernel, DEFINITION, "image"),
        initrd=_text(kernel, DEFINITION, "initrd"),
        parameters=_text(kernel, DEFINITION, "parameters"),
    )


def _vmm(vmm: etree._Element | None) -> Vmm | None:
    """The required hypervisor: a type and the versions any of which will do."""
    if vmm is None:
        return None
    kind = _text(vmm, DEFINITION, "type")
    if kind is None:
        raise InvalidMetadata("the VMM requirement names no type")
    versions = (version.text.strip() for version in vmm.findall(qname(DEFINITION, "version")) if version.text)
    return Vmm(kind, tuple(version for version in versions if version))


def _userdata(optional: etree._Element | None) -> str | None:
    """mdServerUserdata verbatim: a script's final newline is part of it (not stripped)."""
    element = None if optional is None else _find(optional, TYPES, "mdServerUserdata")
    return None if element is None or not element.text else element.text


def _file(filewrite: etree._Element) -> ContextFile:
    path = _text(filewrite, TYPES, "pathOnVM")
    content = _find(filewrite, TYPES, "content")
    if not path or content is None:
        raise InvalidMetadata("every filewrite needs content and pathOnVM")
    return ContextFile(path_on_vm=path, content=content.text or "")


def _shutdown_mechanism(text: str | None) -> bool:
    if text not in (None, "Normal", "Trash", "Serialize"):
        raise InvalidMetadata(f"unknown ShutdownMechanism {text!r}")
    if text == "Serialize":
        raise InvalidMetadata("ShutdownMechanism Serialize is not supported")
    return text == "Trash"


_DURATION = re.compile(
    r"P(?:(?P<days>[0-9]+)D)?(?:T(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?(?:(?P<seconds>[0-9]+(?:\.[0-9]+)?)S)?)?"
)


def parse_duration(text: str) -> timedelta:
    """An xsd:duration without years or months, which have no fixed length."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise InvalidMetadata(f"{text[:40]!r} is not an xsd:duration of days, hours, minutes and seconds")
    try:
        return timedelta(**{unit: float(value) for unit, value in match.groupdict().items() if value})
    except OverflowError:
        raise InvalidMetadata(f"the duration {text[:40]!r} is longer than any lease can be") from None


def format_duration(length: timedelta) -> str:
    seconds = int(length.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{seconds}S"


# ---- writing --------------------------------------------------------------------------


def _element(tag: str, text: str | None = None, *children: etree._Element) -> etree._Element:
    # No nsmap here: declaring the prefixes on every element costs more than the element.
    element = etree.Element(tag)
    element.text = text
    element.extend(children)
    return element


def _optional_children(namespace: str, fields: list[tuple[str, str | None]]) -> list[etree._Element]:
    return [_element(qname(namespace, name), value) for name, value in fields if value is not None]


def schedule(workspace: Workspace, tag: str = qname(TYPES, "schedule")) -> etree._Element:
    """An advance reservation not started yet shows its reserved start, and its reserved length."""
    reserved = workspace.request.start_at
    started = workspace.started_at or reserved or workspace.created_at
    length = workspace.termination_time - reserved if reserved else workspace.duration
    return _element(
        tag,
        None,
        _element(qname(TYPES, "ActualInstantiationTime"), timestamp(started)),
        _element(qname(TYPES, "Duration"), format_duration(length)),
        _element(qname(TYPES, "ActualTerminationTime"), timestamp(workspace.termination_time)),
    )


def current_state(workspace: Workspace) -> etree._Element:
    """The state a client sees, with the reason as a WorkspaceFault (stamped with the moment
    of the failure) when it is Corrupted."""
    state = _element(qname(TYPES, "currentState"), None, _element(qname(TYPES, "state"), workspace.state.wire))
    if workspace.fault and workspace.fault_at:
        state.append(base_fault(qname(TYPES, "WorkspaceFault"), workspace.fault, workspace.fault_at))
    return state


def propagation(progress: Propagation) -> etree._Element:
    return etree.Element(
        qname(PROPAGATION, "propagation"),
        nsmap={"vws": PROPAGATION},
        node=progress.node,
        bytesDone=str(progress.done_bytes),
        bytesTotal=str(progress.total_bytes),
    )


def resource_allocation(workspace: Workspace) -> etree._Element:
    return resources.resource_allocation(workspace.request.machine)


def networking(leases: tuple[NetworkLease, ...]) -> etree._Element:
    return _element(qname(LOGISTICS, "networking"), None, *(_nic_element(lease) for lease in leases))


def logistics(workspace: Workspace) -> etree._Element:
    return _element(qname(LOGISTICS, "logistics"), None, networking(workspace.leases))


def _nic_element(lease: NetworkLease) -> etree._Element:
    ip_config = _element(
        qname(LOGISTICS, "ipConfig"),
        None,
        *_optional_children(
            LOGISTICS,
            [
                ("acquisitionMethod", lease.acquisition),
                ("hostname", lease.hostname),
                ("ipAddress", lease.ip),
                ("netmask", lease.netmask),
                ("gateway", lease.gateway),
                ("broadcast", lease.broadcast),
            ],
        ),
    )
    return _element(
        qname(LOGISTICS, "nic"),
        None,
        _element(qname(LOGISTICS, "name"), lease.nic),
        _element(qname(LOGISTICS, "MAC"), lease.mac),
        ip_config,
        _element(qname(LOGISTICS, "association"), lease.pool),
    )
