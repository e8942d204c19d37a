"""Signed GetResourceProperty and create over HTTP keep-alive (GSI Secure Message both ways).

The floor, measured in the same run, is the bare cryptography one signed exchange
needs: sign the request, verify it, sign the reply, verify it (in process, no HTTP).
Target (issue #3): p50 under 2 ms (GT4 Java WS Core measured 183 ms). The signed
create reply (Unpropagated, test driver) is timed alone; each workspace is settled
and destroyed, untimed, before the next create (the sample pool has 10 addresses).
Issue #10 (security hardening) measured both against its base: p50 within 5%.
"""

import tempfile
import time
from pathlib import Path

from common import report, timed
from lxml import etree

from tests.deployments import settler
from tests.gt4wire import Gt4Client, created_eprs, envelope_element
from vws.cli.admin import main as admin
from vws.clock import SystemClock
from vws.config import Config
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.security.trust import TrustStore
from vws.security.wssecurity.policy import DEFAULT_POLICY
from vws.security.wssecurity.replay import ReplayCache
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier
from vws.service import Service
from vws.xmlns import TYPES, WSRP, WSRP_ACTION, qname

COUNT = 1000
CREATES = 300


def rp_body() -> etree._Element:
    body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "t": TYPES})
    body.text = "t:currentState"
    return body


def crypto_floor(user: MessageSigner, host: MessageSigner, verifier: MessageVerifier, epr) -> list[float]:
    def exchange() -> None:
        for signer in (user, host):  # the request, then a reply of the same size
            message = envelope_element(epr.address, WSRP_ACTION + "GetResourceProperty", rp_body(), epr.properties)
            verifier.verify(etree.fromstring(etree.tostring(signer.sign(message))))

    return timed(exchange, COUNT)


def signed_creates(client: Gt4Client, settle) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Wall and process CPU seconds of each create reply, the first 20 left out as warm-up."""
    walls, cpus = [], []
    for _ in range(CREATES):
        wall, cpu = time.perf_counter(), time.process_time()
        (epr,) = created_eprs(client.create())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        settle()
        client.destroy(epr)
    return walls[20:], cpus[20:]


def main() -> None:
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as state:
        admin(["--state-dir", state, "ca", "init", "--hostname", "localhost"])
        dev = DevCA(Path(state) / "security")
        service = Service(Config().with_overrides("service", listen="127.0.0.1:0", state_dir=Path(state)))
        service.start()
        try:
            user = MessageSigner(create_proxy(dev.user(), clock), clock)
            client = Gt4Client(service.base_url, sign=user.sign, settle=settler(service))
            (epr,) = created_eprs(client.create())
            # A fresh replay cache per measurement: every message here is new anyway.
            verifier = MessageVerifier(
                TrustStore(dev.trust_dir), clock, replay_cache=ReplayCache(clock, DEFAULT_POLICY.replay_window)
            )
            floor = report(
                "sign+verify request and reply (floor)",
                crypto_floor(user, MessageSigner(dev.host(), clock), verifier, epr),
            )
            signed = report(
                "signed GetResourceProperty over HTTP",
                timed(lambda: client.get_property(epr, qname(TYPES, "currentState")), COUNT),
            )
            print(f"{'ratio signed call / crypto floor':<44} {signed['p50_ms'] / floor['p50_ms']:.2f}x (p50)")
            report(
                "  CPU of the process per call",
                timed(lambda: client.get_property(epr, qname(TYPES, "currentState")), COUNT, clock=time.process_time),
            )
            creator = Gt4Client(service.base_url, sign=user.sign)  # settles only after the reply is timed
            walls, cpus = signed_creates(creator, settler(service))
            report("signed create reply (Unpropagated)", walls)
            report("  CPU of the process per call", cpus)
        finally:
            service.stop()


if __name__ == "__main__":
    main()
