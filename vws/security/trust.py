"""Trusted CAs from a directory in the ``X509_CERT_DIR`` layout.

``<hash>.N`` holds a CA certificate (PEM), ``<hash>.signing_policy`` the Globus
EACL that limits which subjects that CA may sign, ``<hash>.rN`` a CRL (PEM or
DER). Files are matched to CAs by the certificate inside, not by the hash in the
name, so a stale hash never hides a CA. ``refresh`` re-reads when the directory
or any file in it changes; ``generation`` tells caches to drop their results.
"""

import fnmatch
import hashlib
import logging
import os
import re
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from vws.security import der
from vws.security.credentials import oneline

log = logging.getLogger(__name__)

_CERT_FILE = re.compile(r"^[0-9a-f]{8}\.\d+$")
_CRL_FILE = re.compile(r"^[0-9a-f]{8}\.r\d+$")
_POLICY_FILE = re.compile(r"^[0-9a-f]{8}\.signing_policy$")


@dataclass(frozen=True)
class SigningPolicy:
    """``access_id_CA X509 '<CA DN>'`` / ``pos_rights globus CA:sign`` / ``cond_subjects globus '"pattern" ...'``."""

    ca_dn: str
    subjects: tuple[str, ...]

    def allows(self, subject_dn: str) -> bool:
        return any(_glob(pattern, subject_dn) for pattern in self.subjects)


def _glob(pattern: str, text: str) -> bool:
    # Globus patterns: '*' matches anything (including '/'), '?' one character. Case-sensitive.
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))


def parse_signing_policy(text: str) -> list[SigningPolicy]:
    """Every (CA DN, allowed subjects) pair granted CA:sign by globus in an EACL file."""
    policies: list[SigningPolicy] = []
    ca_dn: str | None = None
    rights = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if not words:
            continue
        keyword = words[0]
        if keyword == "access_id_CA" and len(words) >= 3 and words[1] == "X509":
            ca_dn, rights = words[2], False
        elif keyword == "pos_rights" and len(words) >= 3 and words[1] == "globus":
            rights = "CA:sign" in words[2:]
        elif keyword == "cond_subjects" and len(words) >= 3 and words[1] == "globus" and ca_dn is not None:
            if rights:
                policies.append(SigningPolicy(ca_dn, tuple(shlex.split(words[2]))))
        else:
            log.debug("signing policy: ignoring %r", line)
    return policies


@dataclass
class TrustAnchor:
    certificate: x509.Certificate
    path: Path
    dn: str
    policy: SigningPolicy | None = None
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)


class TrustStore:
    """The CAs a service or client trusts, read from one directory."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._by_subject: dict[bytes, list[TrustAnchor]] = {}
        self.generation = 0
        self.refresh()

    # -- loading ---------------------------------------------------------------------------

    def _fingerprint(self) -> tuple:
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except FileNotFoundError:
            return ()
        return tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries if e.is_file())

    def refresh(self) -> bool:
        """Re-read the directory if anything in it changed; True when it did."""
        stamp = self._fingerprint()
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            self._by_subject = self._load()
            self._stamp = stamp
            self.generation += 1
            return True

    def _load(self) -> dict[bytes, list[TrustAnchor]]:
        if not self.directory.is_dir():
            log.warning("trust directory %s does not exist: no CA is trusted", self.directory)
            return {}
        anchors = [anchor for path in ca_files(self.directory) for anchor in _read_anchors(path)]
        by_subject: dict[bytes, list[TrustAnchor]] = {}
        for anchor in anchors:
            by_subject.setdefault(anchor.certificate.subject.public_bytes(), []).append(anchor)
        for path in sorted(self.directory.iterdir()):
            if _POLICY_FILE.match(path.name):
                _attach_policies(path, anchors)
            elif _CRL_FILE.match(path.name):
                _attach_crl(path, by_subject)
        return by_subject

    # -- queries ---------------------------------------------------------------------------

    def anchors(self) -> list[TrustAnchor]:
        """Every trusted CA certificate read from the directory."""
        return [anchor for anchors in self._by_subject.values() for anchor in anchors]

    def issuers(self, cert: x509.Certificate) -> list[TrustAnchor]:
        """Trusted CAs whose subject is ``cert``'s issuer (several when a CA was re-keyed)."""
        return list(self._by_subject.get(cert.issuer.public_bytes(), ()))

    def anchor_for(self, cert: x509.Certificate) -> TrustAnchor | None:
        """The trust-store entry that *is* ``cert`` (a presented copy of a trusted CA)."""
        for anchor in self._by_subject.get(cert.subject.public_bytes(), ()):
            if anchor.certificate == cert:
                return anchor
        return None


def ca_files(directory: Path) -> list[Path]:
    """The ``<hash>.N`` CA certificate files of a trust directory, in name order."""
    return [directory / name for name in sorted(os.listdir(directory)) if _CERT_FILE.match(name)]


def _read_anchors(path: Path) -> list[TrustAnchor]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as exc:
        log.warning("trust directory: %s is not a PEM certificate (%s)", path, exc)
        return []
    return [TrustAnchor(cert, path, oneline(cert.subject)) for cert in certs]


def _attach_policies(path: Path, anchors: list[TrustAnchor]) -> None:
    """A ``<hash>.signing_policy`` binds the CAs of ``<hash>.N`` that it names, as the Globus tools read it."""
    stem = path.name.split(".")[0]
    for policy in parse_signing_policy(path.read_text(errors="replace")):
        for anchor in anchors:
            if anchor.dn == policy.ca_dn and anchor.path.name.split(".")[0] == stem:
                anchor.policy = _merge(anchor.policy, policy)


def _attach_crl(path: Path, by_subject: dict[bytes, list[TrustAnchor]]) -> None:
    crl = _load_crl(path)
    for anchor in by_subject.get(crl.issuer.public_bytes(), []) if crl is not None else ():
        anchor.crls.append(crl)


def _merge(old: SigningPolicy | None, new: SigningPolicy) -> SigningPolicy:
    return new if old is None else SigningPolicy(old.ca_dn, old.subjects + new.subjects)


def _load_crl(path: Path) -> x509.CertificateRevocationList | None:
    data = path.read_bytes()
    try:
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError as exc:
        log.warning("trust directory: %s is not a CRL (%s)", path, exc)
        return None


# -- OpenSSL's subject hash (X509_NAME_hash_ex), so files get the names the Globus tools look up --------

# String types OpenSSL canonicalises, with the codec it reads them in: every one-byte type as Latin-1.
_CANON_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString
    0x14: "latin-1",  # T61String
    0x16: "latin-1",  # IA5String
    0x1A: "latin-1",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_ASCII_SPACE = b" \t\n\v\f\r"
_SPACE_RUN = re.compile(rb"[ \t\n\v\f\r]+")


def subject_hash(name: x509.Name) -> str:
    """``openssl x509 -subject_hash``: SHA-1 of the canonical name encoding, first 4 bytes little-endian."""
    canon = b"".join(_canon_rdn(rdn) for rdn in der.sequence_of(name.public_bytes()))
    digest = hashlib.sha1(canon).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def _canon_rdn(rdn: bytes) -> bytes:
    _, attributes, _ = der.read(rdn)
    return der.tlv(0x31, b"".join(sorted(_canon_attribute(whole) for _, _, whole in der.elements(attributes))))


def _canon_attribute(attribute: bytes) -> bytes:
    """One AttributeTypeAndValue with a string value re-encoded as trimmed, space-collapsed, ASCII-lowercased UTF-8."""
    _, value, _ = der.read(attribute)
    (_, _, oid), (tag, text, whole) = der.elements(value)
    codec = _CANON_CODECS.get(tag)
    if codec is not None:
        utf8 = text.decode(codec).encode()
        whole = der.tlv(0x0C, _SPACE_RUN.sub(b" ", utf8.strip(_ASCII_SPACE)).lower())
    return der.tlv(der.SEQUENCE, oid + whole)
