"""The WorkspaceFactoryService port type: ``create`` and the factory's resource properties."""

from collections.abc import Callable, Sequence
from datetime import timedelta

from lxml import etree

from vws.context.broker import ContextBroker
from vws.matching import PoolOffer, Vmm, jsdl_name
from vws.soap import availability, codec, faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.catalog import appliance_elements
from vws.soap.porttypes.common import FACTORY_SERVICE, Endpoints, custom_operation, property_operations
from vws.soap.porttypes.context import Joining, joining, with_bootstrap
from vws.soap.porttypes.ensemble import membership
from vws.workspace.appliances import Entry
from vws.workspace.caller import Caller
from vws.workspace.ensembles import Ensembles
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.wsrf import properties
from vws.xmlns import APPLIANCES, DEFINITION, JSDL, RESOURCES, TYPES, WORKSPACE, XSI, qname


class FactoryPortType:
    service = FACTORY_SERVICE

    def __init__(
        self,
        manager: WorkspaceManager,
        endpoints: Endpoints,
        policy_default: timedelta,
        policy_maximum: timedelta,
        associations: Callable[[], list[str]],
        ensembles: Ensembles,
        offer: Callable[[], PoolOffer],
        catalogue: Callable[[], list[Entry]],
        contexts: ContextBroker,
    ) -> None:
        self._manager = manager
        self._endpoints = endpoints
        self._default = policy_default
        self._maximum = policy_maximum
        self._associations = associations
        self._ensembles = ensembles
        self._offer = offer
        self._catalogue = catalogue
        self._contexts = contexts

    def operations(self) -> Sequence[Operation]:
        return [
            custom_operation(
                "WorkspaceFactoryPortType", "create", qname(WORKSPACE, "create"), self.create, faults.CREATE
            ),
            custom_operation(
                "WorkspaceFactoryPortType",
                "availability",
                qname(RESOURCES, "availability"),
                self.availability,
                faults.AVAILABILITY,
            ),
            *property_operations(self._document),
        ]

    def availability(self, call: Call) -> etree._Element:
        """vws's own: the earliest windows a request would fit (see vws.soap.availability)."""
        machine, duration, start, count = availability.question(call.body)
        return availability.answer(self._manager.availability(machine, duration, start, count))

    def create(self, call: Call) -> etree._Element:
        request = codec.parse_create(call.body)
        context = joining(call.body)
        if context is not None:  # its members carry the context's bootstrap on their config drive
            credentials = self._contexts.credentials(call.caller, context.key, context.spec)
            request = with_bootstrap(request, credentials, self._endpoints.agent_url)
        ensemble = membership(call.body)
        if ensemble is None:
            created, ensemble_key = self._manager.create(call.caller, request), None
        else:
            joined = self._ensembles.join(call.caller, request, ensemble.key, ensemble.done)
            created, ensemble_key = joined.created, joined.key
        if context is not None:
            self._join(call.caller, context, created)
        response = etree.Element(qname(WORKSPACE, "createResponse"), nsmap={"types": TYPES})
        response.extend(self._created(workspace) for workspace in created)
        group_key = created[0].group_key
        for name, reference in (
            ("GroupEPR", group_key and self._endpoints.group(group_key)),
            ("EnsembleEPR", ensemble_key and self._endpoints.ensemble(ensemble_key)),
            ("ContextEPR", context and self._endpoints.context(context.key)),
        ):
            if reference:
                response.append(reference.to_element(qname(TYPES, name)))
            else:
                etree.SubElement(response, qname(TYPES, name)).set(qname(XSI, "nil"), "true")
        return response

    def _join(self, caller: Caller, context: Joining, created: list[Workspace]) -> None:
        """Expect the new workspaces in the context; if it refuses them now (locked meanwhile), none stays."""
        try:
            self._contexts.join(caller, context.key, created, context.spec, context.lock)
        except Exception:
            for workspace in created:
                self._manager.destroy(caller, workspace.id)
            raise

    def _created(self, workspace: Workspace) -> etree._Element:
        created = etree.Element(qname(TYPES, "CreatedWorkspace"))
        created.append(self._endpoints.workspace(workspace.id).to_element(qname(TYPES, "epr")))
        created.append(codec.schedule(workspace))
        created.append(codec.networking(workspace.leases))
        return created

    def _document(self, call: Call) -> properties.PropertyDocument:
        return properties.PropertyDocument(
            qname(WORKSPACE, "FactoryRPSet"),
            {
                qname(TYPES, "DefaultRunningTime"): lambda: [
                    _text(qname(TYPES, "DefaultRunningTime"), codec.format_duration(self._default))
                ],
                qname(TYPES, "MaximumRunningTime"): lambda: [
                    _text(qname(TYPES, "MaximumRunningTime"), codec.format_duration(self._maximum))
                ],
                qname(JSDL, "CPUArchitectureName"): self._architecture_property,
                qname(TYPES, "Associations"): self._association_property,
            },
            {"types": TYPES, "jsdl": JSDL, "def": DEFINITION},
            # Read by name only: the document stays as stock clients' beans read it (one
            # architecture, a VMM typed Xen or VMware), while a pool may offer several kinds;
            # app:appliance is each appliance of the catalogue (ApplianceCatalogService).
            {
                qname(DEFINITION, "VMM"): self._vmm_property,
                qname(APPLIANCES, "offer"): self._offer_property,
                qname(APPLIANCES, "appliance"): lambda: appliance_elements(self._catalogue()),
            },
        )

    def _architecture_property(self) -> list[etree._Element]:
        """The native architecture of the most nodes, in JSDL's words (the schema allows one)."""
        kinds = sorted(self._offer().kinds, key=lambda kind: (-kind.nodes, kind.architectures))
        return [_text(qname(JSDL, "CPUArchitectureName"), jsdl_name(kinds[0].architectures[0]))] if kinds else []

    def _vmm_property(self) -> list[etree._Element]:
        vmms = dict.fromkeys(vmm for kind in self._offer().kinds for vmm in kind.vmms)
        return [_vmm(qname(DEFINITION, "VMM"), DEFINITION, vmm) for vmm in vmms]

    def _offer_property(self) -> list[etree._Element]:
        """The VMM requirements every node answers to, then each kind of node: its architectures,
        hypervisors, the largest memory and CPUs one workspace gets there, the networks it
        reaches and how many such nodes there are."""
        offer = etree.Element(qname(APPLIANCES, "offer"), nsmap={"app": APPLIANCES})
        pool = self._offer()
        offer.extend(_vmm(qname(APPLIANCES, "legacyVmm"), APPLIANCES, vmm) for vmm in pool.legacy)
        for kind in pool.kinds:
            element = etree.SubElement(offer, qname(APPLIANCES, "kind"), nodes=str(kind.nodes))
            for arch in kind.architectures:
                etree.SubElement(element, qname(APPLIANCES, "architecture")).text = arch
            element.extend(_vmm(qname(APPLIANCES, "vmm"), APPLIANCES, vmm) for vmm in kind.vmms)
            etree.SubElement(element, qname(APPLIANCES, "memoryMB")).text = str(kind.memory_mb)
            etree.SubElement(element, qname(APPLIANCES, "cpus")).text = str(kind.cpus)
            for network in sorted(kind.networks):
                etree.SubElement(element, qname(APPLIANCES, "association")).text = network
        return [offer]

    def _association_property(self) -> list[etree._Element]:
        associations = etree.Element(qname(TYPES, "Associations"), nsmap={"types": TYPES})
        for name in self._associations():
            etree.SubElement(associations, qname(TYPES, "association")).text = name
        return [associations]


def _vmm(tag: str, namespace: str, vmm: Vmm) -> etree._Element:
    element = etree.Element(tag)
    etree.SubElement(element, qname(namespace, "type")).text = vmm.type
    for version in vmm.versions:
        etree.SubElement(element, qname(namespace, "version")).text = version
    return element


def _text(tag: str, text: str) -> etree._Element:
    element = etree.Element(tag)
    element.text = text
    return element
