"""Virtual clusters: from the first request to every member contextualized, and retrieve throughput.

On the libvirt test driver (one big node, a /24 of addresses, as bench_group). A cluster is
a context, a head node (one create) and N-1 workers (one create, NodeNumber N-1, locking
the context); the members' agents are simulated: each reports its identity over the agents'
HTTP door, then asks until the context is complete, then reports ok, exactly the requests
vws/context/agent.sh makes (without its back-off pauses, which would measure only themselves).
Then the retrieve rate of one member of a complete 20-member context, on a kept-alive connection.
"""

import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench_group import pool_files
from common import exchange, report, running_service

from tests import contexts
from tests.deployments import settler
from tests.gt4wire import Gt4Client
from tests.resources import create

ROUNDS = 3
RETRIEVES = 2000


def cluster(client: Gt4Client, members: int) -> tuple[contexts.Created, list[str]]:
    """A contextualized cluster of ``members``: its context and each member's identity line."""
    context = contexts.create_context(client)
    head = create(client, contexts.member_request(context.epr, provides=("head",)))
    workers = create(
        client, contexts.member_request(context.epr, node_number=members - 1, requires_roles=("head",), lock=True)
    )
    lines = [contexts.identity_line(ip, name) for ip, name in contexts.addresses(head) + contexts.addresses(workers)]
    for line in lines:  # each agent's first report
        contexts.agent_post(context, "retrieve", line)
    for line in lines:  # then its next ask finds the context complete, and it reports ok
        assert contexts.state_of(contexts.agent_post(context, "retrieve", line)[1]) == "complete"
        assert contexts.agent_post(context, "ok", line)[0] == 200
    return context, lines


def retrieve_request(context: contexts.Created, line: str) -> bytes:
    url = urlsplit(f"{context.broker_url}{context.key}/retrieve")
    body = line.encode()
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nX-Vws-Context-Secret: {context.secret}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, running_service(pool=pool_files(Path(scratch))) as service:
        client = Gt4Client(service.base_url, settle=settler(service))  # creates return once members run
        for members in (2, 20):
            latencies = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                context, _ = cluster(client, members)
                latencies.append(time.perf_counter() - started)
            report(f"{members}-member cluster to every member ok", latencies)

        context, lines = cluster(client, 20)
        url = urlsplit(context.broker_url)
        connection = socket.create_connection((url.hostname, url.port))
        request, buffer = retrieve_request(context, lines[-1]), bytearray()
        latencies = []
        for _ in range(RETRIEVES):
            started = time.perf_counter()
            assert exchange(connection, request, buffer) == 200
            latencies.append(time.perf_counter() - started)
        connection.close()
        report("retrieve, complete 20-member context", latencies)
        client.close()


if __name__ == "__main__":
    main()
