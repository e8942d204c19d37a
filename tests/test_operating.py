"""Operating the service over real HTTP: /health for a load balancer, /metrics, one log line per request."""

import http.client
import logging
import re
from contextlib import closing
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.callers import ALICE, client, serve
from tests.conftest import make_config
from tests.gt4wire import SoapFault, created_eprs
from vws.config import ConfigError, ServiceConfig
from vws.service import Service
from vws.xmlns import WORKSPACE, qname


def get(service: Service, path: str) -> tuple[int, str]:
    parts = urlsplit(service.base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_health_is_ok_while_the_store_reads(service):
    assert get(service, "/health") == (200, "ok\n")


def test_health_says_why_when_the_store_cannot_be_read(service):
    with service.store.transaction():  # held by this thread: the HTTP worker waits, then gives up
        status, text = get(service, "/health")
    assert (status, text) == (503, "unhealthy: the store has been busy for more than 2 s\n")


def samples(service: Service, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named ``metric`` on /metrics, keyed by their labels."""
    status, text = get(service, "/metrics")
    assert status == 200
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
    }


def test_metrics_count_requests_by_operation_and_outcome(service, gt4):
    kept, gone = (created_eprs(gt4.create())[0] for _ in range(2))
    assert gt4.state(kept) == "Running"
    gt4.destroy(gone)
    with pytest.raises(SoapFault) as unknown:
        gt4.state(gone)
    assert unknown.value.element.endswith("ResourceUnknownFault")

    counted = samples(service, "vws_requests_total")
    factory = (("operation", "create"), ("outcome", "ok"), ("service", "WorkspaceFactoryService"))
    assert counted[factory] == 2
    workspace = "WorkspaceService"
    assert counted[(("operation", "GetResourceProperty"), ("outcome", "ok"), ("service", workspace))] == 1
    assert (
        counted[(("operation", "GetResourceProperty"), ("outcome", "ResourceUnknownFault"), ("service", workspace))]
        == 1
    )
    latency = samples(service, "vws_request_duration_seconds_count")
    assert latency[(("operation", "create"), ("service", "WorkspaceFactoryService"))] == 2


def test_metrics_show_workspaces_by_state_as_clients_see_them(service, gt4):
    kept, gone = (created_eprs(gt4.create())[0] for _ in range(2))
    gt4.shutdown(kept)
    gt4.destroy(gone)
    assert gt4.state(kept) == "Propagated"

    by_state = {dict(labels)["state"]: value for labels, value in samples(service, "vws_workspaces").items()}
    assert by_state == {state: 1.0 if state == "propagated" else 0.0 for state in by_state}
    assert "running" in by_state and "destroyed" not in by_state


def test_metrics_show_room_leases_deployer_and_outbox(service, gt4):
    created_eprs(gt4.create())
    memory = samples(service, "vws_node_memory_mb")
    assert memory, "the embedded default has a node"
    (node,) = {dict(labels)["node"] for labels in memory}
    assert memory[(("node", node), ("use", "used"))] > 0
    assert samples(service, "vws_deployer") == {
        (("kind", kind),): 0.0 for kind in ("locks_in_use", "destroys_waiting", "copies_in_flight")
    }
    assert samples(service, "vws_notification_outbox") == {(): 0.0}
    leases = samples(service, "vws_leases")
    assert sum(value for labels, value in leases.items() if dict(labels)["use"] == "used") == 1


def test_metrics_are_open_or_off_and_off_by_default_outside_insecure(tmp_path, clock):
    assert not ServiceConfig().metrics_open and ServiceConfig(insecure=True).metrics_open
    with pytest.raises(ConfigError, match="metrics must be open or off"):
        ServiceConfig(metrics="admin")
    running = Service(make_config(tmp_path / "state").with_overrides("service", metrics="off"), clock=clock)
    running.start()
    try:
        assert get(running, "/metrics")[0] == 404
    finally:
        running.stop()


def test_one_log_line_per_request_says_who_what_which_how_and_how_long(tmp_path, clock, caplog):
    caplog.set_level(logging.INFO, logger="vws.requests")
    with serve(tmp_path / "state", clock) as running, closing(client(running, ALICE)) as alice:
        (epr,) = created_eprs(alice.create())
        key = epr.key(qname(WORKSPACE, "WorkspaceKey"))
        alice.destroy(epr)
        with pytest.raises(SoapFault):
            alice.state(epr)

    lines = [record for record in caplog.records if record.name == "vws.requests"]
    assert [record.levelno for record in lines] == [logging.INFO] * 3
    assert [line.getMessage().rpartition(" ms=")[0] for line in lines] == [
        f'WorkspaceFactoryService.create resource=- outcome=ok caller="{ALICE}"',
        f'WorkspaceService.Destroy resource={key} outcome=ok caller="{ALICE}"',
        f'WorkspaceService.GetResourceProperty resource={key} outcome=ResourceUnknownFault caller="{ALICE}"',
    ]
    assert all(re.search(r" ms=[0-9]+\.[0-9]$", line.getMessage()) for line in lines)
    assert [line.answer.caller for line in lines] == [ALICE] * 3  # the fields, for a structured handler
