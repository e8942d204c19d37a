"""The aws CLI (v1, from the test extra) against the EC2 door, as a subprocess with its own config
and credentials files: run-instances, describe-instances, terminate-instances."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ec2
from tests.deployments import settler
from vws.clock import ManualClock, SystemClock
from vws.workspace.caller import SERVICE

AWS = Path(sys.executable).with_name("aws")
ALICE = "/O=Grid/OU=vws/CN=alice"


@pytest.fixture
def service(tmp_path):
    running = ec2.started(ec2.ec2_config(tmp_path / "state"), ManualClock(SystemClock().now()))
    yield running
    running.stop()


def aws_cli(tmp_path: Path, endpoint: str, key: ec2.Key):  # type: ignore[no-untyped-def]
    """``aws ec2 ...`` with a profile of its own: nothing read from the user's ~/.aws or environment."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    config, credentials = home / ".aws" / "config", home / ".aws" / "credentials"
    config.write_text("[profile vws]\nregion = vws\noutput = json\n")
    credentials.write_text(f"[vws]\naws_access_key_id = {key.access_key_id}\naws_secret_access_key = {key.secret}\n")
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_PROFILE": "vws",
        "AWS_MAX_ATTEMPTS": "1",
    }

    def run(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(AWS), "ec2", *arguments, "--endpoint-url", endpoint]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert not check or done.returncode == 0, done.stderr
        return done

    return run


@pytest.fixture
def aws(service, tmp_path):
    return aws_cli(tmp_path, service.ec2_url, ec2.issue_key(service.config.service.state_dir, ALICE))


def test_run_describe_terminate_with_the_aws_cli(service, aws):
    image = json.loads(aws("describe-images").stdout)["Images"][0]["ImageId"]
    made = json.loads(aws("run-instances", "--image-id", image, "--count", "2", "--instance-type", "m1.small").stdout)
    instances = [item["InstanceId"] for item in made["Instances"]]
    assert len(instances) == 2
    settler(service)()
    described = json.loads(aws("describe-instances", "--instance-ids", *instances).stdout)
    states = {i["InstanceId"]: i["State"]["Name"] for r in described["Reservations"] for i in r["Instances"]}
    assert states == dict.fromkeys(instances, "running")
    ended = json.loads(aws("terminate-instances", "--instance-ids", instances[0]).stdout)
    assert ended["TerminatingInstances"][0]["CurrentState"]["Name"] == "terminated"
    assert [w.id for w in service.manager.workspaces(SERVICE)] == [int(instances[1][2:], 16)]


def test_the_cli_reports_ec2_errors(aws):
    failed = aws("terminate-instances", "--instance-ids", "i-0000beef", check=False)
    assert failed.returncode != 0 and "InvalidInstanceID.NotFound" in failed.stderr


def test_vws_service_opens_the_door_with_ec2_listen(tmp_path):
    state = tmp_path / "served"
    key = ec2.issue_key(state, ALICE)
    argv = [AWS.with_name("vws-service"), "--insecure", "--listen", "127.0.0.1:0", "--state-dir", state]
    process = subprocess.Popen([*argv, "--ec2-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("vws-service listening on http://")
        endpoint = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert endpoint.startswith("http://127.0.0.1:")
        images = json.loads(aws_cli(tmp_path, endpoint, key)("describe-images").stdout)["Images"]
        assert [image["Name"] for image in images] == ["ttylinux-xen"]
    finally:
        process.terminate()
        process.wait(timeout=60)
