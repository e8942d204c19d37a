"""What the client tools report in one line, without a traceback.

A ClientError is a VwsError, so each tool's ``main`` catches one root: the tool's own
refusals and what the shared vws code raises (a reply whose signature fails, say).
"""

from vws.errors import VwsError


class ClientError(VwsError):
    """A failure of the client's own: a file it cannot read, a command it cannot carry out."""
