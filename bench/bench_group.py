"""Group create: one request with NodeNumber 100, to Running, on the libvirt test driver.

The embedded default node and address pool are sized for a handful of workspaces,
so this bench writes its own: one test-driver node with room for 100 guests and a
"public" network pool of 254 addresses, in the formats ``vws/pool/nodes.py`` and ``network.py`` read.
Target (issue #5): a 100-member group created in under 1 s.
"""

import tempfile
import time
from pathlib import Path

from common import report, running_service

from tests.deployments import settler
from tests.gt4wire import Gt4Client, created_eprs
from tests.resources import create, create_request, group_call, reference
from vws.pool import testnode

MEMBERS = 100
ROUNDS = 5


def pool_files(directory: Path) -> dict[str, Path]:
    """One big test node and a /24 of addresses: ``[pool] nodes_file`` and ``network_pools_dir``."""
    uri = testnode.write_node(directory / "bench1.xml", memory_mb=65536, cpus=256)
    nodes = directory / "nodes.conf"
    nodes.write_text(f"[bench1]\nuri = {uri}\nmemory = 65536\ncpus = 256\nnetworks = *\n")
    pools = directory / "network-pools"
    pools.mkdir()
    lines = ["none"] + [f"vm-{n:03d} 10.20.0.{n} 10.20.0.1 10.20.0.255 255.255.255.0" for n in range(2, 256)]
    (pools / "public").write_text("\n".join(lines) + "\n")
    return {"nodes_file": nodes, "network_pools_dir": pools}


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, running_service(pool=pool_files(Path(scratch))) as service:
        client = Gt4Client(service.base_url, settle=settler(service))  # create returns once all run
        latencies = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            response = create(client, create_request(node_number=MEMBERS, memory_mb=64))
            latencies.append(time.perf_counter() - started)
            assert len(created_eprs(response)) == MEMBERS
            group_call(client, reference(response, "GroupEPR"), "Destroy")
        report(f"create a {MEMBERS}-member group to Running", latencies)
        client.close()


if __name__ == "__main__":
    main()
