"""What a man in the middle, a replayer or a careless client tried against the signed service (issue #10).

Each attack is a real signed message, changed on its way as an attacker would change
the bytes, and POSTed to a running service: what the service acts on must be what
the user signed, or nothing at all.
"""

import logging
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from tests import test_e2e_signed as signed_service
from tests.gt4wire import Gt4Client, SoapFault, created_eprs, envelope_element
from tests.resources import (
    create,
    create_request,
    ensemble_report,
    in_ensemble,
    reference,
    subscribe,
    subscription_call,
)
from tests.test_e2e_signed import signed_create, user_proxy
from tests.test_security_wssecurity import retarget
from vws.config import Config, ConfigError
from vws.security import ca
from vws.security.ca import DevCA
from vws.security.credentials import Credential
from vws.security.proxy import create_proxy
from vws.security.wssecurity.policy import RSA_SHA1, SHA1
from vws.security.wssecurity.signing import MessageSigner
from vws.service import Service
from vws.soap.porttypes.common import SUBSCRIPTION_KEY
from vws.soap.replay import StoredReplayCache
from vws.store.database import Store
from vws.workspace.caller import SERVICE
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import (
    DS,
    EXC_C14N,
    SOAP_ENV,
    TYPES,
    WORKSPACE,
    WSA,
    WSRL,
    WSRL_ACTION,
    WSRP,
    WSRP_ACTION,
    WSU,
    XPATH_DIALECT,
    qname,
)

FACTORY = "WorkspaceFactoryService"

# The signed service as `vws-admin ca init` leaves it, and the user's signer (fixtures).
state_dir, clock, service = signed_service.state_dir, signed_service.clock, signed_service.service
signer, alice = signed_service.signer, signed_service.alice


def send(running, address: str, data: bytes) -> etree._Element:
    """POST raw bytes to ``address``; the reply's Body payload."""
    client = Gt4Client(running.base_url)
    try:
        _, reply = client.post(address, data)
    finally:
        client.close()
    return reply.find(qname(SOAP_ENV, "Body"))[0]


def rewritten(message: etree._Element, old: str, new: str) -> bytes:
    """The signed message's bytes with one piece of text changed in transit."""
    data = etree.tostring(message)
    assert data.count(old.encode()) == 1
    return data.replace(old.encode(), new.encode())


def live(running) -> dict[int, int]:
    """Live workspace id -> memory MB."""
    return {w.id: w.request.machine.memory_mb for w in running.manager.workspaces(SERVICE)}


REFUSALS = "vws.soap.gatekeeper"


def dev_authority(state_dir) -> Credential:
    """The development CA that `vws-admin ca init` made, to issue more users."""
    authority = DevCA(state_dir / "security").root / "ca"
    return Credential.load(authority / "cacert.pem", authority / "cakey.pem")


def refusals(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == REFUSALS]


# -- signed content read differently than it was verified ------------------------------------------


@pytest.mark.parametrize("rewritten_as", ["2<!--x-->56", "2<?x?>56", "2<![CDATA[]]>56", "<![CDATA[25]]>6", "2&#53;6"])
def test_markup_hidden_in_signed_text_cannot_change_a_number(service, signer, rewritten_as):
    # Exclusive c14n without comments digests "256" in every case; the service must read 256, not 2.
    before = live(service)
    message = signed_create(service, signer)
    data = rewritten(message, ">256<", f">{rewritten_as}<")
    assert send(service, service.base_url + FACTORY, data).tag == qname(WORKSPACE, "createResponse")
    assert [memory for key, memory in live(service).items() if key not in before] == [256]


def test_a_comment_in_a_signed_key_cannot_redirect_a_destroy(alice, service, signer):
    (epr,) = created_eprs(alice.create())
    victim = epr.key(qname(WORKSPACE, "WorkspaceKey"))
    # The user signs the Destroy of workspace <victim>0; in transit it becomes <victim><!--x-->0.
    key = etree.Element(qname(WORKSPACE, "WorkspaceKey"), nsmap={None: WORKSPACE})
    key.text = victim + "0"
    message = envelope_element(epr.address, WSRL_ACTION + "Destroy", etree.Element(qname(WSRL, "Destroy")), (key,))
    signer.sign(message)
    data = rewritten(message, f">{victim}0<", f">{victim}<!--x-->0<")
    reply = send(service, epr.address, data)
    assert reply.tag == qname(SOAP_ENV, "Fault") and f"no workspace with key {victim}0" in reply.findtext("faultstring")
    assert int(victim) in live(service)


def query(epr, expression: str) -> etree._Element:
    """A QueryResourceProperties envelope whose XPath prefix t is declared on the QueryExpression only."""
    body = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP})
    holder = etree.SubElement(body, qname(WSRP, "QueryExpression"), {"Dialect": XPATH_DIALECT}, nsmap={"t": TYPES})
    holder.text = expression
    return envelope_element(epr.address, WSRP_ACTION + "QueryResourceProperties", body, epr.properties)


def test_a_prefix_used_in_signed_text_is_signed_with_its_binding(alice, service, signer):
    (epr,) = created_eprs(alice.create())
    message = query(epr, "boolean(/*/t:currentState)")
    signer.sign(message)
    # Exclusive c14n alone leaves out xmlns:t (no element or attribute uses it): rebinding it changed the answer.
    rebound = send(service, epr.address, rewritten(message, f'xmlns:t="{TYPES}"', 'xmlns:t="urn:elsewhere"'))
    assert rebound.tag == qname(SOAP_ENV, "Fault") and "digest" in rebound.findtext("faultstring")
    assert send(service, epr.address, etree.tostring(message)).text == "true"  # as signed: believed


def test_a_binding_the_signature_does_not_cover_is_not_believed(alice, service, signer):
    """A signer that lists no InclusiveNamespaces leaves the prefix's binding unsigned: it is refused, not guessed."""
    (epr,) = created_eprs(alice.create())
    message = signer.sign(query(epr, "/*/t:currentState"))
    for inclusive in message.iter(f"{{{EXC_C14N}}}InclusiveNamespaces"):
        inclusive.getparent().remove(inclusive)
    body = message.find(qname(SOAP_ENV, "Body"))
    assert message.find(f".//{{{DS}}}Reference").get("URI") == "#" + body.get(qname(WSU, "Id"))
    retarget(message, body, "#" + body.get(qname(WSU, "Id")), signer.credential.key)
    reply = send(service, epr.address, rewritten(message, f'xmlns:t="{TYPES}"', 'xmlns:t="urn:elsewhere"'))
    assert reply.tag == qname(SOAP_ENV, "Fault") and "Undefined namespace prefix" in reply.findtext("faultstring")


# -- wsa:To names the endpoint that received the message -------------------------------------------


def property_request(to: str, name: str, key: tuple[etree._Element, ...] = ()) -> etree._Element:
    body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "t": TYPES})
    body.text = "t:" + name
    return envelope_element(to, WSRP_ACTION + "GetResourceProperty", body, key)


def test_a_message_signed_for_one_endpoint_is_refused_by_another(service, signer, caplog):
    message = signer.sign(property_request(service.base_url + "WorkspaceService", "DefaultRunningTime"))
    reply = send(service, service.base_url + FACTORY, etree.tostring(message))
    assert reply.tag == qname(SOAP_ENV, "Fault")
    assert reply.findtext("faultcode") == "wsa:DestinationUnreachable" and reply.nsmap["wsa"] == WSA
    assert "/wsrf/services/WorkspaceService" in reply.findtext("faultstring")
    (logged,) = refusals(caplog)
    assert "CN=vws user from 127.0.0.1" in logged and "names another endpoint" in logged


def test_to_is_compared_by_path_so_proxies_may_rename_the_host(service, signer):
    to = "https://vws.example.org/wsrf/services/" + FACTORY  # as a client behind a TLS-terminating proxy sends it
    message = signer.sign(property_request(to, "DefaultRunningTime"))
    reply = send(service, service.base_url + FACTORY, etree.tostring(message))
    assert reply.tag == qname(WSRP, "GetResourcePropertyResponse")


def test_a_signed_message_must_name_its_endpoint(service, signer):
    message = property_request(service.base_url + FACTORY, "DefaultRunningTime")
    header = message.find(qname(SOAP_ENV, "Header"))
    header.remove(header.find(qname(WSA, "To")))
    reply = send(service, service.base_url + FACTORY, etree.tostring(signer.sign(message)))
    assert reply.findtext("faultcode") == "wsa:DestinationUnreachable" and "no wsa:To" in reply.findtext("faultstring")


# -- identity and state ----------------------------------------------------------------------------


def test_a_signing_client_manages_its_own_subscription(alice):
    (epr,) = created_eprs(alice.create())
    subscription = subscribe(alice, epr, EndpointReference("http://127.0.0.1:9/"), qname(TYPES, "currentState"))
    assert subscription.key(SUBSCRIPTION_KEY)  # echoed as a header, signed like the WorkspaceKey
    for operation in ("PauseSubscription", "ResumeSubscription", "Destroy"):
        subscription_call(alice, subscription, operation)


def ensemble_rows(running) -> list[dict]:
    with running.store.reading() as db:
        return list(db["ensembles"].rows)


def test_a_refused_ensemble_member_changes_nothing(alice, service, state_dir, clock):
    limited = Gt4Client(service.base_url, sign=MessageSigner(user_proxy(state_dir, clock, limited=True), clock).sign)
    try:
        before = ensemble_rows(service)
        with pytest.raises(SoapFault, match="limited proxy"):  # a new ensemble
            create(limited, in_ensemble(create_request(), None))
        assert ensemble_rows(service) == before
        ensemble = reference(create(alice, in_ensemble(create_request(), None)), "EnsembleEPR")
        members = live(service)
        with pytest.raises(SoapFault, match="limited proxy"):  # a member of the user's open ensemble
            create(limited, in_ensemble(create_request(), ensemble))
        assert live(service) == members
        assert len(ensemble_report(alice, ensemble)) == 1  # still there, still open
    finally:
        limited.close()


# -- clean edges -------------------------------------------------------------------------------------


@pytest.fixture
def sha1_signer(state_dir, clock):
    """Signs as GT4's own clients and zeep's stock BinarySignature do by default: RSA-SHA1, SHA-1 digests."""
    return MessageSigner(user_proxy(state_dir, clock), clock, signature_method=RSA_SHA1, digest_method=SHA1)


def test_sha1_signatures_are_refused_by_default(service, sha1_signer):
    before = live(service)
    reply = send(service, service.base_url + FACTORY, etree.tostring(signed_create(service, sha1_signer)))
    assert reply.findtext("faultcode") == "soapenv:Client"
    assert "rsa-sha1 is not allowed" in reply.findtext("faultstring")
    assert "signature_hashes" in reply.findtext("faultstring")  # what an administrator may change
    assert live(service) == before


def test_an_administrator_may_accept_sha1_for_old_clients(state_dir, clock, sha1_signer):
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir)
    running = Service(config.with_overrides("security", signature_hashes=("sha256", "sha1")), clock=clock)
    running.start()
    try:
        message = sha1_signer.sign(property_request(running.base_url + FACTORY, "DefaultRunningTime"))
        reply = send(running, running.base_url + FACTORY, etree.tostring(message))
        assert reply.tag == qname(WSRP, "GetResourcePropertyResponse")
    finally:
        running.stop()


def test_an_unknown_hash_is_a_config_error(state_dir, clock):
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir)
    with pytest.raises(ConfigError, match=r"\[security\] signature_hashes: unknown signature hash md5"):
        Service(config.with_overrides("security", signature_hashes=("md5",)), clock=clock)


def test_each_refused_authentication_is_logged_once_without_secrets(service, signer, state_dir, clock, caplog):
    caplog.set_level(logging.INFO, logger=REFUSALS)
    tampered = signed_create(service, signer)
    tampered.find(f".//{{{TYPES}}}resourceRequest//{{*}}Exact").text = "1024"
    secret = signed_create(service, signer)
    send(service, service.base_url + FACTORY, etree.tostring(secret))
    replayed = etree.tostring(secret)
    stranger = ca.issue(dev_authority(state_dir), "/O=Grid/OU=vws/OU=local/CN=stranger", clock)
    unmapped = signed_create(service, MessageSigner(create_proxy(stranger, clock), clock))
    caplog.clear()
    for message in (etree.tostring(tampered), replayed, etree.tostring(unmapped)):
        assert send(service, service.base_url + FACTORY, message).tag == qname(SOAP_ENV, "Fault")
    tampered_line, replay_line, unmapped_line = refusals(caplog)
    assert "digest" in tampered_line and "CN=vws user" in tampered_line and "127.0.0.1" in tampered_line
    assert "replayed" in replay_line and "CN=vws user" in replay_line
    assert "grid-mapfile" in unmapped_line and "CN=stranger" in unmapped_line and "127.0.0.1" in unmapped_line
    signature_value = secret.findtext(f".//{{{DS}}}SignatureValue")
    assert not any(signature_value[:40] in line or "MIIB" in line for line in refusals(caplog))


def test_a_message_accepted_before_a_restart_is_refused_after_it(state_dir, clock, signer):
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir)
    first = Service(config, clock=clock)
    first.start()
    try:
        message = etree.tostring(signed_create(first, signer))
        assert send(first, first.base_url + FACTORY, message).tag == qname(WORKSPACE, "createResponse")
    finally:
        first.stop()
    clock.advance(timedelta(seconds=30))  # restarted well inside the message's lifetime
    second = Service(config, clock=clock)
    second.start()
    try:
        before = live(second)
        reply = send(second, second.base_url + FACTORY, message)
        assert reply.tag == qname(SOAP_ENV, "Fault")
        assert "replayed message: this signature was already accepted (before the service restarted)" in reply.findtext(
            "faultstring"
        )
        assert live(second) == before
        for workspace in before:
            second.manager.destroy(SERVICE, workspace)
    finally:
        second.stop()


def seen_signatures(running) -> int:
    with running.store.reading() as db:
        return db["seen_signatures"].count


def test_reads_are_refused_again_only_within_one_run(service, signer):
    """A property read is not written to the store (a commit per read would cost 2% of a signed read): replayed
    in the same run it is refused from memory; after a restart it would answer what a read answers then."""
    recorded = seen_signatures(service)
    message = etree.tostring(signer.sign(property_request(service.base_url + FACTORY, "DefaultRunningTime")))
    assert send(service, service.base_url + FACTORY, message).tag == qname(WSRP, "GetResourcePropertyResponse")
    assert seen_signatures(service) == recorded
    reply = send(service, service.base_url + FACTORY, message)
    assert reply.tag == qname(SOAP_ENV, "Fault") and "replayed" in reply.findtext("faultstring")


def test_the_stored_replay_cache_forgets_each_signature_after_its_deadline(clock):
    store = Store(":memory:")
    seen = StoredReplayCache(store, clock)
    deadline = clock.now() + timedelta(minutes=10)
    assert seen.admit(b"first", deadline) and not seen.admit(b"first", deadline)
    clock.advance(timedelta(minutes=10, seconds=1))
    assert seen.admit(b"second", clock.now() + timedelta(minutes=10))  # sweeps what is past its deadline
    with store.reading() as db:
        assert db["seen_signatures"].count == 1


def test_a_name_that_reads_like_another_users_is_refused(alice, service, state_dir, clock):
    """An OU value holding "/CN=vws user" prints as the dev user's one-line DN: it must not act as that user."""
    attribute = x509.NameAttribute
    forged = x509.Name(
        [
            x509.RelativeDistinguishedName([attribute(NameOID.ORGANIZATION_NAME, "Grid")]),
            x509.RelativeDistinguishedName([attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "vws")]),
            x509.RelativeDistinguishedName([attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "local/CN=vws user")]),
        ]
    )
    impostor = ca.issue(dev_authority(state_dir), forged, clock)
    assert impostor.subject == ca.USER_DN
    (epr,) = created_eprs(alice.create())
    mallory = Gt4Client(service.base_url, sign=MessageSigner(create_proxy(impostor, clock), clock).sign)
    try:
        with pytest.raises(SoapFault, match="ambiguous"):
            mallory.destroy(epr)
    finally:
        mallory.close()
    assert alice.state(epr) == "Running"
