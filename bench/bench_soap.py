"""GetResourceProperty over HTTP keep-alive, and create on the embedded default: the reply
(the workspace Unpropagated, its deployment queued) and the state change to Running.

The floor is a bare lxml echo (parse the envelope, answer a fixed envelope) served
by the same HTTP server in the same run: the ratio is what vws costs above HTTP+XML.
Targets (issue #2): GetResourceProperty p50 < 1 ms; create p50 < 5 ms.
"""

import time

from common import echo_app, front, report, running_service, timed
from lxml import etree

from tests.deployments import settler
from tests.gt4wire import Gt4Client, created_eprs, envelope
from vws.xmlns import TYPES, WSRP, WSRP_ACTION, qname

COUNT = 2000


def echo_floor(epr) -> list[float]:
    with front(echo_app, threads=4) as (host, port):
        echo = Gt4Client(f"http://{host}:{port}/wsrf/services/")
        body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "t": TYPES})
        body.text = "t:currentState"
        message = envelope(epr.address, WSRP_ACTION + "GetResourceProperty", body, epr.properties)
        try:
            return timed(lambda: echo.post(echo.base_url + "Echo", message), COUNT)
        finally:
            echo.close()


def main() -> None:
    with running_service() as service:
        client = Gt4Client(service.base_url)
        (epr,) = created_eprs(client.create())
        floor = report("bare lxml echo over HTTP (floor)", echo_floor(epr))
        rp = report(
            "GetResourceProperty currentState",
            timed(lambda: client.get_property(epr, qname(TYPES, "currentState")), COUNT),
        )
        print(f"{'ratio GetResourceProperty / floor':<44} {rp['p50_ms'] / floor['p50_ms']:.2f}x (p50)")
    with running_service() as service:
        client = Gt4Client(service.base_url)
        settle = settler(service)
        replies, runs, destroys = [], [], []
        for _ in range(300):  # create and destroy in turn: the sample pool has 10 addresses
            started = time.perf_counter()
            (epr,) = created_eprs(client.create())
            replies.append(time.perf_counter() - started)
            settle()
            runs.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.destroy(epr)
            destroys.append(time.perf_counter() - started)
        report("create reply (Unpropagated, test driver)", replies[20:])
        report("create to Running (test driver)", runs[20:])
        report("destroy (test driver)", destroys[20:])


if __name__ == "__main__":
    main()
