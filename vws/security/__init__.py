"""GSI security for vws: X.509 proxy credentials, trust, WS-Security signatures, TLS, grid-mapfile.

- ``credentials``: ``Credential`` (key + chain, leaf first, loaded once), ``oneline`` DNs, ``identity``
  (the one-line DN of a name that has only one reading).
- ``proxy``: RFC 3820 proxies (``create_proxy``, ``ProxyCertInfo``).
- ``trust``: ``TrustStore`` over an X509_CERT_DIR (CAs, signing policies, CRLs), ``subject_hash``.
- ``validation``: ``ChainValidator`` (``validate``, ``validate_der``) -> ``ValidatedChain``.
- ``wssecurity``: ``signing.MessageSigner``, ``verification.MessageVerifier`` -> ``VerifiedMessage``
  (what was digested), ``policy.SecurityPolicy``, ``replay.ReplayCache`` (in memory; the service
  keeps its own in the store), ``envelope`` (the parts they read, ``SignatureRefused``).
- ``gridmap``: ``GridMap`` (``accounts``, ``authorized``, ``require``, ``add``).
- ``tls``: server/client ``SSLContext`` with proxy certificates, ``peer_identity``.
- ``ca``: the development CA behind ``vws-admin ca init``.

Every refusal is an ``AuthenticationFailed`` (``UntrustedChain``, ``SignatureRefused``)
or a ``NotAuthorized``. Nothing here reads the wall clock: pass a ``Clock``.
"""
