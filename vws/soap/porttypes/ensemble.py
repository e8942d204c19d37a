"""The WorkspaceEnsembleService port type: ``done``, ``report`` and Destroy.

``report`` lists each member's EPR, state, schedule and networking; with
``returnOnlyIfErrorPresent`` and/or ``returnOnlyIfAllAtState`` it lists nothing
until one of the conditions asked for holds (a member is Corrupted, or all are at
that state), which is what a client monitoring an ensemble polls for.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from vws.errors import MalformedMessage
from vws.soap import codec, faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import (
    ENSEMBLE_KEY,
    ENSEMBLE_SERVICE,
    Endpoints,
    custom_operation,
    resource_key,
    wsrf_operation,
)
from vws.workspace.ensembles import Ensembles, all_at, any_corrupted
from vws.workspace.records import Workspace
from vws.wsrf import lifetime
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import ENSEMBLE, TYPES, WSRL, WSRL_ACTION, qname


class EnsemblePortType:
    service = ENSEMBLE_SERVICE

    def __init__(self, ensembles: Ensembles, endpoints: Endpoints) -> None:
        self._ensembles = ensembles
        self._endpoints = endpoints

    def operations(self) -> Sequence[Operation]:
        port = "WorkspaceEnsemblePortType"
        table = faults.ENSEMBLE_OPERATION
        return [
            custom_operation(port, "done", qname(ENSEMBLE, "done"), self.done, table),
            custom_operation(port, "report", qname(ENSEMBLE, "report"), self.report, table),
            wsrf_operation(WSRL_ACTION, WSRL, "Destroy", self.destroy, faults.DESTROY),
        ]

    def done(self, call: Call) -> etree._Element:
        self._ensembles.done(call.caller, resource_key(call, ENSEMBLE_KEY))
        return etree.Element(qname(ENSEMBLE, "doneResponse"))

    def report(self, call: Call) -> etree._Element:
        members = self._ensembles.members(call.caller, resource_key(call, ENSEMBLE_KEY))
        response = etree.Element(qname(ENSEMBLE, "reportResponse"), nsmap={"ens": ENSEMBLE, **codec.NSMAP})
        if _wanted(call.body, members):
            response.extend(self._entry(member) for member in members)
        return response

    def destroy(self, call: Call) -> etree._Element:
        self._ensembles.destroy(call.caller, resource_key(call, ENSEMBLE_KEY))
        return lifetime.destroy_response()

    def _entry(self, member: Workspace) -> etree._Element:
        # reportResponse_Type is a work-types type, as in GT4: its children are work-types elements.
        entry = etree.Element(qname(TYPES, "report"))
        entry.append(self._endpoints.workspace(member.id).to_element(qname(TYPES, "epr")))
        entry.append(codec.current_state(member))
        entry.append(codec.schedule(member))
        entry.append(codec.networking(member.leases))
        return entry


@dataclass(frozen=True)
class Membership:
    """What a create request says about ensembles: join ``key`` (None: a new one), then maybe done."""

    key: str | None
    done: bool


def membership(create: etree._Element) -> Membership | None:
    """partOfEnsemble / ensembleEPR / ensembleDone of a create body; None outside any ensemble."""
    reference = create.find(qname(TYPES, "ensembleEPR"))
    if not _true(create.find(qname(TYPES, "partOfEnsemble"))) and reference is None:
        return None
    key = None
    if reference is not None:
        try:
            key = EndpointReference.from_element(reference).key(ENSEMBLE_KEY)
        except ValueError as exc:
            raise MalformedMessage(f"bad ensembleEPR: {exc}") from None
    return Membership(key, _true(create.find(qname(TYPES, "ensembleDone"))))


def _true(element: etree._Element | None) -> bool:
    return element is not None and (element.text or "").strip() in ("true", "1")


def _wanted(request: etree._Element, members: list[Workspace]) -> bool:
    conditions = []
    if _true(request.find(qname(TYPES, "returnOnlyIfErrorPresent"))):
        conditions.append(any_corrupted(members))
    state = (request.findtext(qname(TYPES, "returnOnlyIfAllAtState")) or "").strip()
    if state:
        conditions.append(all_at(members, state))
    return not conditions or any(conditions)
