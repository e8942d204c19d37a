"""One exception root for everything vws refuses or fails to do.

Each subclass names *what went wrong*, not which SOAP fault carries it: the same
unknown key is a WorkspaceUnknownFault on ``start`` and a ResourceUnknownFault on
``GetResourceProperty``. ``vws/soap`` maps (operation, error class) to the fault
its WSDL declares, once, at the edge. The SOAP faultcode is the class's own: Client
when the caller is at fault, Server otherwise (SOAP 1.1, 4.4.1), or the code a spec
gives the error. Configuration errors and the client tools' errors share this root,
so each command's ``main`` catches it once.
"""

from typing import ClassVar, NamedTuple

from vws.xmlns import SOAP_ENV, WSA


class FaultCode(NamedTuple):
    """A SOAP 1.1 faultcode QName, with the prefix it is written with."""

    prefix: str
    namespace: str
    local: str


CLIENT = FaultCode("soapenv", SOAP_ENV, "Client")
SERVER = FaultCode("soapenv", SOAP_ENV, "Server")


class VwsError(Exception):
    """Base of every error a caller can be told about."""

    fault_code: ClassVar[FaultCode] = SERVER

    def __init__(self, description: str, *, cause: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.cause = cause


class MalformedMessage(VwsError):
    """The bytes are not a SOAP message we are willing to read."""

    fault_code = CLIENT


class VersionMismatch(MalformedMessage):
    """An envelope of another SOAP version (SOAP 1.1 section 4.4.1: faultcode VersionMismatch)."""

    fault_code = FaultCode("soapenv", SOAP_ENV, "VersionMismatch")  # SOAP 1.1, 4.4.1


class WrongDestination(MalformedMessage):
    """The message's wsa:To names another endpoint than the one that received it (or none, when signed)."""

    fault_code = FaultCode("wsa", WSA, "DestinationUnreachable")  # WS-Addressing 2004/03, 5


class InvalidMetadata(VwsError):
    """The VirtualWorkspace metadata or deployment request is wrong or incomplete."""

    fault_code = CLIENT


class RequestDenied(VwsError):
    """Policy or authorization refuses the request (duration, memory, quota, identity)."""

    fault_code = CLIENT


class QuotaExceeded(RequestDenied):
    """The request would take the caller beyond one of its quotas."""


class SchedulingFailed(VwsError):
    """No node, address or image can satisfy the request right now."""


class UnknownResource(VwsError):
    """No resource has this key, or the caller may not know that it has."""

    fault_code = CLIENT


class IllegalState(VwsError):
    """The operation is not allowed in the resource's current state."""

    fault_code = CLIENT


class OperationDisabled(VwsError):
    """The workspace's lease has not begun or has already ended."""

    fault_code = CLIENT


class Unsupported(VwsError):
    """A known request that this service deliberately does not implement."""

    fault_code = CLIENT


class InvalidPropertyName(VwsError):
    """A resource property QName that the resource does not publish."""

    fault_code = CLIENT


class InvalidQuery(VwsError):
    """A QueryResourceProperties expression that cannot be evaluated."""

    fault_code = CLIENT


class QueryEvaluationFailed(VwsError):
    """A well-formed query that failed while being evaluated (unknown function, wrong types)."""

    fault_code = CLIENT


class UnknownQueryDialect(VwsError):
    """A query dialect other than XPath 1.0."""

    fault_code = CLIENT


class InvalidTerminationTime(VwsError):
    """A requested termination time that policy or the clock rules out."""

    fault_code = CLIENT


class BackendError(VwsError):
    """The hypervisor refused or failed an operation on a domain."""


class Cancelled(VwsError):
    """Work on a workspace was abandoned because the workspace is being destroyed."""


class AuthenticationFailed(VwsError):
    """The message's signature, credentials or timestamp could not be trusted."""

    fault_code = CLIENT


class NotAuthorized(VwsError):
    """The authenticated caller may not use this service."""

    fault_code = CLIENT
