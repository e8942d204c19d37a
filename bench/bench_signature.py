"""The bare cost of GSI Secure Message: sign and verify a realistic GetResourceProperty envelope.

Sign = add Timestamp, token and an RSA-SHA256 signature over Body, Timestamp, three
WS-Addressing headers and the WorkspaceKey (proxy chain as X509PKIPathv1), then
serialize. Verify = parse the bytes with the hardened parser, check structure,
chain (cached by DER after the first message), timestamp, digests, signature and
replay cache. This is the floor under a signed request/response (issue #3 target:
a signed GetResourceProperty p50 under 2 ms; GT4 Java WS Core measured 183 ms).
"""

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from common import report, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree  # noqa: E402

from vws.clock import ManualClock  # noqa: E402
from vws.security import ca  # noqa: E402
from vws.security.proxy import create_proxy  # noqa: E402
from vws.security.trust import TrustStore  # noqa: E402
from vws.security.validation import ChainValidator  # noqa: E402
from vws.security.wssecurity import MessageSigner, MessageVerifier, ReplayCache  # noqa: E402
from vws.xmlns import SOAP_ENV, WORKSPACE, WSA, WSRP  # noqa: E402
from vws.xmlparse import parse  # noqa: E402

COUNT = 2000
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

REQUEST = f"""<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:wsa="{WSA}">
  <soapenv:Header>
    <wsa:To>https://vws.example.org:8443/wsrf/services/WorkspaceService</wsa:To>
    <wsa:Action>http://docs.oasis-open.org/wsrf/2004/06/wsrf-WS-ResourceProperties/GetResourceProperty</wsa:Action>
    <wsa:MessageID>uuid:5f0c1c0e-0000-4000-8000-000000000001</wsa:MessageID>
    <work:WorkspaceKey xmlns:work="{WORKSPACE}">1042</work:WorkspaceKey>
  </soapenv:Header>
  <soapenv:Body>
    <wsrp:GetResourceProperty xmlns:wsrp="{WSRP}" xmlns:work="{WORKSPACE}">work:CurrentState</wsrp:GetResourceProperty>
  </soapenv:Body>
</soapenv:Envelope>""".encode()


def main() -> None:
    clock = ManualClock(NOW)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca.init(root, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), hostname="bench.example")
        dev = ca.DevCA(root)
        proxy = create_proxy(dev.user(), clock)
        signer = MessageSigner(proxy, clock)
        trust = TrustStore(dev.trust_dir)
        print(f"envelope {len(REQUEST)} bytes unsigned, ", end="")

        def sign() -> bytes:
            return etree.tostring(signer.sign(etree.fromstring(REQUEST)))

        sample = sign()
        print(f"{len(sample)} bytes signed (2-certificate PkiPath)")
        results = {"sign": report("sign + serialize", timed(sign, COUNT))}

        messages = iter([sign() for _ in range(COUNT + 50)])
        verifier = MessageVerifier(trust, clock, replay_cache=ReplayCache(clock))
        results["verify"] = report(
            "parse + verify (chain cached)", timed(lambda: verifier.verify(parse(next(messages))), COUNT)
        )

        chains = [create_proxy(proxy, clock, key=proxy.key).chain for _ in range(250)]
        fresh = iter(chains)
        cold = ChainValidator(trust, clock)
        results["chain"] = report(
            "RFC 3820 chain validation (uncached)", timed(lambda: cold.validate(next(fresh)), 200)
        )

        pairs = iter([None] * (COUNT + 50))
        both = MessageVerifier(ChainValidator(trust, clock), clock, replay_cache=ReplayCache(clock))

        def round_trip() -> None:
            next(pairs)
            both.verify(parse(sign()))

        results["round_trip"] = report("sign + serialize + parse + verify", timed(round_trip, COUNT))
        ok = results["round_trip"]["p50_ms"] < 2.0
        print(f"target: sign+verify p50 < 2 ms: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
