"""The WorkspaceStatusService port type: what the caller has, and what it has used.

``queryCurrentWorkspaces`` lists only the caller's own workspaces (all of them for
an administrator), the oldest first and at most ``limit`` of them: one answer's memory
is bounded however many workspaces live (GT4 had no limit; its answer holds about
1.3 KB per workspace). ``queryUsedAndReservedTime`` gives the minutes its ended
workspaces used and its live ones hold, as durations; the one resource property
is the charge granularity in minutes.
"""

import copy
import functools
import logging
from collections.abc import Sequence
from datetime import timedelta

from lxml import etree

from vws.soap import codec, faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import STATUS_SERVICE, Endpoints, custom_operation, property_operations
from vws.workspace.accounting import Accounting
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.wsrf import properties
from vws.xmlns import STATUS, qname

log = logging.getLogger(__name__)


class StatusPortType:
    service = STATUS_SERVICE

    def __init__(self, manager: WorkspaceManager, accounting: Accounting, endpoints: Endpoints, limit: int = 0) -> None:
        """``limit``: the most workspaces one queryCurrentWorkspaces lists; 0 for all."""
        self._manager = manager
        self._accounting = accounting
        self._endpoints = endpoints
        self._limit = limit
        # Clients poll: the same entries are asked for again and again. Each is rendered once per
        # committed snapshot (frozen, so a changed workspace is a new key); the answer gets copies.
        self._entry = functools.lru_cache(maxsize=256)(self._one)

    def operations(self) -> Sequence[Operation]:
        port = "WorkspaceStatusPortType"
        return [
            custom_operation(
                port,
                "queryCurrentWorkspaces",
                qname(STATUS, "queryCurrentWorkspaces"),
                self.current,
                faults.STATUS_QUERY,
            ),
            custom_operation(
                port, "queryUsedAndReservedTime", qname(STATUS, "queryUsedAndReserved"), self.used, faults.STATUS_QUERY
            ),
            *property_operations(self._document),
        ]

    def current(self, call: Call) -> etree._Element:
        response = etree.Element(qname(STATUS, "currentWorkspaces"), nsmap={"status": STATUS, **codec.NSMAP})
        found = self._manager.workspaces(call.caller, self._limit + 1 if self._limit else None)
        if self._limit and len(found) > self._limit:
            log.warning(
                "queryCurrentWorkspaces for %s lists the oldest %d of more: [policy] max_listed_workspaces",
                call.caller.identity,
                self._limit,
            )
        response.extend(copy.deepcopy(self._entry(workspace)) for workspace in found[: self._limit or None])
        return response

    def used(self, call: Call) -> etree._Element:
        usage = self._accounting.usage(call.caller.identity)
        response = etree.Element(qname(STATUS, "usedAndReservedTime"), nsmap={"status": STATUS})
        for name, minutes in (("usedTime", usage.used_minutes), ("reservedTime", usage.reserved_minutes)):
            etree.SubElement(response, qname(STATUS, name)).text = codec.format_duration(timedelta(minutes=minutes))
        return response

    def _one(self, workspace: Workspace) -> etree._Element:
        entry = etree.Element(qname(STATUS, "oneCurrentWorkspace"))
        entry.append(self._endpoints.workspace(workspace.id).to_element(qname(STATUS, "epr")))
        entry.extend(
            [
                codec.current_state(workspace),
                codec.schedule(workspace),
                codec.resource_allocation(workspace),
                codec.logistics(workspace),
            ]
        )
        return entry

    def _document(self, call: Call) -> properties.PropertyDocument:
        return properties.PropertyDocument(
            qname(STATUS, "StatusRPSet"),
            {qname(STATUS, "chargeGranularity"): self._charge_granularity},
            {"status": STATUS},
        )

    def _charge_granularity(self) -> list[etree._Element]:
        element = etree.Element(qname(STATUS, "chargeGranularity"), nsmap={"status": STATUS})
        element.text = str(self._accounting.granularity)
        return [element]
