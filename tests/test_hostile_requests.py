"""One request cannot hold the service (issue 10): hostile inputs over the wire get the fault
their operation declares, in bounded time, and change nothing."""

import sys
from pathlib import Path

import pytest
from lxml import etree

from tests import resources
from tests.callers import ALICE, client, serve
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.errors import InvalidPropertyName
from vws.wsrf import properties
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import (
    TYPES,
    WORKSPACE,
    WSRP,
    WSRP_ACTION,
    XPATH_DIALECT,
    qname,
)

WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
VWS_SERVICE = Path(sys.executable).parent / "vws-service"


def deploy(gt4: Gt4Client) -> EndpointReference:
    (epr,) = created_eprs(gt4.create())
    return epr


def fault_of(call) -> SoapFault:  # type: ignore[no-untyped-def]
    with pytest.raises(SoapFault) as raised:
        call()
    return raised.value


# ---- QueryResourceProperties -----------------------------------------------------------------


def query(gt4: Gt4Client, epr: EndpointReference, text: str, **prefixes: str) -> etree._Element:
    body = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP, "t": TYPES, **prefixes})
    etree.SubElement(body, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT).text = text
    return gt4.call(epr, WSRP_ACTION + "QueryResourceProperties", body)


@pytest.mark.parametrize(
    "text, prefix, namespace",
    [
        # Backtracks for seconds, doubling per 'a', in Python's re with the GIL held.
        ("re:test('aaaaaaaaaaaaaaaaaa!', '^(a+)+$')", "re", "http://exslt.org/regular-expressions"),
        ("str:padding(100000, 'x')", "str", "http://exslt.org/strings"),
        ("date:date-time()", "date", "http://exslt.org/dates-and-times"),
    ],
)
def test_extension_functions_are_refused_before_evaluation(gt4, text, prefix, namespace):
    epr = deploy(gt4)
    fault = fault_of(lambda: query(gt4, epr, text, **{prefix: namespace}))
    assert fault.element == qname(WSRP, "QueryEvaluationErrorFault")
    assert "not an XPath 1.0 core function" in fault.description


def test_a_query_that_would_run_for_minutes_is_cut_off_and_the_next_one_is_answered(gt4):
    epr = deploy(gt4)
    nested = "count(//*)"
    for _ in range(5):  # each level multiplies the work by the document's ~30 elements
        nested = f"count(//*[{nested}])"
    fault = fault_of(lambda: query(gt4, epr, nested))
    assert fault.element == qname(WSRP, "QueryEvaluationErrorFault")
    assert "took longer than" in fault.description
    assert query(gt4, epr, "string(/*/t:currentState/t:state)").text == "Running"


# ---- GetMultipleResourceProperties -------------------------------------------------------------


def get_multiple(gt4: Gt4Client, epr: EndpointReference, names: list[str]) -> etree._Element:
    body = etree.Element(qname(WSRP, "GetMultipleResourceProperties"), nsmap={"wsrp": WSRP, "t": TYPES})
    for name in names:
        etree.SubElement(body, qname(WSRP, "ResourceProperty")).text = name
    return gt4.call(epr, WSRP_ACTION + "GetMultipleResourceProperties", body)


def test_get_multiple_naming_one_property_thirty_thousand_times_is_refused(gt4):
    epr = deploy(gt4)
    fault = fault_of(lambda: get_multiple(gt4, epr, ["t:logistics"] * 30000))
    assert fault.element == qname(WSRP, "InvalidResourcePropertyQNameFault")
    assert f"at most {properties.MAX_NAMES}" in fault.description
    assert len(get_multiple(gt4, epr, ["t:currentState"] * properties.MAX_NAMES)) == properties.MAX_NAMES


def test_get_multiple_refuses_an_answer_over_the_size_limit():
    big = etree.Element("{urn:t}big")
    big.text = "x" * 200_000
    document = properties.PropertyDocument("{urn:t}root", {"{urn:t}big": lambda: [big]})
    request = etree.Element(qname(WSRP, "GetMultipleResourceProperties"), nsmap={"wsrp": WSRP, "t": "urn:t"})
    for _ in range(6):
        etree.SubElement(request, qname(WSRP, "ResourceProperty")).text = "t:big"
    with pytest.raises(InvalidPropertyName, match="would exceed"):
        properties.get_multiple(document, request)


# ---- create: groups --------------------------------------------------------------------------


def test_a_group_larger_than_the_pool_is_refused_before_a_row_is_written(gt4, service):
    written = []
    service.store.db.conn.set_trace_callback(
        lambda sql: written.append(sql) if sql.lower().startswith('insert into "workspaces"') else None
    )
    fault = fault_of(lambda: resources.create(gt4, resources.create_request(node_number=200)))
    assert fault.element == qname(TYPES, "WorkspaceSchedulingFault")
    assert "8 of 200" in fault.description  # the embedded node has 8 CPUs
    assert written == []


def test_a_group_over_max_group_size_is_denied(tmp_path, clock):
    with serve(tmp_path / "state", clock, policy={"max_group_size": 4}) as service:
        alice = client(service, ALICE)
        fault = fault_of(lambda: resources.create(alice, resources.create_request(node_number=5)))
        assert fault.element == qname(TYPES, "WorkspaceResourceRequestDeniedFault")
        assert "at most 4" in fault.description
        assert len(created_eprs(resources.create(alice, resources.create_request(node_number=4)))) == 4
