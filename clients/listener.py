"""A notification consumer: a small HTTP server that receives ``wsnt:Notify`` messages.

It runs in a background thread and puts every NotificationMessage it receives on
a queue, so a client waits on the queue (with a timeout) instead of polling. The
address it puts in a ConsumerReference is the one the service can reach: the
local address facing the service, or ``--listener-address`` for clients behind NAT.
"""

import queue
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from clients.resource import DESTROYED, CurrentState
from vws.errors import VwsError
from vws.wsrf.addressing import EndpointReference, key_property
from vws.wsrf.notification import TERMINATION_TOPIC, Notification, parse_notify
from vws.xmlns import SOAP_ENV, TYPES, WSNT, WSRP, qname
from vws.xmlparse import parse

# Echoed back by the service in every Notify, so one listener can tell its subscriptions apart.
CONSUMER_KEY = qname("http://www.globus.org/2008/06/workspace/client", "ConsumerKey")


class NotificationListener:
    def __init__(self, bind: tuple[str, int] = ("0.0.0.0", 0), advertise: str | None = None) -> None:
        """``advertise``: HOST or HOST:PORT to give the service instead of this side's address and port."""
        self.received: queue.Queue[Notification] = queue.Queue()
        self._server = ThreadingHTTPServer(bind, _handler(self.received))
        self._server.daemon_threads = True
        self._advertise = advertise
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="listener", daemon=True)

    def start(self) -> "NotificationListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "NotificationListener":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def address(self, service_url: str) -> str:
        """The URL a service at ``service_url`` can POST to."""
        host, port = self._server.server_address[:2]
        if self._advertise:
            advertised, _, advertised_port = self._advertise.partition(":")
            return f"http://{advertised}:{advertised_port or port}/"
        if host in ("0.0.0.0", ""):
            host = _facing(service_url)
        return f"http://{host}:{port}/"

    def consumer_reference(self, service_url: str) -> EndpointReference:
        return EndpointReference(self.address(service_url), (key_property(CONSUMER_KEY, str(uuid.uuid4())),))


def notified_state(notification: Notification) -> CurrentState | None:
    """The state a Notify tells of: the new currentState, or Destroyed for ResourceTermination."""
    if notification.topic == TERMINATION_TOPIC:
        return CurrentState(DESTROYED)
    element = notification.message.find(f"{{{WSRP}}}NewValue/{{{TYPES}}}currentState")
    return None if element is None else CurrentState.from_element(element)


def _facing(service_url: str) -> str:
    """The local address the route to the service leaves from (no packet is sent)."""
    parts = urlsplit(service_url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        return probe.getsockname()[0]


def _handler(received: queue.Queue[Notification]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                notify = parse(body).find(f"{{{SOAP_ENV}}}Body/{{{WSNT}}}Notify")
                if notify is None:
                    raise VwsError("expected a SOAP envelope with a wsnt:Notify body")
                for notification in parse_notify(notify):
                    received.put(notification)
            except (VwsError, ValueError) as exc:
                self._answer(400, str(exc).encode())
                return
            self._answer(202, b"")

        def _answer(self, status: int, text: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a client's terminal is not a server log

    return Handler
