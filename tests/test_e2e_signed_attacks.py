"""What a man in the middle, a replayer or a careless client tried against the signed service (issue #10).

Each attack is a real signed message, changed on its way as an attacker would change
the bytes, and POSTed to a running service: what the service acts on must be what
the user signed, or nothing at all.
"""

import pytest
from lxml import etree

from tests import test_e2e_signed as signed_service
from tests.gt4wire import Gt4Client, created_eprs, envelope_element
from tests.test_e2e_signed import signed_create
from vws.workspace.manager import SERVICE
from vws.xmlns import SOAP_ENV, WORKSPACE, WSRL, WSRL_ACTION, qname

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


# -- signed content read differently than it was verified ------------------------------------------


@pytest.mark.parametrize("hidden", ["<!--x-->", "<?x?>", "<![CDATA[]]>"])
def test_markup_hidden_in_signed_text_cannot_change_a_number(service, signer, hidden):
    # Exclusive c14n without comments digests "256" either way; the service must read 256, not 2.
    before = live(service)
    message = signed_create(service, signer)
    data = rewritten(message, ">256<", f">2{hidden}56<")
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
