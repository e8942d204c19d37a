"""What a port type is to the SOAP edge: operations keyed by body element.

A port type lists its Operations; each names the request element that selects it,
the WS-Addressing action of its reply, the handler, and the faults it may answer.
Handlers take a Call (the verified message and caller) and return the response
body element. Nothing here depends on spyne.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from vws.soap.faults import FaultTable
from vws.workspace.caller import Caller
from vws.wsrf.addressing import MessageHeaders


@dataclass(frozen=True)
class Call:
    """One admitted request: its verified body and headers, and who sent it."""

    service: str
    body: etree._Element
    headers: MessageHeaders
    caller: Caller

    def key(self, tag: str) -> str | None:
        """The resource key the client echoed from the EPR's ReferenceProperties."""
        return self.headers.property(tag)


Handler = Callable[[Call], etree._Element]


@dataclass(frozen=True)
class Operation:
    name: str  # the WSDL operation name
    request: str  # Clark QName of the body element that selects it
    action: str  # wsa:Action of the request
    reply_action: str  # wsa:Action of the response
    handler: Handler
    faults: FaultTable
    # False for reads: a signed request is then not recorded against replay across restarts (vws.soap.replay).
    changes_state: bool = True


class PortType(Protocol):
    service: str  # the service name under /wsrf/services/

    def operations(self) -> Sequence[Operation]: ...
