"""Who is asking: the value every door (SOAP today, EC2 next) hands the workspace layer."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The grid identity (end-entity DN) the security layer verified, and what it may do."""

    identity: str
    admin: bool = False
    limited: bool = False


# The service itself, acting on every workspace (recovery, reconciliation, expiry).
SERVICE = Caller("vws-service", admin=True)
