"""EC2 error codes: what the door answers when a request is refused or fails.

An Ec2Error carries its EC2 code and HTTP status. Errors of the workspace layer (VwsError
subclasses) are translated once, in ``from_vws``, so an EC2 client sees EC2's code for
what went wrong; nothing reaches the client as a 500 with a traceback.
"""

from vws.errors import (
    IllegalState,
    InvalidMetadata,
    NotAuthorized,
    OperationDisabled,
    QuotaExceeded,
    RequestDenied,
    SchedulingFailed,
    UnknownResource,
    Unsupported,
    VwsError,
)


class Ec2Error(VwsError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def auth_failure(message: str) -> Ec2Error:
    return Ec2Error("AuthFailure", message, 401)


def invalid_parameter(message: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", message)


def missing_parameter(name: str) -> Ec2Error:
    return Ec2Error("MissingParameter", f"the request must contain the parameter {name}")


def unsupported(message: str) -> Ec2Error:
    return Ec2Error("UnsupportedOperation", message)


# The most specific class first: QuotaExceeded is a RequestDenied.
_CODES: tuple[tuple[type[VwsError], str], ...] = (
    (QuotaExceeded, "InstanceLimitExceeded"),
    (SchedulingFailed, "InsufficientInstanceCapacity"),
    (IllegalState, "IncorrectInstanceState"),
    (OperationDisabled, "IncorrectInstanceState"),
    (InvalidMetadata, "InvalidParameterValue"),
    (RequestDenied, "UnauthorizedOperation"),
    (Unsupported, "UnsupportedOperation"),
    (NotAuthorized, "AuthFailure"),
    (UnknownResource, "InvalidInstanceID.NotFound"),  # the door's only resources are instances
)


def from_vws(error: VwsError) -> Ec2Error:
    """The EC2 error for an error of the layers below (a server-side failure otherwise)."""
    if isinstance(error, Ec2Error):
        return error
    for kind, code in _CODES:
        if isinstance(error, kind):
            return Ec2Error(code, error.description)
    return Ec2Error("InternalError", error.description, 500)
