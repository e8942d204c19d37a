"""The EC2 door with boto3, as a user drives it: every action, and the errors EC2 clients expect."""

import base64
from datetime import timedelta

import botocore.exceptions
import pytest

from tests import ec2
from tests.deployments import settler
from tests.test_operating import samples
from vws.clock import ManualClock, SystemClock
from vws.workspace.caller import SERVICE

ALICE = "/O=Grid/OU=vws/CN=alice"
BOB = "/O=Grid/OU=vws/CN=bob"


@pytest.fixture
def clock():
    return ManualClock(SystemClock().now())  # boto3 signs with the real time


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def service(state_dir, clock):
    # A terminated instance stays visible for a minute: the service's clock may run that far ahead
    # of boto3's (the real one) within the signature's clock skew.
    running = ec2.started(ec2.ec2_config(state_dir, terminated_visible_seconds=60), clock)
    yield running
    running.stop()


@pytest.fixture
def alice_key(state_dir):
    return ec2.issue_key(state_dir, ALICE)


@pytest.fixture
def alice(service, alice_key):
    return ec2.client(service, alice_key)


@pytest.fixture
def image(alice):
    return alice.describe_images()["Images"][0]["ImageId"]


def code_of(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def test_run_describe_terminate(service, alice, image):
    reservation = alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m1.small")
    (instance,) = reservation["Instances"]
    assert instance["State"]["Name"] == "pending" and instance["ImageId"] == image
    settler(service)()
    (described,) = alice.describe_instances()["Reservations"]
    assert described["ReservationId"] == reservation["ReservationId"]
    running = described["Instances"][0]
    assert (running["InstanceId"], running["State"]) == (instance["InstanceId"], {"Code": 16, "Name": "running"})
    assert running["InstanceType"] == "m1.small" and running["PrivateIpAddress"].startswith("192.168.128.")
    (workspace,) = service.manager.workspaces(SERVICE)
    assert workspace.owner == ALICE and workspace.request.machine.memory_mb == 256
    ended = alice.terminate_instances(InstanceIds=[instance["InstanceId"]])["TerminatingInstances"][0]
    assert (ended["PreviousState"]["Name"], ended["CurrentState"]["Name"]) == ("running", "terminated")
    assert service.manager.workspaces(SERVICE) == []
    # A terminated instance stays visible a while, as on EC2, then is gone.
    (still,) = alice.describe_instances()["Reservations"][0]["Instances"]
    assert still["State"]["Name"] == "terminated"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.start_instances(InstanceIds=[instance["InstanceId"]])
    assert code_of(refused) == "IncorrectInstanceState"
    service.clock.advance(timedelta(seconds=61))
    assert alice.describe_instances()["Reservations"] == []


def test_unknown_instance_and_image(alice, image):
    for call in (
        lambda: alice.terminate_instances(InstanceIds=["i-0000abcd"]),
        lambda: alice.describe_instances(InstanceIds=["i-0000abcd"]),
        lambda: alice.stop_instances(InstanceIds=["i-0000abcd"]),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            call()
        assert code_of(refused) == "InvalidInstanceID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1)
    assert code_of(refused) == "InvalidAMIID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.describe_images(ImageIds=["ami-00000000"])
    assert code_of(refused) == "InvalidAMIID.NotFound"


def test_another_users_instances_are_unknown_to_her(service, state_dir, alice, image):
    instance = alice.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    bob = ec2.client(service, ec2.issue_key(state_dir, BOB))
    assert bob.describe_instances()["Reservations"] == []
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        bob.terminate_instances(InstanceIds=[instance])
    assert code_of(refused) == "InvalidInstanceID.NotFound"
    settler(service)()
    assert [w.owner for w in service.manager.workspaces(SERVICE)] == [ALICE]


def test_stop_start_reboot(service, alice, image):
    instance = alice.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settler(service)()
    stopped = alice.stop_instances(InstanceIds=[instance])["StoppingInstances"][0]
    assert (stopped["PreviousState"]["Name"], stopped["CurrentState"]["Name"]) == ("running", "stopped")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        # Named twice, so that it is not the same signed request as the reboot below, which the
        # replay rule would refuse within the same second (see test_ec2_sigv4.py).
        alice.reboot_instances(InstanceIds=[instance, instance])
    assert code_of(refused) == "IncorrectInstanceState"
    started = alice.start_instances(InstanceIds=[instance])["StartingInstances"][0]
    assert started["CurrentState"]["Name"] == "running"
    alice.reboot_instances(InstanceIds=[instance])
    state = alice.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "running"


def test_a_group_is_all_or_nothing_at_min_count(service, state_dir, clock, image):
    service.stop()
    limited = ec2.started(ec2.ec2_config(state_dir).with_overrides("quotas", max_workspaces=3), clock)
    try:
        alice = ec2.client(limited, ec2.issue_key(state_dir, ALICE))
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            alice.run_instances(ImageId=image, MinCount=4, MaxCount=5)
        assert code_of(refused) == "InstanceLimitExceeded"
        assert limited.manager.workspaces(SERVICE) == []
        made = alice.run_instances(ImageId=image, MinCount=2, MaxCount=5)["Instances"]
        assert [item["AmiLaunchIndex"] for item in made] == [0, 1]
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            alice.run_instances(ImageId=image, MinCount=2, MaxCount=2)
        assert code_of(refused) == "InstanceLimitExceeded"
        settler(limited)()
    finally:
        limited.stop()


def test_too_large_for_any_node_is_insufficient_capacity(service, state_dir, clock, image):
    service.stop()
    config = ec2.ec2_config(state_dir, instance_types=("m1.small:1:256", "huge:64:1048576"))
    roomy = ec2.started(config, clock)
    try:
        alice = ec2.client(roomy, ec2.issue_key(state_dir, ALICE))
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="huge")
        assert code_of(refused) == "InsufficientInstanceCapacity"
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t9.nano")
        assert code_of(refused) == "InvalidParameterValue"
        assert roomy.manager.workspaces(SERVICE) == []
    finally:
        roomy.stop()


def test_client_token_makes_run_idempotent(service, alice, image):
    first = alice.run_instances(ImageId=image, MinCount=2, MaxCount=2, ClientToken="launch-42")
    again = alice.run_instances(ImageId=image, MinCount=2, MaxCount=2, ClientToken="launch-42")
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]
    other = alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, ClientToken="launch-43")
    assert other["ReservationId"] != first["ReservationId"]
    settler(service)()
    assert len(service.manager.workspaces(SERVICE)) == 3


def test_key_pair_and_user_data_reach_the_contextualization(service, alice, image):
    created = alice.create_key_pair(KeyName="mine")
    assert created["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.create_key_pair(KeyName="mine", KeyType="ed25519")  # not the same request: that would be a replay
    assert code_of(refused) == "InvalidKeyPair.Duplicate"
    public = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhSvyLMfUm1d4R4wr8Y4q0gUGdAqHKG0dcpv7P5Uv3h imported"
    imported = alice.import_key_pair(KeyName="laptop", PublicKeyMaterial=public)
    listed = {pair["KeyName"]: pair["KeyFingerprint"] for pair in alice.describe_key_pairs()["KeyPairs"]}
    assert listed == {"laptop": imported["KeyFingerprint"], "mine": created["KeyFingerprint"]}
    alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, KeyName="laptop", UserData="#!/bin/sh\necho hi\n")
    (workspace,) = service.manager.workspaces(SERVICE)
    machine = workspace.request.machine
    assert machine.userdata == "#!/bin/sh\necho hi\n"
    assert [(f.path_on_vm, f.content) for f in machine.files] == [
        ("/root/.ssh/authorized_keys", public.decode() + "\n")
    ]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, KeyName="nope")
    assert code_of(refused) == "InvalidKeyPair.NotFound"
    alice.delete_key_pair(KeyName="mine")
    assert [pair["KeyName"] for pair in alice.describe_key_pairs()["KeyPairs"]] == ["laptop"]
    settler(service)()


def test_tags_and_filters(service, alice, image):
    tagged = alice.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"}]}],
    )["Instances"][0]["InstanceId"]
    plain = alice.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settler(service)()
    alice.create_tags(Resources=[plain], Tags=[{"Key": "role", "Value": "db"}, {"Key": "tier", "Value": "1"}])

    def ids(**filters: list[str]) -> list[str]:
        found = alice.describe_instances(Filters=[{"Name": k, "Values": v} for k, v in filters.items()])
        return [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]

    assert ids(**{"tag:role": ["web"]}) == [tagged]
    assert ids(**{"tag-key": ["tier"]}) == [plain]
    assert ids(**{"instance-id": [plain]}) == [plain]
    assert ids(**{"image-id": [image], "instance-state-name": ["running"]}) == [tagged, plain]
    alice.stop_instances(InstanceIds=[plain])
    assert ids(**{"instance-state-name": ["stopped"]}) == [plain]
    tags = alice.describe_tags(Filters=[{"Name": "resource-id", "Values": [plain]}])["Tags"]
    assert {(t["Key"], t["Value"]) for t in tags} == {("role", "db"), ("tier", "1")}
    alice.delete_tags(Resources=[plain], Tags=[{"Key": "tier"}, {"Key": "role", "Value": "not-db"}])
    assert [(t["Key"], t["Value"]) for t in alice.describe_tags()["Tags"]] == [("role", "web"), ("role", "db")]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.describe_instances(Filters=[{"Name": "vpc-id", "Values": ["vpc-1"]}])
    assert code_of(refused) == "InvalidParameterValue"


def test_pagination(service, alice, image):
    alice.run_instances(ImageId=image, MinCount=7, MaxCount=7)
    settler(service)()
    first = alice.describe_instances(MaxResults=5)
    rest = alice.describe_instances(MaxResults=5, NextToken=first["NextToken"])
    seen = [i["InstanceId"] for page in (first, rest) for r in page["Reservations"] for i in r["Instances"]]
    assert len(seen) == len(set(seen)) == 7 and "NextToken" not in rest
    paginated = alice.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    assert sum(len(r["Instances"]) for page in paginated for r in page["Reservations"]) == 7


def test_zones_types_and_images(alice, image):
    (zone,) = alice.describe_availability_zones()["AvailabilityZones"]
    assert (zone["ZoneName"], zone["RegionName"], zone["State"]) == ("vwsa", "vws", "available")
    types = {
        t["InstanceType"]: (t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"])
        for t in alice.describe_instance_types()["InstanceTypes"]
    }
    assert types == {"m1.small": (1, 256), "m1.medium": (1, 512), "m1.large": (2, 1024), "m1.xlarge": (4, 2048)}
    (listed,) = alice.describe_images(ImageIds=[image])["Images"]
    assert (listed["Name"], listed["ImageLocation"], listed["State"]) == (
        "ttylinux-xen",
        "file://ttylinux-xen",
        "available",
    )


def test_an_action_not_implemented_is_unsupported_not_a_500(alice):
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        alice.describe_vpcs()
    assert code_of(refused) == "UnsupportedOperation"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_user_data_must_be_base64_text(service, alice_key, image):
    request = ec2.signed(
        service,
        alice_key,
        f"Action=RunInstances&{ec2.API}&ImageId={image}&MinCount=1&MaxCount=1&UserData="
        + base64.b64encode(b"\xff\xfe").decode().replace("=", "%3D"),
    )
    response = ec2.send(request)
    assert response.status_code == 400 and ec2.error_code(response) == "InvalidParameterValue"
    assert service.manager.workspaces(SERVICE) == []


def test_dry_run_changes_nothing(service, alice, image):
    with pytest.raises(botocore.exceptions.ClientError) as answered:
        alice.run_instances(ImageId=image, MinCount=1, MaxCount=1, DryRun=True)
    assert code_of(answered) == "DryRunOperation"
    assert service.manager.workspaces(SERVICE) == []


def test_ec2_requests_are_counted_on_metrics(service, alice, image):
    alice.describe_instances()
    with pytest.raises(botocore.exceptions.ClientError):
        alice.terminate_instances(InstanceIds=["i-0000abcd"])
    with pytest.raises(botocore.exceptions.ClientError):
        alice.describe_vpcs()
    counted = samples(service, "vws_requests_total")
    assert counted[(("operation", "DescribeInstances"), ("outcome", "ok"), ("service", "EC2"))] == 1
    assert (
        counted[(("operation", "TerminateInstances"), ("outcome", "InvalidInstanceID.NotFound"), ("service", "EC2"))]
        == 1
    )
    assert counted[(("operation", "-"), ("outcome", "UnsupportedOperation"), ("service", "EC2"))] == 1


def test_an_admin_sees_and_ends_everyones_instances(service, state_dir, clock, image):
    service.stop()
    admin_dn = "/O=Grid/OU=vws/CN=operator"
    config = ec2.ec2_config(state_dir).with_overrides("security", admin_dns=(admin_dn,))
    running = ec2.started(config, clock)
    try:
        alice = ec2.client(running, ec2.issue_key(state_dir, ALICE))
        operator = ec2.client(running, ec2.issue_key(state_dir, admin_dn))
        instance = alice.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        settler(running)()
        (reservation,) = operator.describe_instances()["Reservations"]
        assert reservation["OwnerId"] == ALICE and reservation["Instances"][0]["InstanceId"] == instance
        operator.terminate_instances(InstanceIds=[instance])
        assert running.manager.workspaces(SERVICE) == []
    finally:
        running.stop()
