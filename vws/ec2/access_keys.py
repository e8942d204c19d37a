"""Access keys: an id and a secret per grid identity, the secret encrypted at rest.

SigV4 is an HMAC keyed by the secret, so the service needs the secret itself to verify a
request: a hash, as kept for passwords, would not do. It is sealed with AES-256-GCM under
a key that lives in its own file (``[ec2] secrets_key``, mode 0600), never in the
database, with the key id and identity as associated data, so a copy of the database (a
backup, a dump) reveals no secret and a sealed secret moved to another row does not open.
Whoever can read both the key file and the database can recover every secret: that is
the service's own trust boundary, as the host key is for the SOAP side.
"""

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vws.clock import Clock, timestamp
from vws.config import ConfigError, Ec2Config
from vws.errors import UnknownResource
from vws.store import rows
from vws.store.database import Store

_KEY_BYTES = 32
_NONCE_BYTES = 12


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    identity: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class IssuedKey:
    access_key_id: str
    secret: str  # shown once, to the administrator who issued it
    identity: str


class SecretsKey:
    """The AES-GCM key that seals the secrets, read from (or made in) its own file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, config: Ec2Config, state_dir: Path) -> "SecretsKey":
        """``[ec2] secrets_key``, else ``<state_dir>/ec2-secrets.key``."""
        return cls(config.secrets_key or state_dir / "ec2-secrets.key")

    def load(self, create: bool = False) -> AESGCM | None:
        """The key; None when the file does not exist and ``create`` is false (no key issued yet)."""
        if not self.path.exists():
            if not create:
                return None
            self._write(secrets.token_bytes(_KEY_BYTES))
        key = self.path.read_bytes()
        if len(key) != _KEY_BYTES:
            raise ConfigError(f"{self.path}: not an EC2 secrets key ({_KEY_BYTES} bytes)", ("ec2", "secrets_key"))
        return AESGCM(key)

    def _write(self, key: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key)


class AccessKeys:
    def __init__(self, store: Store, clock: Clock, secrets_key: SecretsKey) -> None:
        self._store = store
        self._clock = clock
        self._secrets_key = secrets_key
        self._cipher: AESGCM | None = None

    def create(self, identity: str) -> IssuedKey:
        cipher = self._secrets_key.load(create=True)
        assert cipher is not None
        key_id = "AKIA" + base64.b32encode(secrets.token_bytes(10)).decode()
        secret = base64.b64encode(secrets.token_bytes(30)).decode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + cipher.encrypt(nonce, secret.encode(), _bound(key_id, identity))
        row = {"access_key_id": key_id, "identity": identity, "sealed_secret": sealed}
        with self._store.transaction() as db:
            db.table("ec2_access_keys").insert({**row, "created_at": timestamp(self._clock.now())})
        return IssuedKey(key_id, secret, identity)

    def list(self) -> list[AccessKey]:
        with self._store.reading() as db:
            found = rows.select(db, "select * from ec2_access_keys order by created_at, access_key_id")
        return [AccessKey(r["access_key_id"], r["identity"], r["created_at"], r["revoked_at"]) for r in found]

    def revoke(self, key_id: str) -> None:
        with self._store.transaction() as db:
            cursor = db.execute(
                "update ec2_access_keys set revoked_at = ? where access_key_id = ? and revoked_at is null",
                [timestamp(self._clock.now()), key_id],
            )
            if cursor.rowcount != 1:
                raise UnknownResource(f"no access key {key_id} that is not already revoked")

    def secret(self, key_id: str) -> tuple[str, str] | None:
        """(identity, secret) of a key in force; None for an unknown or revoked one."""
        with self._store.reading() as db:
            row = rows.one(db, "select * from ec2_access_keys where access_key_id = ? and revoked_at is null", [key_id])
        cipher = self._cipher or self._secrets_key.load()
        if row is None or cipher is None:
            return None
        self._cipher = cipher
        sealed = bytes(row["sealed_secret"])  # type: ignore[arg-type]
        try:
            secret = cipher.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _bound(key_id, row["identity"]))
        except InvalidTag:  # another key file, or a row tampered with
            return None
        return str(row["identity"]), secret.decode()


def _bound(key_id: str, identity: object) -> bytes:
    return f"{key_id}\n{identity}".encode()
