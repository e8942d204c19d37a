"""AWS Signature Version 4, verified: who signed a request, and that it is fresh and not replayed.

botocore's own signer computes the signature the request should carry, from the headers
the client says it signed, the body's real SHA-256 and the access key's secret; the two
are compared in constant time. Then the request's X-Amz-Date must be within the clock
skew of the service's (injected) clock, and a request that changes something must not
have been seen before: its signature is remembered until it could no longer be fresh
(the store's replay cache, the one the SOAP door uses, so a restart forgets nothing).

Requests that only read (``Describe*``) are not held to the replay rule: two identical
reads in the same second carry the same signature (X-Amz-Date has one-second
resolution), and a replayed read changes nothing. Nor is a request with a ClientToken,
which the token makes idempotent: botocore retries RunInstances with the same token,
and the repeat answers the reservation the first made. Any other identical request
within the skew, a legitimate repeat in the same second included, is refused.
"""

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from vws.clock import Clock
from vws.ec2.access_keys import AccessKeys
from vws.ec2.errors import Ec2Error, auth_failure

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "ec2"
_AUTHORIZATION = re.compile(
    ALGORITHM + r" Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_REQUIRED = {"host", "x-amz-date"}


class SeenRequests(Protocol):
    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` is offered (until ``until``), False for a repeat."""


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    date: str
    region: str
    service: str


class Verifier:
    def __init__(self, keys: AccessKeys, clock: Clock, region: str, skew: timedelta, seen: SeenRequests) -> None:
        self._keys = keys
        self._clock = clock
        self._region = region
        self._skew = skew
        self._seen = seen

    def verify(self, request: SignedRequest, refuse_replay: bool) -> str:
        """The grid identity the request's access key is bound to; else an AuthFailure or RequestExpired."""
        found = _AUTHORIZATION.fullmatch(request.headers.get("authorization", "").strip())
        if found is None:
            raise auth_failure(f"the request must be signed with {ALGORITHM} (AWS Signature Version 4)")
        credential = self._credential(found["credential"])
        signed = found["signed"].split(";")
        signed_at = self._signed_at(request, credential, signed)
        owner = self._keys.secret(credential.access_key_id)
        if owner is None:
            raise auth_failure(f"access key {credential.access_key_id} is not known, or has been revoked")
        identity, secret = owner
        expected = expected_signature(request, credential, signed, secret)
        if not hmac.compare_digest(expected, found["signature"]):
            raise auth_failure("the request signature does not match the one computed with the access key's secret")
        if refuse_replay and not self._seen.admit(f"sigv4:{found['signature']}".encode(), signed_at + self._skew):
            raise auth_failure("this signed request was already received (a replay): sign each request afresh")
        return identity

    def _credential(self, text: str) -> Credential:
        parts = text.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise auth_failure("the Credential must be <key id>/<date>/<region>/ec2/aws4_request")
        credential = Credential(*parts[:4])
        if credential.service != SERVICE:
            raise auth_failure(f"the credential is scoped to service {credential.service!r}, not {SERVICE!r}")
        if credential.region != self._region:
            raise auth_failure(
                f"the credential is scoped to region {credential.region!r}; this one is {self._region!r}"
            )
        return credential

    def _signed_at(self, request: SignedRequest, credential: Credential, signed: list[str]) -> datetime:
        if not _REQUIRED <= set(signed) or signed != sorted(signed):
            raise auth_failure("SignedHeaders must list, in order, at least host and x-amz-date")
        text = request.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(text, _AMZ_DATE).replace(tzinfo=UTC)
        except ValueError:
            raise auth_failure("X-Amz-Date must be a basic ISO 8601 time, like 20261125T120000Z") from None
        if credential.date != text[:8]:
            raise auth_failure("the credential's date is not the day of X-Amz-Date")
        if abs(self._clock.now() - signed_at) > self._skew:
            raise Ec2Error(
                "RequestExpired",
                f"X-Amz-Date {text} is more than {int(self._skew.total_seconds())} s from the service's clock",
            )
        return signed_at


def expected_signature(request: SignedRequest, credential: Credential, signed: list[str], secret: str) -> str:
    """What botocore's signer makes of the request, over the headers the client named and the body it sent."""
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(request.body).hexdigest():
        raise auth_failure("X-Amz-Content-SHA256 must be the SHA-256 of the body")  # no UNSIGNED-PAYLOAD here
    missing = [name for name in signed if name not in request.headers]
    if missing:
        raise auth_failure(f"signed header {missing[0]} is not in the request")
    url = f"http://{request.headers['host']}{request.path}" + (f"?{request.query}" if request.query else "")
    aws_request = AWSRequest(request.method, url, {name: request.headers[name] for name in signed}, request.body)
    aws_request.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(credential.access_key_id, secret), credential.service, credential.region)
    if signer.signed_headers(signer.headers_to_sign(aws_request)) != ";".join(signed):
        raise auth_failure("SignedHeaders names a header that SigV4 leaves unsigned")
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
