"""spyne, confined: one spyne Application per port type, over our own envelope handling.

spyne contributes what it is good at: the WSGI transport, the method context and the
dispatch of a request to its method. What spyne cannot do for WSRF we do in a Soap11
subclass: parse once with the hardened parser, let the gatekeeper verify the
envelope, map body elements from foreign namespaces (WS-ResourceProperties,
WS-ResourceLifetime) to methods, and write replies and WS-BaseFaults ourselves.
"""

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from lxml import etree
from spyne import AnyXml, Application, Fault, ServiceBase, const, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from vws.clock import Clock
from vws.errors import MalformedMessage, VersionMismatch, VwsError, WrongDestination
from vws.soap import faults
from vws.soap.dispatch import Call, Operation, PortType
from vws.soap.gatekeeper import Admission, Gatekeeper, log_refusal
from vws.soap.porttypes.common import RESOURCE_KEYS
from vws.wsrf.addressing import MessageHeaders, reply_headers
from vws.xmlns import SOAP_ENV, qname
from vws.xmlparse import adopt, parse

# spyne logs every Fault a method raises as an exception; ours are expected answers,
# and unexpected ones are logged once with an incident key by vws.soap.faults.
for _name in ("spyne.application", "spyne.server._base"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)
# Each port type is its own Application under one dispatch namespace, by design.
logging.getLogger("spyne.util.appreg").setLevel(logging.ERROR)
# spyne ends a request with a full gc.collect() once a second (for the files of its own
# file transports, which vws does not use): one pass over every object of the process,
# holding the GIL, so it grew with the live workspaces (0.5 s at 10,000) and stalled every
# request. Python's own collector runs as allocation calls for it.
const.MIN_GC_INTERVAL = float("inf")

_SPYNE_TNS = "urn:vws:dispatch"
# One INFO line per SOAP request, on a logger of its own so an admin can route it.
requests_log = logging.getLogger("vws.requests")
_ANSWER = "vws.answer"  # the environ key where serialize leaves what the request was and how it ended


@dataclass(frozen=True)
class Answer:
    """One SOAP request as operators see it: who asked what of which resource, how it ended, how long it took."""

    service: str
    operation: str  # "-" when the request never named one the service has
    caller: str  # the verified identity; "-" when the request was refused before it was known
    resource: str  # the resource key the request echoed; "-" for none (the factory)
    outcome: str  # "ok", or the fault's name: its WS-BaseFaults element, else its faultcode
    seconds: float


@dataclass(frozen=True)
class _Ending:
    operation: str
    caller: str
    resource: str
    outcome: str


def log_answer(answer: Answer) -> None:
    """The request's line: its fields also ride on the record, for a structured handler."""
    requests_log.info(
        '%s.%s resource=%s outcome=%s caller="%s" ms=%.1f',
        answer.service,
        answer.operation,
        answer.resource,
        answer.outcome,
        answer.caller,
        answer.seconds * 1000,
        extra={"answer": answer},
    )


_UNANSWERED = _Ending("-", "-", "-", "Server")  # spyne gave up before serialize: nothing else is known


class _Refusal(Fault):
    """Carries a VwsError (or an unexpected exception) through spyne to our serializer."""

    def __init__(self, error: BaseException, table: faults.FaultTable) -> None:
        super().__init__("Server", str(error))
        self.error = error
        self.table = table


def _path(url: str) -> str:
    return unquote(urlsplit(url).path).rstrip("/")


def check_destination(to: str | None, signed: bool, address: str, environ: Mapping[str, object]) -> None:
    """wsa:To must name this endpoint: by its path, the one it was POSTed to or its public ``address``.

    Scheme, host and port are not compared: behind a TLS-terminating or renaming proxy the
    client's To and what this process sees differ there (and base_url may add a path prefix).
    A signed message must carry a To (signed, as the policy requires of every WS-Addressing
    header), so its signature binds it to one endpoint; an unsigned one comes on a channel
    that is trusted or not checked at all.
    """
    if to is None:
        if signed:
            raise WrongDestination("a signed message must name its endpoint: it has no wsa:To header")
        return
    received = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    if _path(to) not in (_path(received), _path(address)):
        raise WrongDestination(f"wsa:To {to} names another endpoint than {address}, which received the message")


class _WsrfSoap11(Soap11):
    def __init__(self, port_type: PortType, gatekeeper: Gatekeeper, clock: Clock, address: str) -> None:
        super().__init__(validator=None)
        self._service = port_type.service
        self._operations = {op.request: op for op in port_type.operations()}
        self._gatekeeper = gatekeeper
        self._clock = clock
        self._address = address

    def create_in_document(self, ctx, charset=None) -> None:  # type: ignore[no-untyped-def]
        try:
            ctx.in_document = _soap11(parse(b"".join(ctx.in_string)))
        except VwsError as error:
            raise _Refusal(error, faults.ENVELOPE) from None

    def decompose_incoming_envelope(self, ctx, message=Soap11.REQUEST) -> None:  # type: ignore[no-untyped-def]
        environ = ctx.transport.req_env
        try:
            admission = self._gatekeeper.admit(ctx.in_document, environ)
            headers = MessageHeaders.parse(admission.headers)
            check_destination(headers.to, admission.verified is not None, self._address, environ)
        except WrongDestination as wrong:  # sent elsewhere, or redirected by a man in the middle
            log_refusal(wrong, admission.caller.identity, environ)
            raise _Refusal(wrong, faults.ENVELOPE) from None
        except VwsError as error:
            raise _Refusal(error, faults.ENVELOPE) from None
        operation = self._operations.get(admission.body.tag)
        if operation is None:
            raise _Refusal(
                MalformedMessage(f"{self._service} has no operation for {admission.body.tag}"), faults.ENVELOPE
            )
        if operation.changes_state:
            try:
                self._gatekeeper.record(admission, environ)
            except VwsError as error:
                raise _Refusal(error, faults.ENVELOPE) from None
        ctx.udc = _Exchange(operation, admission, Call(self._service, admission.body, headers, admission.caller))
        ctx.in_header_doc = list(admission.headers)
        ctx.in_body_doc = admission.body
        ctx.method_request_string = qname(_SPYNE_TNS, operation.name)

    def deserialize(self, ctx, message) -> None:  # type: ignore[no-untyped-def]
        ctx.in_object = [ctx.in_body_doc]  # handlers read the Call, not spyne objects

    def serialize(self, ctx, message) -> None:  # type: ignore[no-untyped-def]
        exchange: _Exchange | None = ctx.udc
        if ctx.out_error is not None:
            reply = self._fault_envelope(ctx.out_error)
        else:
            assert exchange is not None
            headers = reply_headers(exchange.operation.reply_action, exchange.call.headers.message_id)
            reply = _envelope(headers, ctx.out_object[0])
        if exchange is not None:  # admitted: its reply, fault or not, is sealed as the gate says
            self._gatekeeper.seal(reply, exchange.admission)
        ctx.out_document = reply
        ctx.transport.req_env[_ANSWER] = _ending(exchange, reply if ctx.out_error is not None else None)

    def _fault_envelope(self, error: Fault) -> etree._Element:
        if isinstance(error, _Refusal):
            body = faults.fault_body(error.error, error.table, self._clock.now())
        else:  # spyne's own refusals (wrong HTTP verb, content type)
            body = faults.fault_body(MalformedMessage(error.faultstring), faults.ENVELOPE, self._clock.now())
        return _envelope([], body)


def _soap11(document: etree._Element) -> etree._Element:
    name = etree.QName(document)
    if name.localname == "Envelope" and name.namespace != SOAP_ENV:
        raise VersionMismatch(f"this service speaks SOAP 1.1 ({SOAP_ENV}), not {name.namespace or 'no namespace'}")
    return document


def _ending(exchange: "_Exchange | None", fault_envelope: etree._Element | None) -> _Ending:
    outcome = "ok" if fault_envelope is None else _fault_name(fault_envelope)
    if exchange is None:
        return _Ending("-", "-", "-", outcome)
    call = exchange.call
    resource = next(filter(None, (call.key(tag) for tag in RESOURCE_KEYS)), "-")
    return _Ending(exchange.operation.name, exchange.admission.caller.identity, resource, outcome)


def _fault_name(envelope: etree._Element) -> str:
    fault = envelope.find(f"{qname(SOAP_ENV, 'Body')}/{qname(SOAP_ENV, 'Fault')}")
    detail = fault.find("detail")
    if detail is not None and len(detail):
        return etree.QName(detail[0]).localname
    return (fault.findtext("faultcode") or "").rpartition(":")[2]


class _Exchange:
    __slots__ = ("operation", "admission", "call")

    def __init__(self, operation: Operation, admission: Admission, call: Call) -> None:
        self.operation = operation
        self.admission = admission
        self.call = call


def _envelope(headers: list[etree._Element], body: etree._Element) -> etree._Element:
    envelope = etree.Element(qname(SOAP_ENV, "Envelope"), nsmap={"soapenv": SOAP_ENV})
    if headers:
        etree.SubElement(envelope, qname(SOAP_ENV, "Header")).extend(headers)
    adopt(etree.SubElement(envelope, qname(SOAP_ENV, "Body")), body)
    return envelope


def _method(operation: Operation) -> Callable:
    def invoke(ctx, _body):  # type: ignore[no-untyped-def]
        try:
            return operation.handler(ctx.udc.call)
        except Exception as error:  # every failure becomes the fault the WSDL declares
            raise _Refusal(error, operation.faults) from None

    invoke.__name__ = operation.name
    return rpc(AnyXml, _body_style="bare", _returns=AnyXml, _in_message_name=operation.name)(invoke)


def wsgi_application(
    port_type: PortType,
    gatekeeper: Gatekeeper,
    clock: Clock,
    address: str,
    max_body_bytes: int,
    on_answer: Callable[[Answer], None] = lambda answer: None,
) -> Callable[[dict, Callable[..., object]], Iterable[bytes]]:
    """A WSGI callable that serves one port type's SOAP POSTs at its public ``address`` (of at most the
    HTTP front's body limit), logging each one on ``vws.requests`` and telling ``on_answer`` how it went."""
    methods = {op.name: _method(op) for op in port_type.operations()}
    service = type(port_type.service, (ServiceBase,), methods)
    app = Application(
        [service],
        tns=_SPYNE_TNS,
        name=port_type.service,
        in_protocol=_WsrfSoap11(port_type, gatekeeper, clock, address),
        out_protocol=_WsrfSoap11(port_type, gatekeeper, clock, address),
    )
    spyne_app = WsgiApplication(app, max_content_length=max_body_bytes)

    def answering(environ: dict, start_response: Callable[..., object]) -> Iterable[bytes]:
        began = clock.monotonic()
        reply = spyne_app(environ, start_response)
        ending = environ.get(_ANSWER, _UNANSWERED)
        elapsed = clock.monotonic() - began
        answer = Answer(port_type.service, ending.operation, ending.caller, ending.resource, ending.outcome, elapsed)
        log_answer(answer)
        on_answer(answer)
        return reply

    return answering


def refusal(clock: Clock) -> Callable[[HTTPStatus, str], tuple[str, bytes]]:
    """What the HTTP front answers a request it refuses before any port type sees it: a SOAP Client fault."""

    def render(status: HTTPStatus, reason: str) -> tuple[str, bytes]:
        body = faults.fault_body(MalformedMessage(reason), faults.ENVELOPE, clock.now())
        return "text/xml; charset=utf-8", etree.tostring(_envelope([], body), xml_declaration=True, encoding="UTF-8")

    return render
