"""One request cannot hold the service (issue 10): hostile inputs over the wire get the fault
their operation declares, in bounded time, and change nothing."""

import http.client
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree

from tests import resources
from tests.callers import ALICE, client, serve
from tests.gt4wire import FACTORY_ACTION, Gt4Client, SoapFault, created_eprs, envelope
from vws.errors import InvalidPropertyName
from vws.workspace.caller import SERVICE as ADMIN
from vws.wsrf import properties
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import (
    JSDL,
    LOGISTICS,
    NEGOTIABLE,
    TYPES,
    WORKSPACE,
    WSRL,
    WSRL_ACTION,
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


@pytest.mark.parametrize(
    "text, answer",
    [
        ("count(/*/t:currentState)", "1"),
        ("count(//*[. = 're:test(1)'])", "0"),  # a call in a literal is text
        ("4 div(2)", "2"),  # an operator name before a parenthesis
        ("local-name(/*/child::node()[1])", "currentState"),
        ("concat(substring-before('a:b', ':'), translate('x', 'x', 'y'))", "ay"),
    ],
)
def test_ordinary_xpath_is_still_answered(gt4, text, answer):
    assert query(gt4, deploy(gt4), text).text == answer


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


@pytest.mark.parametrize("number", ["1000000000", "32768", "1e3", "٣", "0", "-1"])
def test_node_number_must_be_an_xsd_short_of_at_least_one(gt4, service, number):
    body = resources.create_request()
    body.find(f".//{{{NEGOTIABLE}}}NodeNumber").text = number
    fault = fault_of(lambda: resources.create(gt4, body))
    assert fault.element == qname(TYPES, "WorkspaceMetadataFault")
    assert service.manager.workspaces(ADMIN) == []


def test_sigterm_stops_a_service_in_long_work_within_stop_seconds(tmp_path):
    """A group the admin allowed to be huge keeps a worker busy for a minute; a stop must not wait for it."""
    state = tmp_path / "state"
    (tmp_path / "nodes.conf").write_text("[big]\nuri = test:///default\nmemory = 100000000\ncpus = 1000000\n")
    (tmp_path / "vws.conf").write_text(
        f"[service]\nlisten = 127.0.0.1:0\nstate_dir = {state}\ninsecure = yes\nstop_seconds = 2\n"
        "[policy]\nmax_group_size = 32767\n[pool]\nnodes_file = nodes.conf\n"
    )
    process = subprocess.Popen([VWS_SERVICE, "--config", tmp_path / "vws.conf"], stdout=subprocess.PIPE, text=True)
    try:
        base = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        wal = state / "vws.sqlite-wal"
        quiet = wal.stat().st_size
        send_without_waiting(base + "WorkspaceFactoryService", FACTORY_ACTION + "createRequest", huge_group())
        wait_for(lambda: wal.stat().st_size > quiet + 1024 * 1024, "the group's rows spilling into the WAL")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)  # the work would go on for a minute
    finally:
        process.kill()
        process.wait()
    with sqlite3.connect(state / "vws.sqlite") as db:  # cut off whole, or done whole
        assert db.execute("select count(*) from workspaces").fetchone() in {(0,), (32767,)}


def huge_group() -> etree._Element:
    body = resources.create_request(node_number=32767, memory_mb=1, initial_state="Unpropagated")
    for nic in list(body.iter(qname(LOGISTICS, "nic"))):
        nic.getparent().remove(nic)
    return body


def send_without_waiting(url: str, action: str, body: etree._Element) -> None:
    """POST a request and leave: its reply never comes, the process stops first."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    connection.request("POST", parts.path, envelope(url, action, body), headers)


def wait_for(condition, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Poll another process's observable state (a file) until ``condition`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no sign of {what} after {seconds} s"
        time.sleep(0.02)


# ---- lexical forms of keys, numbers, durations and times -----------------------------------------


def with_key(epr: EndpointReference, key: str) -> EndpointReference:
    return EndpointReference(epr.address, (key_property(WORKSPACE_KEY, key),))


@pytest.mark.parametrize("key", ["²", "9" * 5000, "9" * 30, "١", "\u00a01", "01", "+1"])
def test_a_workspace_key_has_one_spelling(gt4, key):
    epr = deploy(gt4)
    assert epr.key(WORKSPACE_KEY) == "1"
    fault = fault_of(lambda: gt4.destroy(with_key(epr, key)))
    assert fault.element == qname(WSRL, "ResourceUnknownFault")
    fault = fault_of(lambda: gt4.state(with_key(epr, key)))
    assert fault.element == qname(WSRP, "ResourceUnknownFault")
    assert gt4.state(epr) == "Running"


@pytest.mark.parametrize("memory", ["1e308", "99999999999999999999999", "١٢٨", "1_024", "inf", "9" * 5000])
def test_memory_must_be_a_number_in_range(gt4, memory):
    body = resources.create_request()
    body.find(f".//{{{JSDL}}}IndividualPhysicalMemory/{{{JSDL}}}Exact").text = memory
    fault = fault_of(lambda: resources.create(gt4, body))
    assert fault.element == qname(TYPES, "WorkspaceMetadataFault")
    assert "IndividualPhysicalMemory" in fault.description


@pytest.mark.parametrize("duration", ["PT0S", "P0D", "P99999999999D", "PT99999999999999999999H", "P١D"])
def test_a_duration_must_be_positive_representable_and_ascii(gt4, duration):
    fault = fault_of(lambda: resources.create(gt4, resources.create_request(duration=duration)))
    assert fault.element == qname(TYPES, "WorkspaceMetadataFault")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-W48-3"])
def test_a_termination_time_must_be_an_xsd_datetime_on_the_calendar(gt4, moment):
    epr = deploy(gt4)
    body = etree.Element(qname(WSRL, "SetTerminationTime"), nsmap={"wsrl": WSRL})
    etree.SubElement(body, qname(WSRL, "RequestedTerminationTime")).text = moment
    fault = fault_of(lambda: gt4.call(epr, WSRL_ACTION + "SetTerminationTime", body))
    assert fault.element == qname(WSRL, "TerminationTimeChangeRejectedFault")
    assert "xsd:dateTime" in fault.description
