"""One exception root for everything vws refuses or fails to do.

Each subclass names *what went wrong*, not which SOAP fault carries it: the same
unknown key is a WorkspaceUnknownFault on ``start`` and a ResourceUnknownFault on
``GetResourceProperty``. ``vws/soap`` maps (operation, error class) to the fault
its WSDL declares, once, at the edge.
"""


class VwsError(Exception):
    """Base of every error a caller can be told about."""

    def __init__(self, description: str, *, cause: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.cause = cause


class MalformedMessage(VwsError):
    """The bytes are not a SOAP message we are willing to read."""


class VersionMismatch(MalformedMessage):
    """An envelope of another SOAP version (SOAP 1.1 section 4.4.1: faultcode VersionMismatch)."""


class WrongDestination(MalformedMessage):
    """The message's wsa:To names another endpoint than the one that received it (or none, when signed)."""


class InvalidMetadata(VwsError):
    """The VirtualWorkspace metadata or deployment request is wrong or incomplete."""


class RequestDenied(VwsError):
    """Policy or authorization refuses the request (duration, memory, quota, identity)."""


class SchedulingFailed(VwsError):
    """No node, address or image can satisfy the request right now."""


class UnknownResource(VwsError):
    """No resource has this key, or the caller may not know that it has."""


class IllegalState(VwsError):
    """The operation is not allowed in the resource's current state."""


class OperationDisabled(VwsError):
    """The workspace's lease has not begun or has already ended."""


class Unsupported(VwsError):
    """A known request that this service deliberately does not implement."""


class InvalidPropertyName(VwsError):
    """A resource property QName that the resource does not publish."""


class InvalidQuery(VwsError):
    """A QueryResourceProperties expression that cannot be evaluated."""


class QueryEvaluationFailed(VwsError):
    """A well-formed query that failed while being evaluated (unknown function, wrong types)."""


class UnknownQueryDialect(VwsError):
    """A query dialect other than XPath 1.0."""


class InvalidTerminationTime(VwsError):
    """A requested termination time that policy or the clock rules out."""


class BackendError(VwsError):
    """The hypervisor refused or failed an operation on a domain."""


class Cancelled(VwsError):
    """Work on a workspace was abandoned because the workspace is being destroyed."""


class AuthenticationFailed(VwsError):
    """The message's signature, credentials or timestamp could not be trusted."""


class NotAuthorized(VwsError):
    """The authenticated caller may not use this service."""
