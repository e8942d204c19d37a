"""GSI Secure Message: WS-Security 1.0 X.509 signatures on SOAP 1.1 envelopes, one module per concern.

- ``signing``: ``MessageSigner`` adds a signed ``wsse:Security`` header to an envelope.
- ``verification``: ``MessageVerifier`` -> ``VerifiedMessage``, each signed element as digested.
- ``replay``: ``ReplayCache`` (in memory), the ``SeenSignatures`` the verifier consults last.
- ``policy``: ``SecurityPolicy`` (hashes accepted, headers that must be signed, freshness) and the
  algorithm URIs; ``methods`` reads ``[security] signature_hashes``.
- ``envelope``: the envelope's parts as WS-Security names them (``envelope_parts``,
  ``header_blocks``), exclusive c14n, PkiPath tokens, ``SignatureRefused``.
"""
