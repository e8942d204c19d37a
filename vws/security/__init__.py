"""GSI security for vws: X.509 proxy credentials, trust, WS-Security signatures, TLS, grid-mapfile.

- ``credentials``: ``Credential`` (key + chain, leaf first), ``oneline`` DNs.
- ``proxy``: RFC 3820 proxies (``create_proxy``, ``ProxyCertInfo``).
- ``trust`` / ``validation``: ``TrustStore`` over an X509_CERT_DIR, ``ChainValidator`` -> ``ValidatedChain``.
- ``wssecurity``: ``MessageSigner``, ``MessageVerifier`` -> ``VerifiedMessage``, ``SecurityPolicy``, ``ReplayCache``.
- ``gridmap``: ``GridMap`` (``accounts``, ``authorized``, ``require``).
- ``tls``: server/client ``SSLContext`` with proxy certificates, ``peer_identity``.
- ``ca``: the development CA behind ``vws-admin ca init``.

Every refusal is an ``AuthenticationFailed`` (``UntrustedChain``, ``SignatureRefused``)
or a ``NotAuthorized``. Nothing here reads the wall clock: pass a ``Clock``.
"""
