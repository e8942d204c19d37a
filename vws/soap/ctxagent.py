"""The context agents' door: a small HTTP interface beside SOAP, in lines a shell can read.

A member's agent (vws/context/agent.sh) has only sh and curl or wget, so it neither signs
SOAP nor parses JSON; it POSTs plain text to ``<base>/ctx/<context key>/<action>`` with
the context's secret in an ``X-Vws-Context-Secret`` header:

    retrieve, ok   identity <nic> <ip> <hostname> [<ssh public key>]     one line per NIC
    error          the identity lines, then: error <code> <message>

and ``retrieve`` answers, text/plain:

    state wait|complete|cancelled
    reason <why it is cancelled>
    host <ip> <hostname> [<ssh public key>]     each peer it requires (complete)
    role <role> <ip>                            each provider of a role it requires
    data <name> <base64 of the value>           each datum it requires

Statuses: 200, 400 (unreadable report), 403 (not this context's secret, or the context
is gone: one answer, so nothing can be probed), 409 (no member has that address yet).
"""

import base64
import logging
from collections.abc import Callable, Iterable

from vws.context.broker import ContextBroker, NotYetMember
from vws.context.model import Answer, Identity
from vws.errors import InvalidMetadata, MalformedMessage, NotAuthorized, VwsError

PATH = "/ctx/"
SECRET_HEADER = "HTTP_X_VWS_CONTEXT_SECRET"
_MAX_REPORT = 64 * 1024  # a report is a few lines per NIC

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class AgentDoor:
    """The WSGI app for everything under ``PATH``; alone on a listener of its own, it finds nothing else."""

    def __init__(self, broker: ContextBroker) -> None:
        self._broker = broker

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith(PATH):
            return _reply(start_response, "404 Not Found", f"only context agents' reports, under {PATH}\n")
        if environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, "405 Method Not Allowed", "agents POST their reports\n")
        key, _, action = environ.get("PATH_INFO", "")[len(PATH) :].partition("/")

        def answering(status: str, headers: list[tuple[str, str]]) -> object:
            log.info(
                "context agent %s context=%s status=%s peer=%s", action, key, status[:3], environ.get("REMOTE_ADDR")
            )
            return start_response(status, headers)

        return self._answer(environ, answering, key, action)

    def _answer(self, environ: dict, start_response: StartResponse, key: str, action: str) -> Iterable[bytes]:
        secret = environ.get(SECRET_HEADER, "")
        try:
            identities, error = _report(_body(environ))
            if action == "retrieve":
                return _reply(start_response, "200 OK", _render(self._broker.agent_retrieve(key, secret, identities)))
            if action in ("ok", "error"):
                if (action == "error") != (error is not None):
                    raise MalformedMessage("an error report needs one 'error <code> <message>' line; ok none")
                self._broker.agent_exiting(key, secret, identities, error)
                return _reply(start_response, "200 OK", "recorded\n")
            return _reply(start_response, "404 Not Found", "actions: retrieve, ok, error\n")
        except NotAuthorized as refused:
            log.warning("context agent refused: %s (peer %s)", refused.description, environ.get("REMOTE_ADDR"))
            return _reply(start_response, "403 Forbidden", "refused\n")
        except NotYetMember as unknown:
            return _reply(start_response, "409 Conflict", unknown.description + "\n")
        except (MalformedMessage, InvalidMetadata) as bad:
            return _reply(start_response, "400 Bad Request", bad.description + "\n")
        except VwsError as other:
            return _reply(start_response, "500 Internal Server Error", other.description + "\n")


def _body(environ: dict) -> str:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > _MAX_REPORT:
        raise MalformedMessage(f"a report of {length} bytes is too long")
    try:
        return environ["wsgi.input"].read(length).decode()
    except UnicodeDecodeError:
        raise MalformedMessage("a report is UTF-8 text") from None


def _report(text: str) -> tuple[list[Identity], tuple[int, str] | None]:
    identities, error = [], None
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "identity":
            identities.append(_identity(rest))
        elif word == "error":
            code, _, message = rest.partition(" ")
            try:
                error = (int(code), message.strip())
            except ValueError:
                raise MalformedMessage(f"error code {code!r} is not a number") from None
        elif word:
            raise MalformedMessage(f"unknown report line {word!r}")
    if not identities:
        raise MalformedMessage("a report names at least one identity")
    return identities, error


def _identity(fields: str) -> Identity:
    parts = fields.split(" ", 3)
    if len(parts) < 3:
        raise MalformedMessage("an identity line is: identity <nic> <ip> <hostname> [<ssh public key>]")
    nic, ip, hostname = (None if value in ("", "none") else value for value in parts[:3])
    pubkey = parts[3].strip() if len(parts) > 3 and parts[3].strip() else None
    return Identity(nic, ip, hostname, pubkey)


def _render(answer: Answer) -> str:
    state = "complete" if answer.complete else "cancelled" if answer.cancelled else "wait"
    lines = [f"state {state}"]
    if answer.reason:
        lines.append("reason " + " ".join(answer.reason.split()))
    for identity in answer.identities:
        if identity.ip:
            host = f"host {identity.ip} {identity.hostname or identity.ip}"
            lines.append(host + (f" {identity.pubkey}" if identity.pubkey else ""))
    lines += [f"role {role} {ip}" for role, ip in answer.roles]
    lines += [f"data {name} {base64.b64encode(value.encode()).decode()}" for name, value in answer.data]
    return "\n".join(lines) + "\n"


def _reply(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
