"""The NimbusContextBroker over HTTP: contexts, members joining through create, the agents' door.

A two-member cluster is played here by a Python stand-in for the agent that POSTs to the
broker's door exactly what vws/context/agent.sh sends (tests/test_context_agent.py runs
the real script); every step goes over real HTTP to a running service.
"""

from datetime import timedelta

import pytest
from lxml import etree

from tests import contexts, resources
from tests.callers import ALICE, BOB, client, serve
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.service import Service
from vws.soap.porttypes.common import CONTEXT_KEY, WORKSPACE_KEY
from vws.workspace.caller import SERVICE
from vws.xmlns import CTX, CTX_DESCRIPTION, CTX_TYPES, LOGISTICS, TYPES, WSRL, WSRP, qname

FAULT = qname(CTX, "NimbusContextualizationFault")


def two_members(gt4: Gt4Client, context: contexts.Created) -> tuple[tuple[str, str], tuple[str, str]]:
    """A head node (provides 'head') and a worker (requires role 'head' and data 'jobs'); locks the context."""
    head = contexts.join(gt4, context.epr, provides=("head",))
    worker = contexts.join(gt4, context.epr, requires_roles=("head",), requires_data=("jobs",), lock=True)
    return contexts.addresses(head)[0], contexts.addresses(worker)[0]


def test_create_answers_the_context_and_its_contact(gt4):
    context = contexts.create_context(gt4)
    assert context.broker_url == gt4.base_url.removesuffix("/wsrf/services/") + "/ctx/"
    assert context.epr.address == gt4.base_url + "NimbusContextBroker"
    assert context.key and len(context.secret) >= 32
    assert contexts.status(gt4, context.epr) == {
        "noMoreInjections": "true",
        "complete": "false",
        "totalNodes": "0",
        "numNodesRegistered": "0",
        "allOK": "false",
        "errorPresent": "false",
    }


def test_create_with_context_epr_answers_it_and_registers_the_members(gt4):
    context = contexts.create_context(gt4)
    created = contexts.join(gt4, context.epr, provides=("worker",), node_number=3)
    answered = resources.reference(created, "ContextEPR")
    assert (answered.address, answered.key(CONTEXT_KEY)) == (context.epr.address, context.key)
    assert contexts.status(gt4, context.epr)["totalNodes"] == "3"
    assert contexts.status(gt4, context.epr)["numNodesRegistered"] == "0"


def test_two_member_cluster_completes_once_both_reported(gt4):
    context = contexts.create_context(gt4, expect_injections=True)
    (head_ip, head_name), (worker_ip, worker_name) = two_members(gt4, context)
    contexts.inject(gt4, context.epr, jobs="queue=batch\nslots=4\n")

    status, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(head_ip, head_name))
    assert (status, contexts.state_of(answer)) == (200, "wait")
    contexts.no_more_injections(gt4, context.epr)
    status, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(worker_ip, worker_name))
    assert contexts.state_of(answer) == "complete"
    lines = answer.splitlines()
    # The worker requires the head role: the head's identity, the role, the data; not itself.
    assert f"host {head_ip} {head_name} ssh-rsa AAAAB3Nza test@vws" in lines
    assert f"role head {head_ip}" in lines
    assert "data jobs cXVldWU9YmF0Y2gKc2xvdHM9NAo=" in lines
    # The head requires every identity: both hosts, no roles or data.
    _, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(head_ip, head_name))
    hosts = {line.split()[1] for line in answer.splitlines() if line.startswith("host ")}
    assert hosts == {head_ip, worker_ip} and not any(line.startswith(("role", "data")) for line in answer.splitlines())

    for ip, name in ((head_ip, head_name), (worker_ip, worker_name)):
        assert contexts.agent_post(context, "ok", contexts.identity_line(ip, name))[0] == 200
    rp = contexts.status(gt4, context.epr)
    assert (rp["complete"], rp["allOK"], rp["numNodesRegistered"], rp["errorPresent"]) == ("true", "true", "2", "false")


def test_soap_retrieve_and_identities_speak_the_2008_12_types(gt4):
    context = contexts.create_context(gt4)
    (head_ip, head_name), (worker_ip, worker_name) = two_members(gt4, context)
    # The worker requires data nobody injected and none can come now: the context is cancelled.
    retrieve = _identity_body("retrieve", worker_ip, worker_name)
    reply = contexts.call(gt4, context.epr, "retrieve", retrieve)
    assert [reply.findtext(qname(CTX_TYPES, n)) for n in ("noMoreInjections", "complete", "cancelled")] == [
        "true",
        "false",
        "true",
    ]
    nodes = contexts.call(gt4, context.epr, "identities", _all())
    reported = {n.findtext(f"{qname(CTX_TYPES, 'identity')}/{qname(CTX_DESCRIPTION, 'hostname')}") for n in nodes}
    assert reported == {worker_name, None}  # the head has not reported: its leased address only
    error = _identity_body("errorExiting", worker_ip, worker_name)
    error.append(_text(qname(CTX_TYPES, "errorcode"), "5"))
    error.append(_text(qname(CTX_TYPES, "message"), "3-data jobs exited 1"))
    contexts.call(gt4, context.epr, "errorExiting", error)
    (worker,) = [
        n
        for n in contexts.call(gt4, context.epr, "identities", _all())
        if n.find(qname(CTX_TYPES, "errorCode")) is not None
    ]
    assert (worker.findtext(qname(CTX_TYPES, "ok")), worker.findtext(qname(CTX_TYPES, "errorMessage"))) == (
        "false",
        "3-data jobs exited 1",
    )
    assert contexts.status(gt4, context.epr)["errorPresent"] == "true"


def test_a_member_that_fails_cancels_the_context_for_the_others(gt4):
    """A member whose workspace goes away before reporting: the others get a clear error, not a wait."""
    context = contexts.create_context(gt4)
    head = contexts.join(gt4, context.epr, provides=("head",))
    worker = contexts.join(gt4, context.epr, requires_roles=("head",), lock=True)
    (head_ip, head_name) = contexts.addresses(head)[0]
    gt4.destroy(created_eprs(worker)[0])
    status, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(head_ip, head_name))
    assert (status, contexts.state_of(answer)) == (200, "cancelled")
    assert "failed: its workspace is" in answer
    assert contexts.status(gt4, context.epr)["errorPresent"] == "true"


def test_a_required_role_nobody_provides_cancels_the_locked_context(gt4):
    context = contexts.create_context(gt4)
    ((ip, name),) = contexts.addresses(contexts.join(gt4, context.epr, requires_roles=("nfsserver",), lock=True))
    _, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(ip, name))
    assert contexts.state_of(answer) == "cancelled" and "'nfsserver', which no member provides" in answer


def test_another_contexts_member_is_refused(gt4):
    mine, theirs = contexts.create_context(gt4), contexts.create_context(gt4)
    ((ip, name),) = contexts.addresses(contexts.join(gt4, mine.epr, lock=True))
    contexts.join(gt4, theirs.epr, lock=True)
    # Its own secret at the other context's door, and the other's secret at its own: both refused.
    assert contexts.agent_post(theirs, "retrieve", contexts.identity_line(ip, name), secret=mine.secret)[0] == 403
    assert contexts.agent_post(mine, "retrieve", contexts.identity_line(ip, name), secret=theirs.secret)[0] == 403
    # With the other context's right secret, its address is no member there.
    assert contexts.agent_post(theirs, "retrieve", contexts.identity_line(ip, name))[0] == 409
    assert contexts.status(gt4, theirs.epr)["numNodesRegistered"] == "0"


def test_a_locked_context_takes_no_more_members_and_nothing_is_created(gt4, service):
    context = contexts.create_context(gt4)
    contexts.join(gt4, context.epr, lock=True)
    before = len(service.manager.workspaces(SERVICE))
    with pytest.raises(SoapFault) as refused:
        contexts.join(gt4, context.epr)
    assert refused.value.element == qname(TYPES, "WorkspaceCreationFault")
    assert "locked" in refused.value.description
    assert len(service.manager.workspaces(SERVICE)) == before


def test_a_member_without_a_nic_is_refused_before_anything_is_created(gt4, service):
    context = contexts.create_context(gt4)
    body = contexts.member_request(context.epr)
    nics = body.find(f".//{qname(LOGISTICS, 'networking')}")
    nics.getparent().remove(nics)
    with pytest.raises(SoapFault) as refused:
        resources.create(gt4, body)
    assert refused.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert service.manager.workspaces(SERVICE) == []


def test_only_the_owner_knows_the_context(tmp_path, clock):
    with serve(tmp_path / "state", clock) as running:
        alice, bob = client(running, ALICE), client(running, BOB)
        context = contexts.create_context(alice)
        with pytest.raises(SoapFault) as hidden:
            contexts.status(bob, context.epr)
        assert hidden.value.element == qname(WSRP, "ResourceUnknownFault")
        with pytest.raises(SoapFault) as refused:
            contexts.join(bob, context.epr)
        assert "no context" in refused.value.description
        with pytest.raises(SoapFault) as refused:
            contexts.inject(bob, context.epr, jobs="x")
        assert refused.value.element == FAULT
        assert contexts.status(alice, context.epr)["totalNodes"] == "0"


def test_bad_input_is_the_declared_fault_and_changes_nothing(gt4):
    context = contexts.create_context(gt4)
    with pytest.raises(SoapFault) as bad:
        contexts.inject(gt4, context.epr, **{"../../etc/passwd": "x"})
    assert bad.value.element == FAULT
    with pytest.raises(SoapFault) as bad:
        contexts.inject(gt4, context.epr, jobs="x")  # created with expectInjections false
    assert bad.value.element == FAULT and "no more data" in bad.value.description
    assert contexts.agent_post(context, "retrieve", "hello\n")[0] == 400


def test_destroy_removes_the_context_and_shuts_its_door(gt4):
    context = contexts.create_context(gt4)
    ((ip, name),) = contexts.addresses(contexts.join(gt4, context.epr, lock=True))
    contexts.destroy(gt4, context.epr)
    with pytest.raises(SoapFault) as gone:
        contexts.status(gt4, context.epr)
    assert gone.value.element == qname(WSRP, "ResourceUnknownFault")
    assert contexts.agent_post(context, "retrieve", contexts.identity_line(ip, name))[0] == 403


def test_a_context_ends_with_its_members_leases(gt4, service, clock):
    context = contexts.create_context(gt4)
    contexts.join(gt4, context.epr, lock=True)  # the sample asks for 30 minutes
    clock.advance(timedelta(days=1, minutes=1))
    assert service.contexts.expire_due() == [context.key]
    with pytest.raises(SoapFault):
        contexts.status(gt4, context.epr)


def test_a_restart_mid_contextualization_loses_nothing(tmp_path, clock):
    config = make_config(tmp_path / "state")
    first = Service(config, clock=clock)
    first.start()
    gt4 = Gt4Client(first.base_url, settle=settler(first))
    context = contexts.create_context(gt4, expect_injections=True)
    (head_ip, head_name), (worker_ip, worker_name) = two_members(gt4, context)
    contexts.inject(gt4, context.epr, jobs="slots=4")
    assert (
        contexts.state_of(contexts.agent_post(context, "retrieve", contexts.identity_line(head_ip, head_name))[1])
        == "wait"
    )
    gt4.close()
    first.stop()

    second = Service(config.with_overrides("service", listen=first.base_url.split("/")[2]), clock=clock)
    second.start()
    try:
        gt4 = Gt4Client(second.base_url, settle=settler(second))
        contexts.no_more_injections(gt4, context.epr)
        _, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(worker_ip, worker_name))
        assert contexts.state_of(answer) == "complete" and "data jobs c2xvdHM9NA==" in answer.splitlines()
        assert contexts.status(gt4, context.epr)["numNodesRegistered"] == "2"
        gt4.close()
    finally:
        second.stop()


def _identity_body(operation: str, ip: str, hostname: str) -> etree._Element:
    body = etree.Element(qname(CTX, operation))
    namespace = CTX_DESCRIPTION if operation == "retrieve" else CTX_TYPES
    identity = etree.SubElement(body, qname(namespace, "identity"))
    for name, value in (("interface", "eth0"), ("ip", ip), ("hostname", hostname)):
        etree.SubElement(identity, qname(CTX_DESCRIPTION, name)).text = value
    if operation == "retrieve":
        cluster = etree.SubElement(body, qname(CTX_DESCRIPTION, "cluster"))
        workspace = etree.SubElement(cluster, qname(CTX_DESCRIPTION, "workspace"))
        for name, value in (("image", "ttylinux-xen"), ("quantity", "1"), ("nic", "public")):
            etree.SubElement(workspace, qname(CTX_DESCRIPTION, name)).text = value
        etree.SubElement(workspace, qname(CTX_DESCRIPTION, "ctx"))
    return body


def _all() -> etree._Element:
    body = etree.Element(qname(CTX, "identities"))
    body.append(_text(qname(CTX_TYPES, "all"), "true"))
    return body


def _text(tag: str, text: str) -> etree._Element:
    element = etree.Element(tag)
    element.text = text
    return element


def test_replies_are_valid_against_the_wsdl(gt4):
    """What the broker sends is what its WSDL and the 2008/12 schemas declare."""
    from tests.test_wsdl import assert_valid

    service = "NimbusContextBroker"
    create = _text(qname(CTX, "createContext"), "")
    create.append(_text(qname(CTX_TYPES, "expectInjections"), "true"))
    assert_valid(service, contexts.call(gt4, contexts.broker(gt4), "create", create))
    context = contexts.create_context(gt4, expect_injections=True)
    (head_ip, head_name), (worker_ip, worker_name) = two_members(gt4, context)
    contexts.inject(gt4, context.epr, jobs="slots=4")
    contexts.no_more_injections(gt4, context.epr)
    contexts.agent_post(context, "retrieve", contexts.identity_line(head_ip, head_name))
    retrieve = _identity_body("retrieve", worker_ip, worker_name)
    assert_valid(service, retrieve)
    reply = contexts.call(gt4, context.epr, "retrieve", retrieve)
    assert reply.findtext(qname(CTX_TYPES, "complete")) == "true"
    (role,) = reply.iter(qname(CTX_DESCRIPTION, "role"))
    assert (role.get(qname(CTX_DESCRIPTION, "name")), role.text) == ("head", head_ip)
    for element in (reply, contexts.call(gt4, context.epr, "identities", _all())):
        assert_valid(service, element)
    (rp,) = gt4.get_property(context.epr, contexts.STATUS)
    assert_valid(service, rp)
    matched = rp.find(qname(CTX_TYPES, "matchedRole"))
    assert [matched.findtext(qname(CTX_TYPES, n)) for n in ("name", "numFilledProviders", "numProvidersInContext")] == [
        "head",
        "1",
        "1",
    ]
    with pytest.raises(SoapFault) as fault:
        contexts.inject(gt4, context.epr, jobs="more")
    assert_valid(service, fault.value.detail)


def test_a_longer_member_lease_keeps_its_context(gt4, service, clock):
    context = contexts.create_context(gt4)
    (epr,) = created_eprs(contexts.join(gt4, context.epr, lock=True))
    service.manager.set_termination_time(SERVICE, int(epr.key(WORKSPACE_KEY)), clock.now() + timedelta(days=3))
    clock.advance(timedelta(days=2))
    assert service.contexts.expire_due() == []
    assert contexts.status(gt4, context.epr)["totalNodes"] == "1"


@pytest.mark.parametrize(
    ("operation", "body", "problem"),
    [
        ("create", [(qname(CTX_TYPES, "expectInjections"), "perhaps")], "xsd:boolean"),
        ("retrieve", [], "names no identity"),
        ("errorExiting", [(qname(CTX_TYPES, "errorcode"), "x")], "not a number"),
        ("injectdata", [], "carries no data"),
    ],
)
def test_a_malformed_request_is_the_broker_fault_and_changes_nothing(gt4, operation, body, problem):
    context = contexts.create_context(gt4)
    contexts.join(gt4, context.epr, lock=True)
    element = etree.Element(
        qname(CTX, {"create": "createContext", "injectdata": "injectData"}.get(operation, operation))
    )
    for tag, text in body:
        element.append(_text(tag, text))
    target = contexts.broker(gt4) if operation == "create" else context.epr
    with pytest.raises(SoapFault) as refused:
        contexts.call(gt4, target, operation, element)
    assert refused.value.element == FAULT and problem in refused.value.description
    assert contexts.status(gt4, context.epr) == {
        "noMoreInjections": "true",
        "complete": "false",
        "totalNodes": "1",
        "numNodesRegistered": "0",
        "allOK": "false",
        "errorPresent": "false",
    }


def test_an_unknown_or_destroyed_context_is_the_declared_fault(gt4):
    context = contexts.create_context(gt4)
    contexts.destroy(gt4, context.epr)
    with pytest.raises(SoapFault) as gone:
        contexts.call(gt4, context.epr, "identities", _all())
    assert gone.value.element == FAULT and "no context with key" in gone.value.description
    with pytest.raises(SoapFault) as gone:
        contexts.destroy(gt4, context.epr)
    assert gone.value.element == qname(WSRL, "ResourceUnknownFault")
