"""GSI Secure Message: WS-Security X.509 signatures, freshness, replay and signature wrapping."""

import base64
import copy
import dataclasses
import random
import shutil
import subprocess
import threading
import tracemalloc
from datetime import timedelta

import pytest
import xmlsec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from tests import security_helpers
from tests.security_helpers import NOW, USER_DN, request, wire
from vws.clock import ManualClock, timestamp
from vws.errors import AuthenticationFailed
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator, UntrustedChain
from vws.security.wssecurity.envelope import SignatureRefused
from vws.security.wssecurity.policy import (
    DEFAULT_POLICY,
    HASH_METHODS,
    RSA_SHA1,
    RSA_SHA256,
    SHA1,
    SHA256,
    SecurityPolicy,
    methods,
)
from vws.security.wssecurity.replay import SLOTS, ReplayCache
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier
from vws.xmlns import DS, EXC_C14N, SOAP_ENV, WORKSPACE, WSA, WSSE, WSU, X509_PKIPATH, X509V3

keys = security_helpers.keys  # session fixtures
pki = security_helpers.pki

NS = {"soapenv": SOAP_ENV, "wsa": WSA, "wsse": WSSE, "wsu": WSU, "ds": DS, "work": WORKSPACE}


@pytest.fixture
def clock():
    return ManualClock(NOW)


@pytest.fixture
def proxy(pki):
    return pki.proxy()


@pytest.fixture
def verifier(pki, clock):
    return MessageVerifier(TrustStore(pki.trust_dir), clock)


@pytest.fixture
def signed(proxy, clock):
    return wire(MessageSigner(proxy, clock).sign(request()))


def resign(envelope: etree._Element, key, method=hashes.SHA256) -> etree._Element:
    """Recompute the SignatureValue after editing SignedInfo: the structural checks must not rely on crypto."""
    signed_info = envelope.find(".//ds:SignedInfo", NS)
    value = key.sign(etree.tostring(signed_info, method="c14n", exclusive=True), padding.PKCS1v15(), method())
    envelope.find(".//ds:SignatureValue", NS).text = base64.b64encode(value).decode()
    return envelope


def retarget(envelope: etree._Element, element: etree._Element, uri: str, key) -> etree._Element:
    """Point the first Reference at ``element`` with a correct digest, and re-sign: only the target is wrong."""
    reference = envelope.find(".//ds:Reference", NS)
    reference.set("URI", uri)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(etree.tostring(element, method="c14n", exclusive=True))
    reference.find("ds:DigestValue", NS).text = base64.b64encode(digest.finalize()).decode()
    return resign(envelope, key)


def as_digested(element, prefixes=("work",)) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, inclusive_ns_prefixes=list(prefixes))


def body_payload(envelope):
    return envelope.find("soapenv:Body", NS)[0]


# -- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, token", [("proxy", X509_PKIPATH), ("user", X509V3)])
def test_round_trip(pki, clock, verifier, who, token):
    credential = pki.proxy() if who == "proxy" else pki.user
    envelope = wire(MessageSigner(credential, clock).sign(request()))
    assert envelope.find(".//wsse:BinarySecurityToken", NS).get("ValueType") == token
    security = envelope.find("soapenv:Header/wsse:Security", NS)
    assert security.get(f"{{{SOAP_ENV}}}mustUnderstand") == "1"
    verified = verifier.verify(envelope)
    assert verified.identity == USER_DN and not verified.limited
    assert as_digested(verified.body) == as_digested(envelope.find("soapenv:Body", NS))
    header = [h for h in envelope.find("soapenv:Header", NS) if h.tag != f"{{{WSSE}}}Security"]
    assert [as_digested(h) for h in verified.signed_headers] == [as_digested(h) for h in header]
    assert verified.created == NOW and verified.expires == NOW + timedelta(minutes=5)


def test_prefixes_used_in_text_are_signed_with_their_bindings(pki, proxy, clock, verifier):
    envelope = wire(MessageSigner(proxy, clock).sign(request()))
    inclusive = envelope.findall(f".//ds:Reference/ds:Transforms/ds:Transform/{{{EXC_C14N}}}InclusiveNamespaces", NS)
    assert [element.get("PrefixList") for element in inclusive] == ["work"]  # Body: work:CurrentState
    rebound = wire(
        etree.fromstring(
            etree.tostring(envelope).replace(f'xmlns:work="{WORKSPACE}">work:'.encode(), b'xmlns:work="urn:x">work:')
        )
    )
    with pytest.raises(SignatureRefused, match="digest of .*Body does not match"):
        verifier.verify(rebound)
    assert verifier.verify(envelope).body[0].nsmap["work"] == WORKSPACE


def test_a_binding_left_out_of_the_digest_is_left_out_of_the_message(pki, proxy, clock, verifier):
    """Signed without InclusiveNamespaces, xmlns:work is outside the digest: the verified Body does not bind it."""
    envelope = wire(MessageSigner(proxy, clock).sign(request()))
    for inclusive in envelope.iter(f"{{{EXC_C14N}}}InclusiveNamespaces"):
        inclusive.getparent().remove(inclusive)
    body = envelope.find("soapenv:Body", NS)
    retarget(envelope, body, "#" + body.get(f"{{{WSU}}}Id"), proxy.key)
    payload = verifier.verify(envelope).body[0]
    assert payload.text == "work:CurrentState" and "work" not in payload.nsmap


def test_inclusive_default_namespace_is_refused_by_name(pki, proxy, clock, verifier):
    envelope = wire(MessageSigner(proxy, clock).sign(request()))
    envelope.find(f".//{{{EXC_C14N}}}InclusiveNamespaces").set("PrefixList", "work #default")
    with pytest.raises(SignatureRefused, match="#default is not supported"):
        verifier.verify(resign(envelope, proxy.key))


def test_limited_proxy_is_reported(pki, clock, verifier):
    envelope = wire(MessageSigner(pki.proxy(limited=True), clock).sign(request()))
    assert verifier.verify(envelope).limited


def test_signer_covers_only_what_it_is_told(pki, proxy, clock):
    envelope = wire(MessageSigner(proxy, clock).sign(request(), also_sign=()))
    with pytest.raises(SignatureRefused, match="does not cover the .*To"):
        MessageVerifier(TrustStore(pki.trust_dir), clock).verify(envelope)
    relaxed = SecurityPolicy(require_addressing=False, require_workspace_headers=False)
    verified = MessageVerifier(TrustStore(pki.trust_dir), clock, relaxed).verify(envelope)
    assert verified.signed_headers == ()  # headers present but unsigned are not handed over


@pytest.mark.parametrize("missing", ["addressing", "workspace"])
def test_each_coverage_switch(pki, proxy, clock, missing):
    envelope = request()
    header = envelope.find("soapenv:Header", NS)
    keep = [h for h in header if (etree.QName(h).namespace == WSA) != (missing == "addressing")]
    envelope = wire(MessageSigner(proxy, clock).sign(envelope, also_sign=keep))
    strict = MessageVerifier(TrustStore(pki.trust_dir), clock)
    with pytest.raises(SignatureRefused, match="does not cover"):
        strict.verify(copy.deepcopy(envelope))
    policy = SecurityPolicy(
        require_addressing=missing != "addressing", require_workspace_headers=missing != "workspace"
    )
    verified = MessageVerifier(TrustStore(pki.trust_dir), clock, policy).verify(envelope)
    assert [h.tag for h in verified.signed_headers] == [h.tag for h in keep]


# -- refusals ----------------------------------------------------------------------------------------


def test_unsigned_is_refused(verifier):
    with pytest.raises(SignatureRefused, match="not signed"):
        verifier.verify(request())


def test_security_header_without_signature(signed, verifier):
    signature = signed.find(".//ds:Signature", NS)
    signature.getparent().remove(signature)
    with pytest.raises(SignatureRefused, match="no ds:Signature"):
        verifier.verify(signed)


@pytest.mark.parametrize(
    "tamper, reason",
    [
        ("body text", "digest of .*Body"),
        ("body attribute", "digest of .*Body"),
        ("header", "digest of .*To"),
        ("workspace key", "digest of .*WorkspaceKey"),
        ("timestamp", "digest of .*Timestamp"),
        ("signature value", "signature value does not verify"),
        ("signed info", "signature value does not verify"),
    ],
)
def test_tampering_is_refused(signed, verifier, tamper, reason):
    if tamper == "body text":
        body_payload(signed).text = "work:Everything"
    elif tamper == "body attribute":
        body_payload(signed).set("extra", "1")
    elif tamper == "header":
        signed.find("soapenv:Header/wsa:To", NS).text = "https://evil.example/"
    elif tamper == "workspace key":
        signed.find("soapenv:Header/work:WorkspaceKey", NS).text = "43"
    elif tamper == "timestamp":
        signed.find(".//wsu:Expires", NS).text = timestamp(NOW + timedelta(minutes=4))
    elif tamper == "signature value":
        value = bytearray(base64.b64decode(signed.find(".//ds:SignatureValue", NS).text))
        value[10] ^= 1
        signed.find(".//ds:SignatureValue", NS).text = base64.b64encode(bytes(value)).decode()
    elif tamper == "signed info":
        signed.find(".//ds:Reference/ds:DigestValue", NS).text = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(SignatureRefused, match=reason):
        verifier.verify(signed)


def test_untrusted_signer(pki, clock, verifier):
    envelope = wire(MessageSigner(pki.foreign_user, clock).sign(request()))
    with pytest.raises(UntrustedChain, match="not a trusted CA"):
        verifier.verify(envelope)


def test_signer_whose_key_does_not_match_the_token(pki, clock, verifier, signed):
    # A trusted token, but the SignatureValue made with another key.
    resign(signed, pki.other.key)
    with pytest.raises(SignatureRefused, match="does not verify with the key of"):
        verifier.verify(signed)


@pytest.mark.parametrize("name", ["sha256", "sha384", "sha512", "sha1"])
def test_the_sha2_family_is_accepted_by_default(proxy, clock, verifier, name):
    signature_method, digest_method = HASH_METHODS[name]
    signer = MessageSigner(proxy, clock, signature_method=signature_method, digest_method=digest_method)
    envelope = wire(signer.sign(request()))
    if name == "sha1":
        with pytest.raises(SignatureRefused, match="rsa-sha1 is not allowed"):
            verifier.verify(envelope)
    else:
        assert verifier.verify(envelope).signature_method == signature_method


def test_unknown_hash_names_are_named():
    with pytest.raises(ValueError, match="unknown signature hash md5"):
        methods(["sha256", "md5"])


@pytest.mark.parametrize(
    "signature_method, digest_method, allowed_sig, allowed_digest, reason",
    [
        (RSA_SHA1, SHA256, {RSA_SHA256}, {SHA256, SHA1}, "signature method .*rsa-sha1 is not allowed"),
        (RSA_SHA256, SHA1, {RSA_SHA256}, {SHA256}, "digest method .*sha1 is not allowed"),
        (RSA_SHA1, SHA1, {RSA_SHA256, RSA_SHA1}, {SHA256, SHA1}, None),
    ],
)
def test_algorithm_allow_list(pki, proxy, clock, signature_method, digest_method, allowed_sig, allowed_digest, reason):
    envelope = wire(
        MessageSigner(proxy, clock, signature_method=signature_method, digest_method=digest_method).sign(request())
    )
    policy = SecurityPolicy(signature_methods=frozenset(allowed_sig), digest_methods=frozenset(allowed_digest))
    verifier = MessageVerifier(TrustStore(pki.trust_dir), clock, policy)
    if reason is None:
        assert verifier.verify(envelope).signature_method == signature_method
    else:
        with pytest.raises(SignatureRefused, match=reason):
            verifier.verify(envelope)


def test_other_canonicalization_is_refused(signed, verifier, proxy):
    signed.find(".//ds:CanonicalizationMethod", NS).set("Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
    resign(signed, proxy.key)
    with pytest.raises(SignatureRefused, match="exclusive c14n only"):
        verifier.verify(signed)


# -- freshness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signed_at, verified_at, reason",
    [
        (NOW, NOW + timedelta(minutes=4), None),
        (NOW, NOW + timedelta(minutes=9, seconds=59), None),  # expires at +5, plus 5 minutes of skew
        (NOW, NOW + timedelta(minutes=10, seconds=1), "expired"),
        (NOW + timedelta(minutes=4), NOW, None),  # a client clock a little fast
        (NOW + timedelta(minutes=6), NOW, "future"),
        (NOW - timedelta(hours=3), NOW, "expired"),
    ],
)
def test_timestamp_window(pki, proxy, signed_at, verified_at, reason):
    envelope = wire(MessageSigner(proxy, ManualClock(signed_at)).sign(request()))
    verifier = MessageVerifier(TrustStore(pki.trust_dir), ManualClock(verified_at))
    if reason is None:
        verifier.verify(envelope)
    else:
        with pytest.raises(SignatureRefused, match=reason):
            verifier.verify(envelope)


def test_stale_timestamp_with_a_far_expiry(pki, proxy):
    envelope = wire(MessageSigner(proxy, ManualClock(NOW), lifetime=timedelta(hours=2)).sign(request()))
    verifier = MessageVerifier(TrustStore(pki.trust_dir), ManualClock(NOW + timedelta(minutes=30)))
    with pytest.raises(SignatureRefused, match="stale"):
        verifier.verify(envelope)


@pytest.mark.parametrize(
    "mutation", ["no created", "naive time", "garbage", "expires before created", "two timestamps"]
)
def test_malformed_timestamp(signed, verifier, proxy, mutation):
    stamp = signed.find(".//wsu:Timestamp", NS)
    if mutation == "no created":
        stamp.remove(stamp.find("wsu:Created", NS))
    elif mutation == "naive time":
        stamp.find("wsu:Created", NS).text = "2026-11-25T12:00:00"
    elif mutation == "garbage":
        stamp.find("wsu:Created", NS).text = "yesterday"
    elif mutation == "expires before created":
        stamp.find("wsu:Expires", NS).text = timestamp(NOW - timedelta(minutes=1))
    elif mutation == "two timestamps":
        extra = copy.deepcopy(stamp)
        del extra.attrib[f"{{{WSU}}}Id"]
        body_payload(signed).append(extra)
    with pytest.raises(SignatureRefused, match="Timestamp|Created|Expires|timestamp"):
        verifier.verify(signed)


# -- replay ------------------------------------------------------------------------------------------


def test_replay_is_refused(signed, verifier):
    again = copy.deepcopy(signed)
    verifier.verify(signed)
    with pytest.raises(SignatureRefused, match="replayed"):
        verifier.verify(again)


def test_replay_cache_forgets_after_the_window(pki, proxy, clock):
    cache = ReplayCache(clock, DEFAULT_POLICY.replay_window)
    verifier = MessageVerifier(TrustStore(pki.trust_dir), clock, replay_cache=cache)
    verifier.verify(wire(MessageSigner(proxy, clock).sign(request())))
    assert len(cache) == 1
    clock.advance(timedelta(minutes=11))
    verifier.verify(wire(MessageSigner(proxy, clock).sign(request())))
    assert len(cache) == 1  # the first entry expired and was purged


def test_replay_cache_refuses_each_repeat_until_its_deadline_then_forgets_it(clock):
    window = DEFAULT_POLICY.replay_window
    cache = ReplayCache(clock, window)
    deadlines = {f"signature {n}".encode(): clock.now() + window * n / 10 for n in range(1, 11)}
    assert all(cache.admit(value, until) for value, until in deadlines.items())
    clock.advance(window / 2)
    live = {value: until for value, until in deadlines.items() if until >= clock.now()}
    assert len(live) == 6 and not any(cache.admit(value, until) for value, until in live.items())
    clock.advance(window / 2 + window / SLOTS)
    assert cache.admit(b"a new signature", clock.now() + window)
    assert len(cache) == 1  # the ten were forgotten


def test_replay_cache_keeps_a_signature_in_about_100_bytes(clock):
    """A service under signed load remembers every signature of the last 15 minutes: its memory grows
    by what an entry costs, a few MiB an hour of 100 messages a second, not tens."""
    window, count = DEFAULT_POLICY.replay_window, 20_000
    cache = ReplayCache(clock, window)
    tracemalloc.start()
    try:
        for n in range(count):  # a 2048-bit RSA signature value each, which only the cache may keep
            cache.admit(random.randbytes(256), clock.now() + window * n / count)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held / count < 128


def test_a_flood_fills_the_replay_cache_which_refuses_until_its_entries_expire(clock):
    """It holds a window's worth of messages at the rate it is sized for, never more: a flood of signed
    messages is refused, not remembered until memory runs out."""
    window = timedelta(seconds=10)
    cache = ReplayCache(clock, window, per_second=3)
    for n in range(30):
        assert cache.admit(f"signature {n}".encode(), clock.now() + window)
    with pytest.raises(SignatureRefused, match="full"):
        cache.admit(b"one more", clock.now() + window)
    assert not cache.admit(b"signature 0", clock.now() + window)  # a replay is still a replay
    clock.advance(window + window / SLOTS)
    assert cache.admit(b"one more", clock.now() + window)


def test_replay_race_has_exactly_one_winner(signed, verifier):
    copies = [copy.deepcopy(signed) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def attempt(envelope):
        barrier.wait()
        try:
            outcomes.append(verifier.verify(envelope))
        except AuthenticationFailed as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt, args=(envelope,)) for envelope in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["SignatureRefused", "VerifiedMessage"]


def test_forged_message_does_not_poison_the_replay_cache(signed, verifier):
    forged = copy.deepcopy(signed)
    body_payload(forged).text = "work:Everything"
    with pytest.raises(SignatureRefused, match="digest"):
        verifier.verify(forged)
    verifier.verify(signed)  # the genuine message still gets through once


# -- signature wrapping ------------------------------------------------------------------------------


def _wrap(signed: etree._Element, variant: str, key) -> etree._Element:
    header = signed.find("soapenv:Header", NS)
    body = signed.find("soapenv:Body", NS)
    body_id = body.get(f"{{{WSU}}}Id")
    forged_body = etree.Element(f"{{{SOAP_ENV}}}Body")
    evil = etree.SubElement(forged_body, "{http://www.globus.org/2008/06/workspace/types}Destroy")
    evil.text = "everything"
    if variant == "body moved into a wrapper header":
        wrapper = etree.SubElement(header, "{urn:attacker}Wrapper")
        signed.replace(body, forged_body)
        wrapper.append(body)
    elif variant == "body moved to a header block":
        signed.replace(body, forged_body)
        header.append(body)
    elif variant == "forged body reuses the Id":
        signed.replace(body, forged_body)
        forged_body.set(f"{{{WSU}}}Id", body_id)
        etree.SubElement(header, "{urn:attacker}Wrapper").append(body)
    elif variant == "body moved under the Security header":
        signed.replace(body, forged_body)
        signed.find(".//wsse:Security", NS).append(body)
    elif variant == "duplicate Id in the body":
        extra = etree.SubElement(body_payload(signed), "{urn:x}Extra")
        extra.set("Id", signed.find(".//wsu:Timestamp", NS).get(f"{{{WSU}}}Id"))
    elif variant == "duplicate unqualified Id":
        extra = etree.SubElement(header, "{urn:x}Extra")
        extra.set("ID", body_id)
    elif variant == "reference to an element inside the body":
        payload = body_payload(signed)
        payload.set(f"{{{WSU}}}Id", "inner")
        retarget(signed, payload, "#inner", key)
    elif variant == "reference to a nested header element":
        block = etree.SubElement(header, "{urn:x}Outer")
        inner = etree.SubElement(block, "{urn:x}Inner", Id="nested")
        retarget(signed, inner, "#nested", key)
    elif variant == "reference resolves to nothing":
        signed.find(".//ds:Reference", NS).set("URI", "#nowhere")
        resign(signed, key)
    elif variant == "external reference":
        signed.find(".//ds:Reference", NS).set("URI", "http://evil.example/body.xml")
        resign(signed, key)
    elif variant == "xpointer reference":
        signed.find(".//ds:Reference", NS).set("URI", f"#xpointer(id('{body_id}'))")
        resign(signed, key)
    elif variant == "second signature":
        header.append(copy.deepcopy(signed.find(".//ds:Signature", NS)))
    elif variant == "second signature inside the body":
        body_payload(signed).append(copy.deepcopy(signed.find(".//ds:Signature", NS)))
    elif variant == "second security header":
        extra = etree.SubElement(header, f"{{{WSSE}}}Security")
        extra.set(f"{{{SOAP_ENV}}}actor", "urn:other")
    elif variant == "referenced twice":
        refs = signed.findall(".//ds:Reference", NS)
        refs[1].getparent().replace(refs[1], copy.deepcopy(refs[0]))
        resign(signed, key)
    elif variant == "security token outside the Security header":
        token = signed.find(".//wsse:BinarySecurityToken", NS)
        header.append(token)
    elif variant == "extra transform":
        transforms = signed.find(".//ds:Reference/ds:Transforms", NS)
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")
        resign(signed, key)
    elif variant == "unsigned twin of a signed header":
        twin = etree.SubElement(header, f"{{{WSA}}}To")
        twin.text = "https://evil.example/"
    elif variant == "signed header wrapped, unsigned one in its place":
        to = signed.find("soapenv:Header/wsa:To", NS)
        forged_to = etree.Element(f"{{{WSA}}}To")
        forged_to.text = "https://evil.example/"
        header.replace(to, forged_to)
        etree.SubElement(header, "{urn:attacker}Wrapper").append(to)
    elif variant == "body moved in front of the header":
        signed.remove(header)
        signed.append(header)
    else:  # pragma: no cover
        raise AssertionError(variant)
    return wire(signed)


WRAPPING = {
    "body moved into a wrapper header": "not the envelope's Body",
    "body moved to a header block": "does not cover the soapenv:Body",
    "forged body reuses the Id": "occurs more than once",
    "body moved under the Security header": "not the envelope's Body",
    "duplicate Id in the body": "occurs more than once",
    "duplicate unqualified Id": "occurs more than once",
    "reference to an element inside the body": "not the envelope's Body",
    "reference to a nested header element": "not the envelope's Body",
    "reference resolves to nothing": "resolves to no element",
    "external reference": "not a same-document",
    "xpointer reference": "resolves to no element",
    "second signature": "exactly one is accepted",
    "second signature inside the body": "exactly one is accepted",
    "second security header": "more than one wsse:Security",
    "referenced twice": "referenced twice",
    "security token outside the Security header": "does not name a BinarySecurityToken",
    "extra transform": "single exclusive-c14n transform",
    "body moved in front of the header": "optional Header and exactly one Body",
    "unsigned twin of a signed header": "does not cover the .*To header",
    "signed header wrapped, unsigned one in its place": "Timestamp, security token or a header block",
}


@pytest.mark.parametrize("variant", sorted(WRAPPING))
def test_signature_wrapping_is_refused(signed, verifier, proxy, variant):
    forged = _wrap(signed, variant, proxy.key)
    with pytest.raises(SignatureRefused, match=WRAPPING[variant]):
        verifier.verify(forged)


def test_unsigned_extra_header_is_not_handed_over(pki, proxy, clock):
    envelope = request()
    MessageSigner(proxy, clock).sign(envelope)
    etree.SubElement(envelope.find("soapenv:Header", NS), "{urn:other}Unsigned").text = "x"
    envelope = wire(envelope)
    verified = MessageVerifier(TrustStore(pki.trust_dir), clock).verify(envelope)
    assert all(etree.QName(h).namespace != "urn:other" for h in verified.signed_headers)


# -- interop with real peers -------------------------------------------------------------------------


BODY_AND_TIMESTAMP = SecurityPolicy(require_addressing=False, require_workspace_headers=False)


def _zeep_signed(cert_file, key_file, clock, sha256: bool = True) -> etree._Element:
    """Signed by zeep's stock BinarySignature (RSA-SHA256, else its RSA-SHA1 default): Body and Timestamp only."""
    from zeep.wsse.signature import BinarySignature

    envelope = request()
    header = envelope.find("soapenv:Header", NS)
    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
    stamp = etree.SubElement(security, f"{{{WSU}}}Timestamp")
    etree.SubElement(stamp, f"{{{WSU}}}Created").text = timestamp(clock.now())
    etree.SubElement(stamp, f"{{{WSU}}}Expires").text = timestamp(clock.now() + timedelta(minutes=5))
    methods = (
        {"signature_method": xmlsec.constants.TransformRsaSha256, "digest_method": xmlsec.constants.TransformSha256}
        if sha256
        else {}
    )
    plugin = BinarySignature(str(key_file), str(cert_file), **methods)
    plugin.apply(envelope, {})
    return wire(envelope)


def test_zeep_binary_signature_with_a_plain_certificate(pki, clock):
    user = pki.root / "user"
    envelope = _zeep_signed(user / "cert.pem", user / "key.pem", clock)
    with pytest.raises(SignatureRefused, match="does not cover"):  # the default policy wants the headers signed
        MessageVerifier(TrustStore(pki.trust_dir), clock).verify(copy.deepcopy(envelope))
    verified = MessageVerifier(TrustStore(pki.trust_dir), clock, BODY_AND_TIMESTAMP).verify(envelope)
    assert verified.identity == USER_DN and verified.signed_headers == ()


def test_zeep_default_sha1_signature_needs_an_administrator(pki, clock):
    user = pki.root / "user"
    envelope = _zeep_signed(user / "cert.pem", user / "key.pem", clock, sha256=False)
    with pytest.raises(SignatureRefused, match="rsa-sha1 is not allowed .*signature_hashes"):
        MessageVerifier(TrustStore(pki.trust_dir), clock, BODY_AND_TIMESTAMP).verify(copy.deepcopy(envelope))
    signatures, digests = methods(["sha256", "sha1"])
    old_clients = dataclasses.replace(BODY_AND_TIMESTAMP, signature_methods=signatures, digest_methods=digests)
    assert MessageVerifier(TrustStore(pki.trust_dir), clock, old_clients).verify(envelope).signature_method == RSA_SHA1


def test_zeep_binary_signature_with_a_proxy(pki, tmp_path, clock):
    # zeep puts only the proxy leaf in an X509v3 token: the service must know the end entity to validate it.
    proxy_file = pki.proxy().write(tmp_path / "x509up")
    envelope = _zeep_signed(proxy_file, proxy_file, clock)
    assert envelope.find(".//wsse:BinarySecurityToken", NS).get("ValueType") == X509V3
    with pytest.raises(UntrustedChain, match="end-entity certificate is missing"):
        MessageVerifier(TrustStore(pki.trust_dir), clock, BODY_AND_TIMESTAMP).verify(copy.deepcopy(envelope))
    knows_users = ChainValidator(TrustStore(pki.trust_dir), clock, untrusted=[pki.user.certificate])
    verified = MessageVerifier(knows_users, clock, BODY_AND_TIMESTAMP).verify(envelope)
    assert verified.identity == USER_DN and verified.chain.proxies == 1 and not verified.limited


def test_zeep_wrapping_forgery_is_refused(pki, clock):
    # zeep's own verifier accepts this forgery (ENVIRONMENT.md); ours must not.
    envelope = _zeep_signed(pki.root / "user" / "cert.pem", pki.root / "user" / "key.pem", clock)
    forged = _wrap(envelope, "body moved into a wrapper header", pki.user.key)
    with pytest.raises(SignatureRefused, match="not the envelope's Body"):
        MessageVerifier(TrustStore(pki.trust_dir), clock, BODY_AND_TIMESTAMP).verify(forged)


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 not installed")
@pytest.mark.parametrize("who", ["proxy", "user"])
def test_xmlsec1_accepts_what_we_sign(pki, tmp_path, clock, who):
    credential = pki.proxy() if who == "proxy" else pki.user
    envelope = MessageSigner(credential, clock).sign(request())
    message = tmp_path / "signed.xml"
    message.write_bytes(etree.tostring(envelope))
    cert = tmp_path / "leaf.pem"
    cert.write_bytes(credential.certificate.public_bytes(serialization.Encoding.PEM))
    id_attrs = [
        f"{SOAP_ENV}:Body",
        f"{WSU}:Timestamp",
        f"{WSA}:To",
        f"{WSA}:Action",
        f"{WSA}:MessageID",
        f"{WORKSPACE}:WorkspaceKey",
    ]
    command = ["xmlsec1", "--verify", "--pubkey-cert-pem", str(cert)]
    for spec in id_attrs:
        command += ["--id-attr:Id", spec]
    result = subprocess.run(command + [str(message)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "References (ok/all): 6/6" in result.stderr
    # and xmlsec1 refuses a tampered copy
    message.write_bytes(etree.tostring(envelope).replace(b"work:CurrentState", b"work:Everything"))
    assert subprocess.run(command + [str(message)], capture_output=True).returncode != 0


def test_signer_refuses_foreign_header_blocks(proxy, clock):
    envelope = request()
    with pytest.raises(ValueError, match="not a header block"):
        MessageSigner(proxy, clock).sign(envelope, also_sign=[body_payload(envelope)])


def test_shared_validator_cache(pki, proxy, clock):
    validator = ChainValidator(TrustStore(pki.trust_dir), clock)
    verifier = MessageVerifier(validator, clock)
    assert verifier.validator is validator
    verifier.verify(wire(MessageSigner(proxy, clock).sign(request())))
