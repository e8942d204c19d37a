"""Short-lived signed links to the status page, for administrators whose browser holds no grid credential.

``vws-admin status-url`` runs on the service host, reads the link key from the state dir
(made once, readable by the service's user only) and prints a URL naming an admin DN and
an expiry, with an HMAC-SHA256 over both. Whoever can read the key can already read the
whole store, so a link grants nothing new. The service checks, on every request, that the
signature holds, the link has not expired, its lifetime is within ``MAX_LIFETIME``, and
the DN is still in ``[security] admin_dns`` (removing a DN revokes its links).
"""

import hashlib
import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from vws.clock import Clock

KEY_FILE = "status-link.key"
MAX_LIFETIME = timedelta(hours=1)
_KEY_BYTES = 32


def link_key(state_dir: Path) -> bytes:
    """The state dir's link key, made on first use (mode 0600)."""
    path = state_dir / KEY_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(_KEY_BYTES)
    with os.fdopen(descriptor, "w") as file:
        file.write(key.hex() + "\n")
    return key


class StatusLinks:
    def __init__(self, key: bytes, clock: Clock, admins: frozenset[str]) -> None:
        self._key = key
        self._clock = clock
        self._admins = admins

    def mint(self, dn: str, lifetime: timedelta) -> str:
        """The query string of a link for ``dn``, valid for ``lifetime`` from now."""
        if dn not in self._admins:
            raise ValueError(f"{dn} is not in [security] admin_dns")
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError(f"a link lives at most {MAX_LIFETIME}")
        until = int((self._clock.now() + lifetime).timestamp())
        return urlencode({"dn": dn, "until": until, "sig": self._signature(dn, until)})

    def admin(self, query: str) -> tuple[str | None, str]:
        """The admin DN a link's query string proves, or None; and why not, when not."""
        fields = parse_qs(query, max_num_fields=4)
        dn, until, signature = (fields.get(name, [""])[0] for name in ("dn", "until", "sig"))
        if not (dn and until.isdigit() and signature):
            return None, "no signed link"
        if not hmac.compare_digest(signature, self._signature(dn, int(until))):
            return None, "the link's signature does not hold"
        left = int(until) - self._clock.now().timestamp()
        if left <= 0:
            return None, "the link has expired"
        if left > MAX_LIFETIME.total_seconds():
            return None, "the link claims to live longer than any link may"
        if dn not in self._admins:
            return None, f"{dn} is no longer an admin"
        return dn, ""

    def _signature(self, dn: str, until: int) -> str:
        return hmac.new(self._key, f"vws-status\n{dn}\n{until}".encode(), hashlib.sha256).hexdigest()
