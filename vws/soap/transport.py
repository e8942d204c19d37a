"""GSI Transport for the HTTP server: TLS with proxy client certificates.

cheroot's built-in TLS adapter, given vws's server context (proxy certificates
allowed, CAs from the trust directory), and one more WSGI environ entry per
connection: the caller's grid identity, taken from the chain the handshake
verified and run through vws's own RFC 3820 validation.
"""

import logging
from dataclasses import dataclass

from cheroot.ssl.builtin import BuiltinSSLAdapter

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


class GsiTransportAdapter(BuiltinSSLAdapter):
    def __init__(self, security: TransportSecurity) -> None:
        super().__init__(security.cert_file, security.key_file)
        self.context = tls.server_context(security.cert_file, security.key_file, security.trust_dir)
        self._validator = security.validator

    def get_environ(self, sock) -> dict:  # type: ignore[no-untyped-def]
        environ = super().get_environ(sock)
        try:
            environ[PEER] = tls.peer_identity(sock, self._validator)
        except AuthenticationFailed as refused:
            log.warning("TLS peer refused: %s", refused.description)
            environ[PEER] = None
        return environ
