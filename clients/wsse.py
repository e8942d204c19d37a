"""zeep WS-Security plugin for GSI Secure Message, the client half of ``vws.security.wssecurity``.

    from clients.wsse import GsiSecureMessage
    client = zeep.Client(wsdl, wsse=GsiSecureMessage.from_files(proxy_file, trust_dir))

zeep runs its egress plugins (our WS-Addressing 2004/03 headers) *before* the
``wsse`` hook, so ``apply`` sees and signs the Body, a fresh Timestamp, every
WS-Addressing header and every resource key header (WorkspaceKey, SubscriptionKey...);
zeep's stock ``BinarySignature`` signs only Body and Timestamp. ``verify``
checks signed replies against the trust directory -- not against our own
certificate as zeep's stock verifier does -- and, when asked, that the signer is
the expected service (``-z host`` / ``--factory-id``). zeep then reads the Body
and signed headers as they were digested, put in place of what arrived (see
``vws.security.wssecurity``: a namespace binding outside the signature is gone).
An unsigned SOAP Fault is let through for zeep to raise: the service cannot sign
the refusal of a request it could not authenticate, and a fault only ever fails a
call, so the user sees the reason.
"""

import os
from pathlib import Path

from lxml import etree

from vws.clock import Clock, SystemClock
from vws.errors import AuthenticationFailed
from vws.security.credentials import Credential
from vws.security.trust import TrustStore
from vws.security.wssecurity.envelope import envelope_parts, header_blocks
from vws.security.wssecurity.policy import DEFAULT_POLICY, SecurityPolicy, required_headers
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier, VerifiedMessage
from vws.xmlns import SOAP_ENV, WSSE, WSU

_SECURITY = f"{{{WSSE}}}Security"
_FAULT = f"{{{SOAP_ENV}}}Fault"
_WSU_ID = f"{{{WSU}}}Id"


class GsiSecureMessage:
    def __init__(
        self,
        credential: Credential,
        trust: TrustStore | None,
        clock: Clock | None = None,
        *,
        policy: SecurityPolicy = DEFAULT_POLICY,
        server_identity: str | None = None,
        require_signed_replies: bool = True,
    ) -> None:
        self.clock = clock or SystemClock()
        self.policy = policy
        self.signer = MessageSigner(credential, self.clock)
        self.verifier = MessageVerifier(trust, self.clock, policy) if trust is not None else None
        self.server_identity = server_identity
        self.require_signed_replies = require_signed_replies
        self.last_reply: VerifiedMessage | None = None

    @classmethod
    def from_files(
        cls, proxy_file: str | os.PathLike, trust_dir: str | os.PathLike | None, **options
    ) -> "GsiSecureMessage":
        """A proxy file (cert, key, chain) and an X509_CERT_DIR; loaded once."""
        return cls(Credential.load(proxy_file), TrustStore(Path(trust_dir)) if trust_dir else None, **options)

    # zeep's wsse interface -----------------------------------------------------------------------

    def apply(self, envelope: etree._Element, headers: dict) -> tuple[etree._Element, dict]:
        self.signer.sign(envelope, also_sign=required_headers(envelope, self.policy))
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        self.last_reply = None
        if self.verifier is None:
            return envelope
        header, body = envelope_parts(envelope)
        unsigned = all(block.tag != _SECURITY for block in header_blocks(header))
        if unsigned and (not self.require_signed_replies or body.find(_FAULT) is not None):
            return envelope  # reported, never trusted: see the module docstring
        verified = self.verifier.verify(envelope)
        if self.server_identity is not None and verified.identity != self.server_identity:
            raise AuthenticationFailed(
                f"the reply was signed by {verified.identity}, not by the expected service {self.server_identity}"
            )
        _read_as_verified(envelope, verified)
        self.last_reply = verified
        return envelope


def _read_as_verified(envelope: etree._Element, verified: VerifiedMessage) -> None:
    """zeep reads ``envelope`` after ``verify`` (ignoring what it returns): give it the verified elements."""
    header, body = envelope_parts(envelope)
    envelope.replace(body, verified.body)
    signed = {block.get(_WSU_ID): block for block in verified.signed_headers}
    for block in header_blocks(header):
        if block.get(_WSU_ID) in signed:
            header.replace(block, signed[block.get(_WSU_ID)])
