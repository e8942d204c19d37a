"""The HTTP server: whole requests in, then a bounded pool of workers runs the WSGI app.

One asyncio event loop owns every socket. It accepts (with a real listen backlog), runs
TLS handshakes, waits on idle keep-alive connections and reads each request, head and
body, within size limits and deadlines. Only a complete request reaches a worker
thread, and the loop writes the reply back, so a slow, idle, silent or non-reading
client costs a socket and a timer, never a worker.

Deadlines: a request's head must arrive within ``header_timeout`` of its first byte (a
new connection's first head: of the accept or the end of the TLS handshake), however
the client trickles it; its body within ``body_timeout`` of the head; a kept-alive
connection may wait ``idle_timeout`` for its next request; a reply must be taken
within ``body_timeout``. A refused request gets its status (408, 413, 431, 400) with a
body the ``refusal`` hook renders, and the connection is closed.

llhttp (Node.js's HTTP/1.1 parser, through httptools) reads the wire: it is strict about
framing (Content-Length, chunked, both at once) and costs microseconds in C.
"""

import asyncio
import concurrent.futures
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from vws.soap.connection import Connection

StartResponse = Callable[..., object]
WsgiApp = Callable[[dict, StartResponse], Iterable[bytes]]
# The content type and body of the reply to a request refused before the app saw it.
Refusal = Callable[[HTTPStatus, str], tuple[str, bytes]]

_DRAIN_SECONDS = 10.0  # on stop: how long replies still being written may take


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int  # a request's line and header fields
    max_body_bytes: int
    header_timeout: float  # seconds
    body_timeout: float
    idle_timeout: float
    backlog: int  # the listen queue: connections the kernel holds until the loop accepts them
    workers: int  # threads running the app
    max_connections: int  # beyond it an idle keep-alive connection is closed for a new one, or the new one is


class TlsTermination(Protocol):
    """TLS for the server: its context, and what each connection adds to the WSGI environ."""

    context: ssl.SSLContext

    def environ(self, ssl_object: ssl.SSLObject) -> dict[str, object]:
        """Entries for every request of a connection; called once, in the loop, when the handshake is done."""


def plain_refusal(status: HTTPStatus, reason: str) -> tuple[str, bytes]:
    return "text/plain; charset=utf-8", f"{reason}\n".encode()


class HttpServer:
    def __init__(self, limits: Limits, tls: TlsTermination | None = None, refusal: Refusal = plain_refusal) -> None:
        self.limits = limits
        self.tls = tls
        self.refusal = refusal
        self.app: WsgiApp | None = None
        self.stopping = False
        self.connections: dict[Connection, None] = {}  # insertion-ordered: the oldest first
        self.drained: asyncio.Event | None = None
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self.workers: concurrent.futures.ThreadPoolExecutor | None = None

    def bind(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0 picks a free one); returns the bound address."""
        self._socket = socket.create_server((host.strip("[]"), port), backlog=self.limits.backlog)
        return self._socket.getsockname()[:2]

    def start(self, app: WsgiApp) -> None:
        """Serve ``app`` on the bound socket from a background thread."""
        assert self._socket is not None, "bind first"
        self.app = app
        self.workers = concurrent.futures.ThreadPoolExecutor(self.limits.workers, thread_name_prefix="http-worker")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result()

    async def _listen(self) -> None:
        assert self._loop is not None
        tls = self.tls
        self._server = await self._loop.create_server(
            lambda: Connection(self),
            sock=self._socket,
            backlog=self.limits.backlog,
            ssl=tls.context if tls else None,
            ssl_handshake_timeout=self.limits.header_timeout if tls else None,
        )

    def stop(self) -> None:
        """Stop accepting, close idle connections, answer the requests already taken, and return."""
        if self._loop is None:  # never started: only the socket to let go
            if self._socket is not None:
                self._socket.close()
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self.workers.shutdown(wait=True, cancel_futures=True)  # type: ignore[union-attr]
        asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()  # type: ignore[union-attr]
        self._loop.close()
        self._loop = None

    async def _close(self) -> None:
        self.stopping = True
        self.drained = asyncio.Event()
        self._server.close()  # type: ignore[union-attr]
        for connection in list(self.connections):
            connection.shut()

    async def _drain(self) -> None:
        if self.connections:
            try:
                await asyncio.wait_for(self.drained.wait(), _DRAIN_SECONDS)  # type: ignore[union-attr]
            except TimeoutError:
                for connection in list(self.connections):
                    connection.abort()

    def forget(self, connection: Connection) -> None:
        self.connections.pop(connection, None)
        if self.stopping and not self.connections:
            self.drained.set()  # type: ignore[union-attr]

    def admit(self, connection: Connection) -> bool:
        """Make room for a new connection if there is too little; False: it must be closed."""
        if len(self.connections) >= self.limits.max_connections:
            idle = next((other for other in self.connections if other.idle), None)
            if idle is None:
                return False
            idle.abort()
        self.connections[connection] = None
        return True
