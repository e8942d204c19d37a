"""The EC2 door's WSGI app: read the form, verify the signature, run the action, answer in XML.

Every answer, refusals included, is EC2's: ``<{Action}Response>`` or ``<Response><Errors>``
with an EC2 code and a RequestID, so boto3 and the aws CLI report it as they would an
AWS error. An unexpected failure is logged with its request id and answered InternalError.
"""

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from vws.clock import Clock
from vws.config import Ec2Config
from vws.ec2 import actions, query
from vws.ec2.access_keys import AccessKeys, SecretsKey
from vws.ec2.actions import Action
from vws.ec2.errors import Ec2Error, from_vws, unsupported
from vws.ec2.instances import Shape
from vws.ec2.records import DoorRecords
from vws.ec2.sigv4 import SeenRequests, SignedRequest, Verifier
from vws.errors import VwsError
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.manager import WorkspaceManager

log = logging.getLogger("vws.requests")

StartResponse = Callable[[str, list[tuple[str, str]]], object]
Authorize = Callable[[str], Caller]  # the key's grid identity -> the Caller, or NotAuthorized

_STATUS = {
    200: "200 OK",
    500: "500 Internal Server Error",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    405: "405 Method Not Allowed",
    412: "412 Precondition Failed",
}


@dataclass
class _Outcome:
    """What one request came to, for the log and the metrics."""

    action: str = "-"  # "-" until the request names an action the door has (so metrics labels stay bounded)
    caller: str = "-"
    code: str = "ok"  # or the EC2 error code


# (action, caller, outcome, seconds) of each request: the service's metrics.
Observer = Callable[[str, str, str, float], None]


class Ec2App:
    def __init__(
        self,
        verifier: Verifier,
        authorize: Authorize,
        actions: Mapping[str, Action],
        clock: Clock,
        observe: Observer | None = None,
    ) -> None:
        self._verifier = verifier
        self._authorize = authorize
        self._actions = actions
        self._clock = clock
        self._observe = observe

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        request_id, started, outcome = str(uuid.uuid4()), self._clock.monotonic(), _Outcome()
        try:
            answer, status = self._answer(environ, request_id, outcome), 200
        except VwsError as error:
            failure = from_vws(error)
            outcome.code, answer, status = failure.code, query.error(failure, request_id), failure.status
        except Exception:
            log.exception("EC2 %s failed unexpectedly, request %s", outcome.action, request_id)
            failure = Ec2Error("InternalError", f"internal error; request {request_id}", 500)
            outcome.code, answer, status = failure.code, query.error(failure, request_id), failure.status
        seconds = self._clock.monotonic() - started
        log.info("ec2.%s outcome=%s caller=%r ms=%.1f", outcome.action, outcome.code, outcome.caller, seconds * 1000)
        if self._observe is not None:
            self._observe(outcome.action, outcome.caller, outcome.code, seconds)
        start_response(
            _STATUS.get(status, f"{status} Error"),
            [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", request_id)],
        )
        return [answer]

    def _answer(self, environ: dict, request_id: str, outcome: _Outcome) -> bytes:
        if environ.get("REQUEST_METHOD") != "POST":
            raise Ec2Error("InvalidRequest", "EC2 Query requests are POSTed as forms", 405)
        body = environ["wsgi.input"].read()
        params = query.Params.parse(body)
        name = params.get("Action") or ""
        action = self._actions.get(name)
        if action is not None:
            outcome.action = name
        # A ClientToken makes a request idempotent: its repeat (a retry, or a replay) changes nothing.
        guarded = action is not None and action.changes_state and not params.get("ClientToken")
        outcome.caller = self._verifier.verify(signed_request(environ, body), guarded)
        caller = self._authorize(outcome.caller)
        if action is None:
            raise unsupported(f"the action {name!r} is not supported by this service")
        if params.boolean("DryRun"):  # a caller the door admits may ask for any action: nothing else to check
            raise Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
        return query.response(name, params.get("Version"), request_id, action.handler(caller, params))


def signed_request(environ: Mapping[str, object], body: bytes) -> SignedRequest:
    headers = {
        key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    headers["content-length"] = str(len(body))
    return SignedRequest(
        str(environ["REQUEST_METHOD"]),
        str(environ.get("PATH_INFO") or "/"),
        str(environ.get("QUERY_STRING", "")),
        headers,
        body,
    )


def door_app(
    config: Ec2Config,
    state_dir: Path,
    store: Store,
    clock: Clock,
    manager: WorkspaceManager,
    images: Callable[[], list[str]],
    seen: SeenRequests,
    authorize: Authorize,
    lease: timedelta,
    observe: Observer | None = None,
) -> Ec2App:
    """The whole door, on the service's store, clock, facade and replay cache."""
    keys = AccessKeys(store, clock, SecretsKey.of(config, state_dir))
    verifier = Verifier(keys, clock, config.region, timedelta(seconds=config.clock_skew_seconds), seen)
    door = actions.Door(
        manager,
        DoorRecords(store, clock),
        images,
        Shape(config.region + "a", config.instance_type_table()),
        clock,
        lease,
        config.network,
        timedelta(seconds=config.terminated_visible_seconds),
    )
    return Ec2App(verifier, authorize, actions.table(door), clock, observe)
