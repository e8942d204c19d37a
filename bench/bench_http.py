"""The HTTP front under 20 concurrent clients, and beside slow ones, against its floor in one run.

Each load line: 20 keep-alive clients in 4 processes for 5 s; requests/s, latency p50 and p99.
- bare HTTP floor: an asyncio responder answering every request with a fixed reply, parsing
  nothing: what loopback, the load processes and one event loop cost;
- an lxml echo (parse the envelope, send it back) on vws's front;
- vws GetResourceProperty (a workspace's currentState) on vws's front;
- both again on cheroot, the front before this one, when it is installed (pip install cheroot).
Then, per front, how long one new client waits for its reply while 200 idle connections and
20 slowloris ones (a header line every second) are open.
"""

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from common import echo_app, exchange, front, load, load_report, running_service
from lxml import etree

from tests.gt4wire import Gt4Client, created_eprs, envelope
from vws.xmlns import TYPES, WSRP, WSRP_ACTION, qname

SECONDS = 5
PROBE_WAIT = 20.0


class _FixedReply(asyncio.Protocol):
    reply = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            fields = bytes(self.buffer[:end]).lower().split(b"\r\n")
            length = next((int(field[15:]) for field in fields if field.startswith(b"content-length:")), 0)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(self.reply)  # type: ignore[attr-defined]


@contextmanager
def floor(reply_body: bytes) -> Iterator[tuple[str, int]]:
    _FixedReply.reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply_body) + reply_body
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(_FixedReply, "127.0.0.1", 0, backlog=1024))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        server.close()
        loop.close()


def cheroot_front() -> Callable[[Callable], AbstractContextManager[tuple[str, int]]] | None:
    try:
        from cheroot import wsgi
    except ImportError:
        return None

    @contextmanager
    def serve(app: Callable) -> Iterator[tuple[str, int]]:
        server = wsgi.Server(("127.0.0.1", 0), app, numthreads=16)
        server.prepare()
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            yield server.bind_addr[:2]
        finally:
            server.stop()
            thread.join()

    return serve


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: text/xml; charset=utf-8\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def slow_clients_probe(address: tuple[str, int], request: bytes, idle: int = 200, slow: int = 20) -> float | None:
    """Seconds one new client waits for its reply beside idle and slowloris connections; None: no reply."""
    connections = [socket.create_connection(address) for _ in range(idle + slow)]
    stop = threading.Event()

    def trickle() -> None:
        lines = iter([b"POST /wsrf/services/WorkspaceService HTTP/1.1\r\n", *(b"X-%d: 1\r\n" % n for n in range(99))])
        for line in lines:
            for connection in connections[idle:]:
                try:
                    connection.sendall(line)
                except OSError:
                    pass  # cut by the server's header deadline
            if stop.wait(1.0):
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=PROBE_WAIT) as connection:
            exchange(connection, request, bytearray())
        return time.perf_counter() - started
    except OSError:
        return None
    finally:
        stop.set()
        trickler.join()
        for connection in connections:
            connection.close()


def probe_report(name: str, waited: float | None) -> None:
    outcome = f"{waited * 1e3:9.1f} ms" if waited is not None else f"no reply within {PROBE_WAIT:.0f} s"
    print(f"{name:<44} {outcome}")


def main() -> None:
    cheroot = cheroot_front()
    with running_service() as service:
        client = Gt4Client(service.base_url)
        (epr,) = created_eprs(client.create())
        body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "t": TYPES})
        body.text = "t:currentState"
        message = envelope(epr.address, WSRP_ACTION + "GetResourceProperty", body, epr.properties)
        status, reply = client.post(epr.address, message)
        client.close()
        echo_request, rp_request = post("/echo", message), post("/wsrf/services/WorkspaceService", message)
        vws_address = service.base_url.split("/")[2].split(":")
        vws_address = (vws_address[0], int(vws_address[1]))

        print(f"{SECONDS} s of 20 concurrent keep-alive clients:")
        with floor(etree.tostring(reply)) as address:
            floor_rate = load_report("bare HTTP floor (fixed reply)", load(address, rp_request, seconds=SECONDS))
        with front(echo_app) as address:
            load_report("lxml echo on vws's front", load(address, echo_request, seconds=SECONDS))
        rp = load_report("GetResourceProperty on vws's front", load(vws_address, rp_request, seconds=SECONDS))
        print(f"{'ratio GetResourceProperty / floor':<44} {rp['per_s'] / floor_rate['per_s']:.2f}x (requests/s)")
        if cheroot is not None:
            with cheroot(echo_app) as address:
                load_report("lxml echo on cheroot", load(address, echo_request, seconds=SECONDS))
            with cheroot(service.app) as address:
                load_report("GetResourceProperty on cheroot", load(address, rp_request, seconds=SECONDS))

        print("one new client beside 200 idle and 20 slowloris connections:")
        probe_report("GetResourceProperty on vws's front", slow_clients_probe(vws_address, rp_request))
        if cheroot is not None:
            with cheroot(service.app) as address:
                probe_report("GetResourceProperty on cheroot", slow_clients_probe(address, rp_request))
        else:
            print("(cheroot is not installed: pip install cheroot to compare with the front before)")


if __name__ == "__main__":
    main()
