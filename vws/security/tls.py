"""GSI Transport: TLS with X.509 proxy client certificates.

OpenSSL checks the handshake (``VERIFY_ALLOW_PROXY_CERTS`` makes it accept RFC
3820 proxies as client certificates, with their name and path-length rules). It
does not know limited proxies, signing policies or our CRL policy, and the
identity we want is the *end entity* behind the proxies, which the leaf alone
does not name. So after the handshake:

1. When the peer's verified chain is available (CPython 3.10-3.12 have the
   private ``_sslobj.get_verified_chain()``; 3.13 made it public), that chain is
   run through our own ``ChainValidator``: full RFC 3820 rules, limited
   detection, identity = end-entity subject.
2. Otherwise only the leaf is known (``getpeercert(binary_form=True)``). A leaf
   without ProxyCertInfo is itself the end entity. For a proxy leaf, OpenSSL has
   verified that its subject is its issuer's subject plus one CN and that its
   issuer is a proxy or an end entity; the only name we can state soundly is the
   leaf's *issuer* DN. For a single proxy that is the end entity's DN. For a
   proxy of a proxy it is the upper proxy's DN (``.../CN=Jane/CN=123``), which no
   grid-mapfile lists unless a CA issued end entities named like another's proxies,
   so the caller is refused rather than misidentified: stripping more CNs could
   turn an end entity named ``.../CN=Jane/CN=x`` into ``.../CN=Jane``. The limited
   flag read from a single proxy's leaf is exact; for deeper chains the identity
   already fails closed.

The contexts load the ``<hash>.N`` CAs of the trust directory; its CRLs and signing
policies are applied by ``ChainValidator`` in step 1.
"""

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from vws.errors import AuthenticationFailed
from vws.security.credentials import AmbiguousName, identity, oneline
from vws.security.proxy import LIMITED, proxy_cert_info
from vws.security.trust import ca_files
from vws.security.validation import ChainValidator


@dataclass(frozen=True)
class PeerIdentity:
    identity: str
    limited: bool
    leaf: x509.Certificate
    chain_validated: bool  # True when the whole chain went through ChainValidator


def server_context(
    cert_file: str | Path, key_file: str | Path, trust_dir: str | Path, *, require_client_cert: bool = True
) -> ssl.SSLContext:
    """A TLS server context: host credential, CAs from the trust directory, proxy client certs allowed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    _load_trust(context, Path(trust_dir))
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return context


def client_context(
    credential_file: str | Path,
    trust_dir: str | Path,
    *,
    key_file: str | Path | None = None,
    check_hostname: bool = False,
) -> ssl.SSLContext:
    """A TLS client context presenting a proxy file (cert, key, chain) or a cert/key pair.

    GSI authorizes the server by its host DN (``-z host``), not by hostname matching;
    check ``server_identity`` after connecting. ``check_hostname`` is available for plain HTTPS peers.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    _load_trust(context, Path(trust_dir))
    # load_cert_chain reads the leaf, then the rest of the file as the chain: a grid-proxy-init file works as is.
    context.load_cert_chain(str(credential_file), str(key_file or credential_file))
    return context


def _load_trust(context: ssl.SSLContext, trust_dir: Path) -> None:
    files = ca_files(trust_dir) if trust_dir.is_dir() else []
    if not files:
        raise ValueError(f"no CA certificate (<hash>.N) in {trust_dir}")
    for path in files:
        context.load_verify_locations(cafile=str(path))


def peer_chain(sock: ssl.SSLSocket | ssl.SSLObject) -> tuple[x509.Certificate, ...] | None:
    """The verified peer chain, leaf first, when this Python can tell it; None otherwise."""
    sslobj = getattr(sock, "_sslobj", sock)
    getter = getattr(sock, "get_verified_chain", None) or getattr(sslobj, "get_verified_chain", None)
    if getter is None:
        return None
    try:
        chain = getter()
    except (AttributeError, ValueError, ssl.SSLError):
        return None
    if not chain:
        return None
    certs = []
    for cert in chain:
        der = cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER)  # noqa: SLF001
        certs.append(x509.load_der_x509_certificate(der))
    return tuple(certs)


def peer_identity(sock: ssl.SSLSocket | ssl.SSLObject, validator: ChainValidator | None = None) -> PeerIdentity:
    """Who is on the other end of a TLS connection that OpenSSL verified (see the module docstring)."""
    leaf_der = sock.getpeercert(binary_form=True)
    if not leaf_der:
        raise AuthenticationFailed("the TLS peer presented no certificate")
    leaf = x509.load_der_x509_certificate(leaf_der)
    if validator is not None:
        chain = peer_chain(sock)
        if chain:
            if chain[0] != leaf:
                raise AuthenticationFailed("the verified TLS chain does not start with the peer's certificate")
            result = validator.validate(chain)  # OpenSSL's chain ends with the trusted CA: the validator stops there
            return PeerIdentity(result.identity, result.limited, leaf, True)
    return identity_from_leaf(leaf)


def identity_from_leaf(leaf: x509.Certificate) -> PeerIdentity:
    """The end-entity DN that can be stated soundly from a leaf OpenSSL verified (see the module docstring)."""
    try:
        found = proxy_cert_info(leaf)
    except ValueError:
        raise AuthenticationFailed(f"malformed ProxyCertInfo in {oneline(leaf.subject)}") from None
    try:
        if found is None:
            return PeerIdentity(identity(leaf.subject), False, leaf, False)
        info, _ = found
        return PeerIdentity(identity(leaf.issuer), info.policy_language == LIMITED, leaf, False)
    except AmbiguousName as ambiguous:
        raise AuthenticationFailed(str(ambiguous)) from None
