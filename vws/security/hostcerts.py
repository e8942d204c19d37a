"""Host certificates for context members, issued by the service's development CA and revoked in its CRL.

A member that requires the data ``vws-hostcert`` is given, once its context is complete, a
certificate and key for its leased hostname (``CN=host/<hostname>`` under the CA's host
OU, that name as subjectAltName, for client and server use, valid until its lease ends).
Destroying the workspace revokes it: the CA's CRL, ``<hash>.r0`` in the trust directory
where openssl -CApath and the GT4 tools look, lists every certificate revoked so far
(kept, a serial and its revocation time a line, in ``ca/revoked``). The CRL is written at the first issue too,
so that a -crl_check verification finds one for the CA before anything is revoked.
"""

import threading
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from vws.clock import Clock
from vws.security.ca import HOST_OU, DevCA, issue
from vws.security.credentials import Credential, key_pem
from vws.security.trust import subject_hash

_CRL_LIFETIME = timedelta(days=365)  # rewritten at every issue and revocation


class HostCertificates:
    def __init__(self, ca: Credential, ca_dir: Path, trust_dir: Path, clock: Clock) -> None:
        self._ca = ca
        self._revoked_file = ca_dir / "revoked"
        self._crl_file = trust_dir / f"{subject_hash(ca.certificate.subject)}.r0"
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def of(cls, dev: DevCA, clock: Clock) -> "HostCertificates | None":
        """The development CA's issuer, or None when ``vws-admin ca init`` made none."""
        cert, key = dev.root / "ca" / "cacert.pem", dev.root / "ca" / "cakey.pem"
        if not (cert.exists() and key.exists()):
            return None
        return cls(Credential.load(cert, key), dev.root / "ca", dev.trust_dir, clock)

    def issue(self, hostname: str, until: datetime) -> tuple[str, str]:
        """A certificate and key for ``hostname`` valid until ``until``: (serial in hex, PEM of both)."""
        days = max((until - self._clock.now()) / timedelta(days=1), 1 / 1440)  # a lease just ending: a minute
        credential = issue(
            self._ca, f"{HOST_OU}/CN=host/{hostname}", self._clock, days=days, server=True, dns_names=(hostname,)
        )
        with self._lock:
            if not self._crl_file.exists():
                self._write_crl(self._revoked())
        pem = credential.certificate.public_bytes(Encoding.PEM).decode() + key_pem(credential.key).decode()
        return format(credential.certificate.serial_number, "x"), pem

    def revoke(self, serials: list[str]) -> None:
        with self._lock:
            revoked = self._revoked()
            now = self._clock.now()
            revoked.update((serial, now) for serial in serials if serial not in revoked)
            self._revoked_file.write_text("".join(f"{serial} {when.isoformat()}\n" for serial, when in revoked.items()))
            self._write_crl(revoked)

    def _revoked(self) -> dict[str, datetime]:
        if not self._revoked_file.exists():
            return {}
        lines = (line.split() for line in self._revoked_file.read_text().splitlines() if line.strip())
        return {serial: datetime.fromisoformat(when) for serial, when in lines}

    def _write_crl(self, revoked: dict[str, datetime]) -> None:
        now = self._clock.now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._ca.certificate.subject)
            .last_update(now)
            .next_update(now + _CRL_LIFETIME)
        )
        for serial, when in revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(when).build()
            )
        crl = builder.sign(self._ca.key, hashes.SHA256())
        self._crl_file.write_bytes(crl.public_bytes(Encoding.PEM))
