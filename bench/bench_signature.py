"""The cost of GSI Secure Message on a realistic request: a signed workspace ``create``.

The envelope is what a client sends to the factory: four WS-Addressing headers and a
Body holding the sample VirtualWorkspace metadata and deployment request (about 2 KB
unsigned). Sign = Timestamp, PkiPath token (user + proxy) and an RSA-SHA256 signature
over Body, Timestamp and the four headers, then serialize. Verify = hardened parse,
structure, chain (cached by DER after the first message), timestamp, digests,
signature and replay cache. The bare RSA operations are timed too, so the XML
overhead on top of them can be read off directly.
"""

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from common import timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from lxml import etree  # noqa: E402

from vws.clock import ManualClock  # noqa: E402
from vws.security import ca  # noqa: E402
from vws.security.proxy import create_proxy  # noqa: E402
from vws.security.trust import TrustStore  # noqa: E402
from vws.security.validation import ChainValidator  # noqa: E402
from vws.security.wssecurity.signing import MessageSigner  # noqa: E402
from vws.security.wssecurity.verification import MessageVerifier  # noqa: E402
from vws.xmlns import SOAP_ENV, TYPES, WORKSPACE, WSA, WSA_ANONYMOUS  # noqa: E402
from vws.xmlparse import parse  # noqa: E402

COUNT = 2000
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SAMPLES = ROOT / "etc" / "samples"


def create_request() -> bytes:
    """A factory ``create`` envelope built from the samples in etc/samples (comments dropped)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV, "wsa": WSA})
    header = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
    headers = {
        "To": "https://vws.example.org:8443/wsrf/services/WorkspaceFactoryService",
        "Action": f"{WORKSPACE}/WorkspaceFactoryPortType/createRequest",
        "MessageID": "uuid:5f0c1c0e-0000-4000-8000-000000000001",
    }
    for name, text in headers.items():
        etree.SubElement(header, f"{{{WSA}}}{name}").text = text
    etree.SubElement(etree.SubElement(header, f"{{{WSA}}}ReplyTo"), f"{{{WSA}}}Address").text = WSA_ANONYMOUS
    create = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{{{WORKSPACE}}}create")
    for sample, tag in (("workspace.xml", "metadata"), ("deployment-request.xml", "resourceRequest")):
        document = etree.parse(str(SAMPLES / sample), etree.XMLParser(remove_comments=True, remove_blank_text=True))
        part = document.getroot()
        part.tag = f"{{{TYPES}}}{tag}"
        create.append(part)
    return etree.tostring(envelope)


def report(name: str, latencies: list[float]) -> float:
    ordered = sorted(latencies)
    p50, p99 = ordered[len(ordered) // 2] * 1e6, ordered[int(len(ordered) * 0.99) - 1] * 1e6
    print(f"{name:<42} p50 {p50:8.1f} us  p99 {p99:8.1f} us  {len(ordered) / sum(ordered):8.0f} ops/s")
    return p50


def main() -> None:
    clock = ManualClock(NOW)
    request = create_request()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca.init(root, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), hostname="bench.example")
        dev = ca.DevCA(root)
        proxy = create_proxy(dev.user(), clock)
        signer = MessageSigner(proxy, clock)
        trust = TrustStore(dev.trust_dir)

        def sign() -> bytes:
            return etree.tostring(signer.sign(etree.fromstring(request)))

        print(f"create envelope: {len(request)} bytes unsigned, {len(sign())} signed (2-certificate PkiPath)")
        signed_info = b"<ds:SignedInfo>" + b"x" * 900 + b"</ds:SignedInfo>"
        rsa_sign = report("RSA-2048 sign alone", timed(lambda: proxy.key.sign(signed_info, *_PKCS1), COUNT))
        value = proxy.key.sign(signed_info, *_PKCS1)
        public = proxy.certificate.public_key()
        rsa_verify = report("RSA-2048 verify alone", timed(lambda: public.verify(value, signed_info, *_PKCS1), COUNT))

        signing = report("sign + serialize", timed(sign, COUNT))
        messages = iter([sign() for _ in range(COUNT + 50)])  # distinct signatures: the replay cache admits each
        verifier = MessageVerifier(trust, clock)
        verify = verifier.verify
        verifying = report("parse + verify (chain cached)", timed(lambda: verify(parse(next(messages))), COUNT))

        chains = iter([create_proxy(proxy, clock, key=proxy.key).chain for _ in range(250)])
        cold = ChainValidator(trust, clock)
        report("RFC 3820 chain validation (uncached)", timed(lambda: cold.validate(next(chains)), 200))

        both = MessageVerifier(trust, clock)
        report("sign + serialize + parse + verify", timed(lambda: both.verify(parse(sign())), COUNT))
        print(f"XML overhead over RSA: sign {signing - rsa_sign:.0f} us, verify {verifying - rsa_verify:.0f} us (p50)")


_PKCS1 = (padding.PKCS1v15(), hashes.SHA256())

if __name__ == "__main__":
    main()
