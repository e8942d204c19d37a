"""CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair: SSH keys a RunInstances can name.

Only the public key is kept. A created pair's private key is in the answer and nowhere
else. Fingerprints as EC2 computes them: the SHA-1 of the private key (PKCS#8 DER) for a
created RSA pair, the MD5 of the public key (DER) for an imported one; SHA-256 for ed25519.
"""

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from vws.ec2.actions.door import Action, Door
from vws.ec2.errors import Ec2Error, invalid_parameter
from vws.ec2.query import Data, Params
from vws.ec2.records import KeyPair
from vws.workspace.caller import Caller

_OPENSSH = (serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
_DER_PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def actions(door: Door) -> Mapping[str, Action]:
    return {
        "CreateKeyPair": Action(lambda caller, params: create(door, caller, params), changes_state=True),
        "ImportKeyPair": Action(lambda caller, params: import_(door, caller, params), changes_state=True),
        "DescribeKeyPairs": Action(lambda caller, params: describe(door, caller, params), changes_state=False),
        "DeleteKeyPair": Action(lambda caller, params: delete(door, caller, params), changes_state=True),
    }


def create(door: Door, caller: Caller, params: Params) -> Data:
    name = params.required("KeyName")
    kind = params.get("KeyType") or "rsa"
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        der = private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fingerprint = _colons(hashlib.sha1(der).digest())  # noqa: S324 (EC2's fingerprint, not a security use)
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        fingerprint = _sha256(private.public_key().public_bytes(*_OPENSSH))
    else:
        raise invalid_parameter(f"KeyType must be rsa or ed25519, not {kind!r}")
    pair = _add(door, caller, name, private.public_key().public_bytes(*_OPENSSH).decode(), fingerprint)
    return {**_listed(pair), "keyMaterial": pem.decode()}


def import_(door: Door, caller: Caller, params: Params) -> Data:
    name = params.required("KeyName")
    try:
        text = base64.b64decode(params.required("PublicKeyMaterial"), validate=True)
        if b"\n" in text.strip():
            raise ValueError("one key, on one line")
        public = serialization.load_ssh_public_key(text)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, UnsupportedAlgorithm):
        raise invalid_parameter("PublicKeyMaterial must be an OpenSSH public key (ssh-rsa or ssh-ed25519)") from None
    if isinstance(public, rsa.RSAPublicKey):
        fingerprint = _colons(hashlib.md5(public.public_bytes(*_DER_PUBLIC)).digest())  # noqa: S324 (EC2's)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        fingerprint = _sha256(public.public_bytes(*_OPENSSH))
    else:
        raise invalid_parameter("only RSA and ed25519 keys may be imported")
    return _listed(_add(door, caller, name, text.decode().strip(), fingerprint))  # as given, comment and all


def describe(door: Door, caller: Caller, params: Params) -> Data:
    pairs = door.records.key_pairs(caller.identity)
    wanted = params.each("KeyName")
    missing = [name for name in wanted if name not in {pair.name for pair in pairs}]
    if missing:
        raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{missing[0]}' does not exist")
    return {"keySet": [_listed(pair) for pair in pairs if not wanted or pair.name in wanted]}


def delete(door: Door, caller: Caller, params: Params) -> Data:
    door.records.delete_key_pair(caller.identity, params.required("KeyName"))  # as EC2: no error if it is not there
    return {"return": True}


def _add(door: Door, caller: Caller, name: str, public_key: str, fingerprint: str) -> KeyPair:
    if not 1 <= len(name) <= 255:
        raise invalid_parameter("KeyName must be 1 to 255 characters")
    pair = KeyPair(name, "key-" + secrets.token_hex(8), fingerprint, public_key)
    if not door.records.add_key_pair(caller.identity, pair):
        raise Ec2Error("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.")
    return pair


def _listed(pair: KeyPair) -> Data:
    return {"keyPairId": pair.key_pair_id, "keyName": pair.name, "keyFingerprint": pair.fingerprint}


def _colons(digest: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in digest)


def _sha256(openssh: bytes) -> str:
    blob = base64.b64decode(openssh.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
