"""Who may send a message, and which parts of it may be believed.

The gatekeeper sees the parsed envelope before dispatch and returns an Admission:
the caller's identity and the body and headers that its security checks covered.
The dispatcher reads nothing else, so an element slipped in beside a signed one
(signature wrapping) is never acted on. ``record`` remembers, across restarts, each
signed request that changes state before it is acted on; ``seal`` signs replies to
signed requests. Every refusal is logged once (``log_refusal``).
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from vws.errors import AuthenticationFailed, MalformedMessage, NotAuthorized, VwsError
from vws.security.gridmap import GridMap
from vws.security.wssecurity import envelope as wsse
from vws.security.wssecurity.replay import REPLAYED, SeenSignatures
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier, VerifiedMessage
from vws.soap.transport import PEER
from vws.workspace.caller import Caller
from vws.xmlns import WSSE, qname

log = logging.getLogger(__name__)

ANONYMOUS = Caller("<anonymous>")
_SECURITY = qname(WSSE, "Security")


@dataclass(frozen=True)
class Admission:
    caller: Caller
    body: etree._Element  # the payload element inside soapenv:Body
    headers: tuple[etree._Element, ...]  # the header elements that may be believed
    verified: VerifiedMessage | None = None  # when signed


class Gatekeeper(Protocol):
    def admit(self, envelope: etree._Element, environ: Mapping[str, object]) -> Admission: ...

    def record(self, admission: Admission, environ: Mapping[str, object]) -> None:
        """Before a request that changes state is acted on: refuse it if an earlier run accepted it."""

    def seal(self, envelope: etree._Element, admission: Admission) -> None: ...

    def sign(self, envelope: etree._Element) -> None:
        """Sign a message the service sends on its own (a notification), as it signs replies."""


def envelope_parts(envelope: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    """The Header (if any) and the Body of a SOAP 1.1 envelope, by the security layer's strict reading."""
    try:
        return wsse.envelope_parts(envelope)
    except wsse.SignatureRefused as wrong:  # no signature involved here: the envelope is malformed
        raise MalformedMessage(wrong.description) from None


def payload(body: etree._Element) -> etree._Element:
    elements = [child for child in body if isinstance(child.tag, str)]
    if len(elements) != 1:
        raise MalformedMessage("the Body must hold exactly one request element")
    return elements[0]


def log_refusal(refused: VwsError, caller: str | None, environ: Mapping[str, object]) -> None:
    """One line per refused message, so an administrator can see an attack: who (as far as known), why, from where.

    Only the refusal's description, a DN and an address: never the message, its signature or its token.
    """
    log.warning(
        "refused %s from %s: %s", caller or "an unknown caller", environ.get("REMOTE_ADDR", "?"), refused.description
    )


class OpenGate:
    """``--insecure``: every message is admitted, anonymously, and nothing is signed."""

    def admit(self, envelope: etree._Element, environ: Mapping[str, object]) -> Admission:
        header, body = envelope_parts(envelope)
        headers = tuple(child for child in header if isinstance(child.tag, str)) if header is not None else ()
        return Admission(ANONYMOUS, payload(body), headers)

    def record(self, admission: Admission, environ: Mapping[str, object]) -> None:
        pass

    def seal(self, envelope: etree._Element, admission: Admission) -> None:
        pass

    def sign(self, envelope: etree._Element) -> None:
        pass


class SignedGate:
    """GSI Secure Message: a valid X.509 signature from a grid-mapped identity, or nothing.

    The verifier returns the real Body and the header blocks its signature covers;
    only those reach the dispatcher. Replies to signed requests are signed with the
    service's host credential, so the client can check who answered.
    """

    def __init__(
        self,
        verifier: MessageVerifier,
        signer: MessageSigner,
        gridmap: GridMap,
        admins: frozenset[str],
        seen: SeenSignatures,
    ) -> None:
        """``seen``: the signatures of state-changing requests accepted by any run (vws.soap.replay)."""
        self._verifier = verifier
        self._signer = signer
        self._gridmap = gridmap
        self._admins = admins
        self._seen = seen

    def admit(self, envelope: etree._Element, environ: Mapping[str, object]) -> Admission:
        try:
            verified = self._verifier.verify(envelope)
        except AuthenticationFailed as refused:
            claimed = wsse.claimed_signer(envelope)
            log_refusal(refused, claimed and f"{claimed} (claimed)", environ)
            raise
        identity = verified.identity
        admin = identity in self._admins
        if not admin:
            _require_mapped(self._gridmap, identity, environ)
        caller = Caller(identity, admin=admin, limited=verified.chain.limited)
        return Admission(caller, payload(verified.body), verified.signed_headers, verified)

    def record(self, admission: Admission, environ: Mapping[str, object]) -> None:
        verified = admission.verified
        if verified is not None and not self._seen.admit(verified.signature_value, verified.replayable_until):
            refused = wsse.SignatureRefused(REPLAYED + " (before the service restarted)")
            log_refusal(refused, admission.caller.identity, environ)
            raise refused

    def seal(self, envelope: etree._Element, admission: Admission) -> None:
        if admission.verified is not None:
            self._signer.sign(envelope)

    def sign(self, envelope: etree._Element) -> None:
        """Each delivery attempt of a notification is signed afresh: a new Timestamp, a new signature."""
        header, _ = wsse.envelope_parts(envelope)
        for block in wsse.header_blocks(header):
            if block.tag == _SECURITY:
                header.remove(block)
        self._signer.sign(envelope)


class TransportGate(OpenGate):
    """GSI Transport: the caller is the identity the TLS handshake proved (see vws.soap.transport).

    The whole message is covered by the channel, so every element may be believed;
    replies travel back on the same authenticated channel and are not signed again.
    """

    def __init__(self, gridmap: GridMap, admins: frozenset[str]) -> None:
        self._gridmap = gridmap
        self._admins = admins

    def admit(self, envelope: etree._Element, environ: Mapping[str, object]) -> Admission:
        peer = environ.get(PEER)
        if peer is None:  # the TLS adapter logged why, when a certificate was presented
            raise NotAuthorized("this service requires a TLS client certificate from a trusted CA")
        admin = peer.identity in self._admins
        if not admin:
            _require_mapped(self._gridmap, peer.identity, environ)
        opened = super().admit(envelope, environ)
        return Admission(Caller(peer.identity, admin=admin, limited=peer.limited), opened.body, opened.headers)


def _require_mapped(gridmap: GridMap, identity: str, environ: Mapping[str, object]) -> None:
    try:
        gridmap.require(identity)
    except NotAuthorized as refused:
        log_refusal(refused, identity, environ)
        raise
