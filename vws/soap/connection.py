"""One client connection of the HTTP front (vws.soap.server): parsing, deadlines, replies.

llhttp reads the wire; a complete request is handed to one of the server's workers and
its reply written back in order. Each connection has one deadline, for the wait it is in
(a head, a body, the next request, a reply taken), and one timer: a timer due no later
than the deadline is left alone and, when it fires early, set again for the deadline, so
a quick request on a kept-alive connection moves no timer at all.
"""

import asyncio
import io
import logging
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

import httptools

if TYPE_CHECKING:  # the server makes connections: at run time only it imports the other
    from vws.soap.server import HttpServer, WsgiApp

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"})
_LINGER_SECONDS = 2.0  # after a refusal: input still arriving is read and dropped, so the client sees the reply


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Request:
    url: bytes = b""
    path: bytes = b"/"
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    method: bytes = b""
    version: str = "1.1"
    keep_alive: bool = True


class Connection(asyncio.Protocol):
    """One client connection: parses requests, keeps their deadlines, hands complete ones to a worker."""

    def __init__(self, server: "HttpServer") -> None:
        self.server = server
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.request = _Request()
        self.ready: deque[_Request | _Refused] = deque()  # complete requests (or a refusal), in order
        self.in_body = False  # the request's head is complete, its body is coming
        self.fed = 0  # bytes of the current head or body fed to the parser
        self.started = False  # a request's first byte has arrived
        self.busy = False  # a request is with a worker
        self.refused = False  # the parser stopped: input is dropped
        self.writing_paused = False
        self.client_done = False  # the client half-closed after its request
        self.since = 0.0  # when the current wait began
        self.first = True  # no request answered yet
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: tuple[float, Callable[[], None]] | None = None  # when, and what then
        self.environ: dict[str, object] = {}

    @property
    def idle(self) -> bool:
        return not (self.started or self.busy or self.ready or self.refused)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.server.stopping or not self.server.admit(self):
            transport.abort()
            return
        self.environ = self._connection_environ()
        if self.server.tls is not None:
            self.environ.update(self.server.tls.environ(transport.get_extra_info("ssl_object")))
        self.since = self._now()
        self._rearm()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering after a refusal, or the parser is done with this connection
        view = memoryview(data)
        try:
            while view:
                room = self._room()
                piece, view = view[:room], view[room:]
                self.fed += len(piece)
                self.parser.feed_data(piece)
        except _Refused as refusal:
            self._queue_refusal(refusal)
        except httptools.HttpParserError as error:
            cause = error.__context__
            if cause is not None and not isinstance(cause, _Refused):
                raise cause from error  # a fault of ours in a parser callback: asyncio logs it and closes
            self._queue_refusal(cause or _Refused(HTTPStatus.BAD_REQUEST, f"malformed HTTP request: {error}"))

    def _room(self) -> int:
        """How much more input the head or body being received may take. A head is fed no further
        than its limit, so an oversized one is never buffered; a chunked body's framing and
        trailers may add a head's worth to the body's own limit (which on_body checks)."""
        limits = self.limits
        if self.in_body:
            room = limits.max_body_bytes + limits.max_header_bytes - self.fed
            if room <= 0:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large())
        else:
            room = limits.max_header_bytes - self.fed
            if room <= 0:
                raise _Refused(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"request head larger than {limits.max_header_bytes} bytes",
                )
        return room

    def eof_received(self) -> bool:
        """The client is done sending: close, or (plain TCP) once the replies it is owed are written."""
        self.client_done = True
        return bool(self.busy or self.ready) and self.transport.can_write_eof()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.writing_paused = True  # a client not taking its reply: no new request until it does
        self.since = self._now()
        self.transport.pause_reading()  # type: ignore[union-attr]
        self._rearm()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.since = self._now()
        if not self.busy and not self.refused:
            self.transport.resume_reading()  # type: ignore[union-attr]
        self._rearm()

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        self.started = True
        self.request = _Request()
        if not self.first:  # a kept-alive connection's next request: its head deadline starts now
            self.since = self._now()
        self._rearm()

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request, parser = self.request, self.parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():
            raise _Refused(HTTPStatus.BAD_REQUEST, "protocol upgrades and CONNECT are not supported")
        try:
            url = httptools.parse_url(request.url)
        except httptools.HttpParserInvalidURLError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request target") from None
        request.path, request.query = url.path or b"/", url.query or b""
        headers = {name.lower(): value for name, value in request.headers}
        length = headers.get(b"content-length")
        if length is not None and int(length) > self.limits.max_body_bytes:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large())
        expects = headers.get(b"expect", b"").lower() == b"100-continue" and request.version == "1.1"
        if expects and not (self.busy or self.ready):  # (a pipelined one gets none: replies go in order)
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
        self.in_body, self.fed = True, 0
        self.since = self._now()
        self._rearm()

    def on_body(self, body: bytes) -> None:
        self.request.body += body
        if len(self.request.body) > self.limits.max_body_bytes:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large())

    def on_message_complete(self) -> None:
        self.ready.append(self.request)
        self.started = False
        self.in_body, self.fed = False, 0
        self._next()

    # the request's way through a worker and back

    def _next(self) -> None:
        if self.busy or not self.ready or self.transport.is_closing():  # type: ignore[union-attr]
            return
        item = self.ready.popleft()
        if isinstance(item, _Refused):
            self._refuse(item)
            return
        self.busy = True
        self.transport.pause_reading()  # type: ignore[union-attr]
        self.deadline = None  # a worker's time is not the client's: the timer, if it fires, finds none
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self.server.workers, self._answer, item).add_done_callback(self._answered)

    def _answer(self, request: _Request) -> tuple[bytes, bool]:
        """In a worker: the app's reply to ``request``, and whether the connection stays open."""
        status, headers, body = _call(self.server.app, self._environ(request))
        keep_alive = request.keep_alive and not self.server.stopping
        return _reply(status, headers, body, request, keep_alive), keep_alive

    def _answered(self, done: asyncio.Future) -> None:
        self.busy = False
        transport = self.transport
        if transport.is_closing():  # type: ignore[union-attr]
            return
        if done.cancelled() or done.exception() is not None:  # the server is stopping, or a fault of ours
            if not done.cancelled():
                log.error("no reply could be made", exc_info=done.exception())
            transport.abort()  # type: ignore[union-attr]
            return
        reply, keep_alive = done.result()
        transport.write(reply)  # type: ignore[union-attr]
        if not keep_alive or self.client_done:
            transport.close()  # type: ignore[union-attr]
            return
        self.first = False
        self.since = self._now()  # the idle wait, or a pipelined request's deadline, starts now
        if not self.writing_paused:
            transport.resume_reading()  # type: ignore[union-attr]
        self._rearm()
        self._next()

    def shut(self) -> None:
        """The server is stopping: close now unless a request is with a worker (then after its reply)."""
        if not self.busy:
            self.transport.close()  # type: ignore[union-attr]

    def abort(self) -> None:
        self.transport.abort()  # type: ignore[union-attr]

    # refusals and deadlines

    def _queue_refusal(self, refusal: _Refused) -> None:
        self.refused = True
        self.ready.append(refusal)
        self._next()

    def _refuse(self, refusal: _Refused) -> None:
        """Answer and close; input still coming is read and dropped a while, so the client reads the answer."""
        self.refused = True
        self.deadline = None
        self._cancel_timer()
        content_type, body = self.server.refusal(refusal.status, refusal.reason)
        status = f"{refusal.status.value} {refusal.status.phrase}"
        log.info("refused a request from %s: %s, %s", self.environ.get("REMOTE_ADDR"), status, refusal.reason)
        transport = self.transport
        transport.write(_reply(status, [("Content-Type", content_type)], body, _Request(), False))  # type: ignore
        if not transport.can_write_eof():  # type: ignore[union-attr]
            transport.close()  # type: ignore[union-attr]
            return
        transport.write_eof()  # type: ignore[union-attr]
        transport.resume_reading()  # type: ignore[union-attr]
        self.timer = asyncio.get_running_loop().call_later(_LINGER_SECONDS, self.abort)

    def _rearm(self) -> None:
        """Set the deadline of the wait the connection is in; the timer moves only to come sooner."""
        self.deadline = self._deadline()
        if self.deadline is None or (self.timer is not None and self.timer.when() <= self.deadline[0]):
            return
        self._set_timer(self.deadline[0])

    def _deadline(self) -> tuple[float, Callable[[], None]] | None:
        if self.refused or self.busy:
            return None
        limits = self.limits
        if self.writing_paused:
            wait, expire = limits.body_timeout, self.abort
        elif not self.started:
            wait, expire = (limits.header_timeout if self.first else limits.idle_timeout), self._close_idle
        elif not self.in_body:
            wait, expire = limits.header_timeout, self._head_late
        else:
            wait, expire = limits.body_timeout, self._body_late
        return self.since + wait, expire

    def _set_timer(self, when: float) -> None:
        self._cancel_timer()
        self.timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        fired = self.timer.when()  # type: ignore[union-attr]
        self.timer = None
        if self.deadline is None:
            return
        when, expire = self.deadline
        if when > fired:  # the deadline moved on since the timer was set
            self._set_timer(when)
            return
        self.deadline = None
        expire()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _close_idle(self) -> None:
        self.transport.close()  # type: ignore[union-attr]

    def _head_late(self) -> None:
        self._queue_refusal(
            _Refused(HTTPStatus.REQUEST_TIMEOUT, f"request head not received within {self.limits.header_timeout} s")
        )

    def _body_late(self) -> None:
        self._queue_refusal(
            _Refused(HTTPStatus.REQUEST_TIMEOUT, f"request body not received within {self.limits.body_timeout} s")
        )

    def _too_large(self) -> str:
        return f"request body exceeds the limit of {self.limits.max_body_bytes} bytes"

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # WSGI

    def _connection_environ(self) -> dict[str, object]:
        transport = self.transport
        server_host, server_port = transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        peer = transport.get_extra_info("peername") or ("", 0)  # type: ignore[union-attr]
        return {
            "SERVER_NAME": server_host,
            "SERVER_PORT": str(server_port),
            "REMOTE_ADDR": peer[0],
            "REMOTE_PORT": str(peer[1]),
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.server.tls else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }

    def _environ(self, request: _Request) -> dict[str, object]:
        environ = {
            **self.environ,
            "REQUEST_METHOD": request.method.decode("ascii"),
            "PATH_INFO": unquote_to_bytes(request.path).decode("latin-1"),
            "QUERY_STRING": request.query.decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "CONTENT_LENGTH": str(len(request.body)),
            "wsgi.input": io.BytesIO(request.body),
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper()
            if "_" in name or name in ("CONTENT-LENGTH", "TRANSFER-ENCODING"):
                continue  # underscores would alias dashes; the body's length is the one read
            key = "CONTENT_TYPE" if name == "CONTENT-TYPE" else "HTTP_" + name.replace("-", "_")
            value = raw_value.decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ


def _call(app: "WsgiApp", environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to the end: its status, headers and whole body."""
    started: list = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable:
        started[:] = [status, headers]  # nothing is sent before the app returns: a later call replaces
        return written.append

    try:
        result = app(environ, start_response)
        try:
            written.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
    except Exception:
        log.exception("the WSGI app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
        return "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")], b"internal error\n"
    return status, headers, b"".join(written)


def _reply(status: str, headers: list[tuple[str, str]], body: bytes, request: _Request, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_BY_HOP]
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    elif request.version == "1.0":
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if request.method == b"HEAD" else head + body
