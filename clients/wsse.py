"""zeep WS-Security plugin for GSI Secure Message, the client half of ``vws.security.wssecurity``.

    from clients.wsse import GsiSecureMessage
    client = zeep.Client(wsdl, wsse=GsiSecureMessage.from_files(proxy_file, trust_dir))

zeep runs its egress plugins (our WS-Addressing 2004/03 headers) *before* the
``wsse`` hook, so ``apply`` sees and signs the Body, a fresh Timestamp, every
WS-Addressing header and every workspace-namespace header (the resource key);
zeep's stock ``BinarySignature`` signs only Body and Timestamp. ``verify``
checks signed replies against the trust directory -- not against our own
certificate as zeep's stock verifier does -- and, when asked, that the signer is
the expected service (``-z host`` / ``--factory-id``).
"""

import os
from pathlib import Path

from lxml import etree

from vws.clock import Clock, SystemClock
from vws.errors import AuthenticationFailed
from vws.security.credentials import Credential
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator
from vws.security.wssecurity import (
    DEFAULT_POLICY,
    MessageSigner,
    MessageVerifier,
    ReplayCache,
    SecurityPolicy,
    VerifiedMessage,
    required_headers,
)
from vws.xmlns import SOAP_ENV


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
        self.verifier = (
            MessageVerifier(ChainValidator(trust, self.clock), self.clock, policy, ReplayCache(self.clock))
            if trust is not None
            else None
        )
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
        if self.verifier is None:
            return envelope
        unsigned = envelope.find(".//{*}Security") is None
        if unsigned and envelope.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault") is not None:
            # A refusal before the service knew who we are (bad signature, unknown DN) cannot be
            # signed; a fault carries nothing to act on, so it is reported, not trusted.
            self.last_reply = None
            return envelope
        if not self.require_signed_replies and unsigned:
            self.last_reply = None
            return envelope
        verified = self.verifier.verify(envelope)
        if self.server_identity is not None and verified.identity != self.server_identity:
            raise AuthenticationFailed(
                f"the reply was signed by {verified.identity}, not by the expected service {self.server_identity}"
            )
        self.last_reply = verified
        return envelope
