"""GSI Transport for the HTTP server: TLS with proxy client certificates.

The server terminates TLS with vws's server context (proxy certificates allowed, CAs
from the trust directory) and adds one WSGI environ entry per connection: the caller's
grid identity, taken from the chain the handshake verified and run through vws's own
RFC 3820 validation.
"""

import logging
import ssl
from dataclasses import dataclass

from vws.errors import AuthenticationFailed
from vws.security import tls
from vws.security.validation import ChainValidator

log = logging.getLogger(__name__)

PEER = "vws.peer"  # the WSGI environ key holding a tls.PeerIdentity, or None


@dataclass(frozen=True)
class TransportSecurity:
    cert_file: str
    key_file: str
    trust_dir: str
    validator: ChainValidator


class GsiTransport:
    """A vws.soap.server.TlsTermination: the server context, and each connection's verified caller."""

    def __init__(self, security: TransportSecurity) -> None:
        self.context = tls.server_context(security.cert_file, security.key_file, security.trust_dir)
        self._validator = security.validator

    def environ(self, ssl_object: ssl.SSLObject) -> dict[str, object]:
        try:
            return {PEER: tls.peer_identity(ssl_object, self._validator)}
        except AuthenticationFailed as refused:
            log.warning("TLS peer refused: %s", refused.description)
            return {PEER: None}
