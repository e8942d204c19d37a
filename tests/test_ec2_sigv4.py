"""Who may use the EC2 door: SigV4 verified over real HTTP, keys issued and revoked by vws-admin,
secrets sealed at rest, the clock skew bounded and replays refused."""

import sqlite3
import stat
from datetime import timedelta

import botocore.exceptions
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.credentials import Credentials

from tests import ec2
from vws.cli.admin import main as admin
from vws.clock import ManualClock, SystemClock
from vws.workspace.caller import SERVICE

ALICE = "/O=Grid/OU=vws/CN=alice"
RUN = f"Action=RunInstances&{ec2.API}&MinCount=1&MaxCount=1&ImageId="


@pytest.fixture
def clock():
    return ManualClock(SystemClock().now())


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def key(state_dir):
    return ec2.issue_key(state_dir, ALICE)


@pytest.fixture
def service(state_dir, clock, key):
    running = ec2.started(ec2.ec2_config(state_dir), clock)
    yield running
    running.stop()


@pytest.fixture
def run_body(service, key):
    image = ec2.client(service, key).describe_images()["Images"][0]["ImageId"]
    return RUN + image


def refused(response, code: str = "AuthFailure") -> bool:
    return response.status_code in (400, 401) and ec2.error_code(response) == code


def test_a_signed_request_is_answered(service, key, run_body):
    response = ec2.send(ec2.signed(service, key, run_body))
    assert response.status_code == 200 and "<instanceId>i-" in response.text
    assert [w.owner for w in service.manager.workspaces(SERVICE)] == [ALICE]


def test_a_wrong_secret_is_refused_and_changes_nothing(service, key, run_body):
    forged = ec2.Key(key.access_key_id, key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B"))
    assert refused(ec2.send(ec2.signed(service, forged, run_body)))
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ec2.client(service, forged).describe_instances()
    assert caught.value.response["Error"]["Code"] == "AuthFailure"
    assert service.manager.workspaces(SERVICE) == []


def test_an_unknown_key_and_an_unsigned_request_are_refused(service, key, run_body):
    assert refused(ec2.send(ec2.signed(service, ec2.Key("AKIANOSUCHKEY", key.secret), run_body)))
    response = requests.post(
        service.ec2_url, data=run_body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert refused(response)
    assert service.manager.workspaces(SERVICE) == []


def test_a_tampered_body_is_refused(service, key, run_body):
    request = ec2.signed(service, key, run_body)
    assert refused(ec2.send(request, body=(run_body.replace("MaxCount=1", "MaxCount=9")).encode()))
    assert service.manager.workspaces(SERVICE) == []


def test_a_content_hash_header_must_be_the_bodys(service, key, run_body):
    """A signed X-Amz-Content-SHA256 of another body (or UNSIGNED-PAYLOAD) must not stand in for the body."""
    request = ec2.signed(service, key, "Action=DescribeInstances&" + ec2.API)
    request.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    SigV4Auth(Credentials(key.access_key_id, key.secret), "ec2", ec2.REGION).add_auth(request)
    assert "x-amz-content-sha256" in request.headers["Authorization"]
    assert refused(ec2.send(request, body=run_body.encode()))
    assert service.manager.workspaces(SERVICE) == []


def test_another_region_or_service_is_refused(service, key):
    assert refused(ec2.send(ec2.signed(service, key, "Action=DescribeInstances&" + ec2.API, region="us-east-1")))


def test_a_revoked_key_is_refused(service, state_dir, key):
    alice = ec2.client(service, key)
    assert alice.describe_instances()["Reservations"] == []
    assert admin(["--state-dir", str(state_dir), "ec2-keys", "revoke", key.access_key_id]) == 0
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        alice.describe_instances()
    assert caught.value.response["Error"]["Code"] == "AuthFailure"
    assert "revoked" in caught.value.response["Error"]["Message"]


def test_the_clock_skew_is_bounded(service, key, clock):
    alice = ec2.client(service, key)
    clock.advance(timedelta(seconds=290))  # the service's clock ahead of the client's, within the skew
    assert alice.describe_instances()["Reservations"] == []
    clock.advance(timedelta(seconds=20))
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        alice.describe_instances()
    assert caught.value.response["Error"]["Code"] == "RequestExpired"
    clock.advance(timedelta(seconds=-620))  # and behind it
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        alice.describe_instances()
    assert caught.value.response["Error"]["Code"] == "RequestExpired"


def test_a_replay_within_the_skew_is_refused_even_after_a_restart(service, state_dir, clock, key, run_body):
    port = service.ec2_url.rsplit(":", 1)[1].strip("/")
    request = ec2.signed(service, key, run_body)
    assert ec2.send(request).status_code == 200
    assert refused(ec2.send(request))
    service.stop()
    again = ec2.started(ec2.ec2_config(state_dir, listen=f"127.0.0.1:{port}"), clock)  # the port its Host names
    try:
        assert again.ec2_url == request.url
        assert refused(ec2.send(request))
        assert len(again.manager.workspaces(SERVICE)) == 1
    finally:
        again.stop()


def test_a_repeated_read_is_answered_and_a_repeated_client_token_run_makes_nothing_new(service, key, run_body):
    describe = ec2.signed(service, key, "Action=DescribeInstances&" + ec2.API)
    assert ec2.send(describe).status_code == ec2.send(describe).status_code == 200
    tokened = ec2.signed(service, key, run_body + "&ClientToken=once")
    first, repeat = ec2.send(tokened), ec2.send(tokened)
    assert first.status_code == repeat.status_code == 200
    assert first.text.split("<instanceId>")[1][:10] == repeat.text.split("<instanceId>")[1][:10]
    assert len(service.manager.workspaces(SERVICE)) == 1


def test_secrets_are_sealed_at_rest(service, state_dir, key):
    database = sqlite3.connect(state_dir / "vws.sqlite")
    dump = "\n".join(database.iterdump())
    assert key.access_key_id in dump and key.secret not in dump
    (sealed,) = database.execute("select sealed_secret from ec2_access_keys").fetchone()
    assert key.secret.encode() not in sealed
    secrets_key = state_dir / "ec2-secrets.key"
    assert stat.S_IMODE(secrets_key.stat().st_mode) == 0o600
    # Without the key file, the database alone opens no secret: every request is refused.
    secrets_key.rename(state_dir / "elsewhere.key")
    service.stop()
    blind = ec2.started(ec2.ec2_config(state_dir), service.clock)
    try:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            ec2.client(blind, key).describe_instances()
        assert caught.value.response["Error"]["Code"] == "AuthFailure"
    finally:
        blind.stop()


def test_a_sealed_secret_moved_to_another_identitys_row_does_not_open(service, state_dir, key):
    bob = ec2.issue_key(state_dir, "/O=Grid/OU=vws/CN=bob")
    database = sqlite3.connect(state_dir / "vws.sqlite")
    with database:
        database.execute(
            "update ec2_access_keys set identity = ? where access_key_id = ?", ["/O=Grid/CN=root", bob.access_key_id]
        )
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ec2.client(service, bob).describe_instances()
    assert caught.value.response["Error"]["Code"] == "AuthFailure"


def test_ec2_keys_list_shows_no_secret(state_dir, key, capsys):
    assert admin(["--state-dir", str(state_dir), "ec2-keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key.access_key_id in listed and ALICE in listed and key.secret not in listed
    assert admin(["--state-dir", str(state_dir), "ec2-keys", "revoke", "AKIANOSUCHKEY"]) == 1


@pytest.mark.parametrize(
    "method, body, code",
    [
        ("GET", b"", "InvalidRequest"),
        ("POST", b"\xff\xfe%zz", "InvalidRequest"),
        ("POST", b"Action=RunInstances&Action=RunInstances", "InvalidParameterValue"),
        ("POST", b"Action=DescribeInstances", "AuthFailure"),
    ],
)
def test_what_is_not_a_signed_form_is_an_ec2_error_not_a_500(service, method, body, code):
    response = requests.request(method, service.ec2_url, data=body)
    assert 400 <= response.status_code < 500 and ec2.error_code(response) == code
    assert "<RequestID>" in response.text
