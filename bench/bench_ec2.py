"""The EC2 door against the WSRF one, in the same run on the libvirt test driver.

1. RunInstances (boto3) to running, beside WSRF create (signed-off, as the insecure
   service takes it) to Running: one workspace each, waited for on the manager's events.
2. With 1,000 instances: DescribeInstances through boto3 (signing, and parsing 1,000
   items, included), the same signed request re-posted raw (the service's share), and
   WorkspaceStatusService queryCurrentWorkspaces, the WSRF listing of the same workspaces.

The service runs --insecure, so the WSRF caller is <anonymous>: the EC2 key is issued to
that identity, and both doors list the same 1,000 workspaces.
"""

import tempfile
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config as BotoConfig
from common import report, running_service, timed

from tests import ec2
from tests.deployments import settler
from tests.gt4wire import Gt4Client, created_eprs
from tests.resources import status_call
from vws.pool import testnode
from vws.soap.gatekeeper import ANONYMOUS

INSTANCES = 1000
BATCH = 250  # within [policy] max_group_size
ROUNDS = 20
LISTINGS = 30


def pool_files(directory: Path) -> dict[str, object]:
    """A test node with room for 1,000 small guests and a /22 "public" pool: [pool] keys."""
    uri = testnode.write_node(directory / "bench1.xml", memory_mb=65536, cpus=2048)
    nodes = directory / "nodes.conf"
    nodes.write_text(f"[bench1]\nuri = {uri}\nmemory = 65536\ncpus = 2048\nnetworks = *\n")
    pools = directory / "network-pools"
    pools.mkdir()
    addresses = [
        f"vm-{c}-{d} 10.20.{c}.{d} 10.20.0.1 10.20.3.255 255.255.252.0" for c in range(4) for d in range(2, 255)
    ]
    (pools / "public").write_text("none\n" + "\n".join(addresses) + "\n")
    return {"nodes_file": nodes, "network_pools_dir": pools}


def main() -> None:
    ec2_settings = {"listen": "127.0.0.1:0", "instance_types": ("m1.small:1:256", "bench.nano:1:16")}
    with tempfile.TemporaryDirectory() as scratch, running_service(pool_files(Path(scratch)), ec2_settings) as service:
        settle = settler(service)
        key = ec2.issue_key(service.config.service.state_dir, ANONYMOUS.identity)
        client = boto3.client(
            "ec2",
            endpoint_url=service.ec2_url,
            region_name=ec2.REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret,
            config=BotoConfig(retries={"total_max_attempts": 1}),
        )
        wsrf = Gt4Client(service.base_url, settle=settle)
        image = client.describe_images()["Images"][0]["ImageId"]

        def ec2_run() -> None:
            instance = client.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
            settle()
            client.terminate_instances(InstanceIds=[instance])

        def wsrf_create() -> None:
            (epr,) = created_eprs(wsrf.create())  # returns once settled
            wsrf.destroy(epr)

        ran = report("EC2 RunInstances to running", timed(ec2_run, ROUNDS, warmup=3))
        created = report("WSRF create to Running", timed(wsrf_create, ROUNDS, warmup=3))
        print(f"{'RunInstances / create (p50)':<44} {ran['p50_ms'] / created['p50_ms']:.2f}x")

        started = time.perf_counter()
        for _ in range(INSTANCES // BATCH):
            client.run_instances(ImageId=image, MinCount=BATCH, MaxCount=BATCH, InstanceType="bench.nano")
        settle(timeout=600)
        print(f"{'1,000 instances to running':<44} {time.perf_counter() - started:7.1f} s")
        assert len(service.manager.workspaces(ANONYMOUS)) == INSTANCES

        listing = ec2.signed(service, key, "Action=DescribeInstances&" + ec2.API)  # a read: may be re-posted
        session = requests.Session()
        raw = report(
            "DescribeInstances, 1,000 (service)",
            timed(lambda: session.post(listing.url, data=listing.body, headers=dict(listing.headers)), LISTINGS, 3),
        )
        report("DescribeInstances, 1,000 (boto3 end to end)", timed(client.describe_instances, LISTINGS, 3))
        current = report(
            "WSRF queryCurrentWorkspaces, 1,000",
            timed(lambda: status_call(wsrf, "queryCurrentWorkspaces", "queryCurrentWorkspaces"), LISTINGS, 3),
        )
        print(f"{'DescribeInstances / queryCurrent (p50)':<44} {raw['p50_ms'] / current['p50_ms']:.2f}x")
        wsrf.close()


if __name__ == "__main__":
    main()
