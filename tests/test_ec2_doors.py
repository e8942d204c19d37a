"""The two doors agree: one grid identity, through EC2 (boto3) and WSRF (signed SOAP), sees the
same workspaces, and one quota counts both. The service runs signed, as `vws-admin ca init` leaves it."""

import botocore.exceptions
import pytest

from tests import ec2
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.cli.admin import main as admin
from vws.clock import ManualClock, SystemClock
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.security.wssecurity.signing import MessageSigner
from vws.soap.porttypes.common import Endpoints
from vws.workspace.caller import SERVICE
from vws.xmlns import TYPES, WORKSPACE, qname

USER = "/O=Grid/OU=vws/OU=local/CN=vws user"  # the dev CA's user, in its grid-mapfile


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    state = tmp_path_factory.mktemp("doors")
    assert admin(["--state-dir", str(state), "ca", "init", "--hostname", "localhost"]) == 0
    return state


@pytest.fixture
def clock():
    return ManualClock(SystemClock().now())


@pytest.fixture
def service(state_dir, clock):
    config = ec2.ec2_config(state_dir, insecure=False).with_overrides("quotas", max_workspaces=2)
    running = ec2.started(config, clock)
    yield running
    for workspace in running.manager.workspaces(SERVICE):
        running.manager.destroy(SERVICE, workspace.id)
    running.stop()


@pytest.fixture
def boto(service, state_dir):
    return ec2.client(service, ec2.issue_key(state_dir, USER))


@pytest.fixture
def wsrf(service, state_dir, clock):
    signer = MessageSigner(create_proxy(DevCA(state_dir / "security").user(), clock), clock)
    client = Gt4Client(service.base_url, sign=signer.sign, settle=settler(service))
    yield client
    client.close()


def ec2_ids(boto) -> dict[str, str]:
    found = boto.describe_instances()["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}


def test_run_over_ec2_is_a_workspace_over_wsrf_and_back(service, boto, wsrf):
    image = boto.describe_images()["Images"][0]["ImageId"]
    instance = boto.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settler(service)()
    epr = Endpoints(service.base_url).workspace(int(instance[2:], 16))  # the EPR a GT4 client uses
    assert wsrf.state(epr) == "Running"
    assert wsrf.get_property(epr, qname(TYPES, "currentState")) is not None
    # Deployed over WSRF: an instance over EC2, of the same image, in its own reservation.
    (deployed,) = created_eprs(wsrf.create())
    key = deployed.key(qname(WORKSPACE, "WorkspaceKey"))
    other = f"i-{int(key):08x}"
    assert ec2_ids(boto) == {instance: "running", other: "running"}
    (listed,) = boto.describe_instances(InstanceIds=[other])["Reservations"][0]["Instances"]
    assert listed["ImageId"] == image and listed["InstanceType"] == "m1.small"
    # Ended through one door, ended for the other.
    wsrf.destroy(deployed)
    assert ec2_ids(boto)[other] == "terminated"
    boto.terminate_instances(InstanceIds=[instance])
    with pytest.raises(SoapFault):
        wsrf.state(epr)


def test_one_quota_counts_both_doors(service, boto, wsrf):
    image = boto.describe_images()["Images"][0]["ImageId"]
    boto.run_instances(ImageId=image, MinCount=1, MaxCount=1)
    wsrf.create()
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        boto.run_instances(ImageId=image, MinCount=1, MaxCount=1)
    assert refused.value.response["Error"]["Code"] == "InstanceLimitExceeded"
    with pytest.raises(SoapFault) as over:
        wsrf.create()
    assert "over quota: max_workspaces is 2" in over.value.description
    assert len(service.manager.workspaces(SERVICE)) == 2


def test_a_key_for_an_identity_outside_the_grid_mapfile_is_refused(service, state_dir):
    stranger = ec2.client(service, ec2.issue_key(state_dir, "/O=Grid/OU=elsewhere/CN=stranger"))
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        stranger.describe_instances()
    assert refused.value.response["Error"]["Code"] == "AuthFailure"
