"""The EC2 door under test: a service with [ec2] listen open, access keys issued by
vws-admin, boto3 clients, and requests signed by hand for the attacks (helpers, no tests here)."""

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from vws.cli.admin import main as admin
from vws.config import Config
from vws.service import Service

REGION = "vws"
API = "Version=2016-11-15"


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str


def issue_key(state_dir: Path, dn: str) -> Key:
    """``vws-admin ec2-keys create --dn DN``, as an administrator runs it."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert admin(["--state-dir", str(state_dir), "ec2-keys", "create", "--dn", dn]) == 0
    lines = printed.getvalue().splitlines()
    return Key(lines[0].split()[-1], lines[1].split()[-1])


def ec2_config(state_dir: Path, insecure: bool = True, **ec2: object) -> Config:
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir, insecure=insecure)
    return config.with_overrides("ec2", **{"listen": "127.0.0.1:0", **ec2})


def started(config: Config, clock) -> Service:  # type: ignore[no-untyped-def]
    service = Service(config, clock=clock)
    service.start()
    return service


def client(service: Service, key: Key, region: str = REGION):  # type: ignore[no-untyped-def]
    """boto3's ec2 client, as a user makes one, against the door."""
    return boto3.client(
        "ec2",
        endpoint_url=service.ec2_url,
        region_name=region,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret,
        config=BotoConfig(retries={"total_max_attempts": 1}),  # a retry in the same second is a replay
    )


def signed(service: Service, key: Key, body: str, region: str = REGION) -> AWSRequest:
    """A form POST signed with SigV4 by botocore, as its ec2 client signs one."""
    request = AWSRequest(
        "POST", service.ec2_url, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, body.encode()
    )
    SigV4Auth(Credentials(key.access_key_id, key.secret), "ec2", region).add_auth(request)
    return request


def send(request: AWSRequest, body: bytes | None = None) -> requests.Response:
    """Post a signed request (with another body, for a tampering test)."""
    return requests.post(request.url, data=request.body if body is None else body, headers=dict(request.headers))


def error_code(response: requests.Response) -> str:
    text = response.text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]
