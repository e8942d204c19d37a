"""Operating the service over real HTTP: /health for a load balancer, /metrics, one log line per request."""

import http.client
from urllib.parse import urlsplit

from vws.service import Service


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
