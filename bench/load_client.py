"""One load client, a process of its own (bench_load.py starts 50): a GT4 client's round, again and again.

It prints ``ready`` once set up, starts on the line ``go`` on stdin, runs for the given
seconds and prints one JSON line: latencies per operation, errors (faults, bad status)
per operation, and resets (a connection the server reset or dropped mid-exchange; the
client reconnects and goes on, and never sends a request twice).

Round: create (one Running workspace, one NIC), GetResourceProperty currentState five
times, queryCurrentWorkspaces (its own one), Destroy. ``--floor`` instead sends the same
GetResourceProperty to the bare HTTP floor server, whose fixed reply is a real one.
"""

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree  # noqa: E402

from tests.gt4wire import Gt4Client, SoapFault, created_eprs  # noqa: E402
from tests.resources import status_call  # noqa: E402
from vws.clock import SystemClock  # noqa: E402
from vws.security.credentials import Credential  # noqa: E402
from vws.security.proxy import create_proxy  # noqa: E402
from vws.security.wssecurity.signing import MessageSigner  # noqa: E402
from vws.wsrf.addressing import EndpointReference  # noqa: E402
from vws.xmlns import TYPES, qname  # noqa: E402

STATE = qname(TYPES, "currentState")
RESETS = (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead)


class Tally:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.resets = 0

    def time(self, operation: str, call):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            result = call()
        except SoapFault as fault:
            self.errors[operation] = self.errors.get(operation, 0) + 1
            print(f"{operation}: {fault}", file=sys.stderr)
            return None
        self.latencies.setdefault(operation, []).append(time.perf_counter() - started)
        return result


def signer(credential: Path | None) -> MessageSigner | None:
    if credential is None:
        return None
    clock = SystemClock()
    user = Credential.load(credential / "usercert.pem", credential / "userkey.pem")
    return MessageSigner(create_proxy(user, clock), clock)


def round_trip(client: Gt4Client, tally: Tally) -> None:
    reply = tally.time("create", client.create)
    (epr,) = created_eprs(reply) if reply is not None else (None,)
    if epr is None:
        return
    for _ in range(5):
        tally.time("GetResourceProperty", lambda: client.get_property(epr, STATE))
    tally.time(
        "queryCurrentWorkspaces", lambda: status_call(client, "queryCurrentWorkspaces", "queryCurrentWorkspaces")
    )
    tally.time("Destroy", lambda: client.destroy(epr))


def floor_trip(client: Gt4Client, tally: Tally, epr: EndpointReference) -> None:
    tally.time("GetResourceProperty", lambda: client.get_property(epr, STATE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--credential", type=Path, help="directory of usercert.pem and userkey.pem: sign")
    parser.add_argument("--floor", action="store_true", help="GetResourceProperty only, at the floor server")
    args = parser.parse_args()
    sign = signer(args.credential)
    tally = Tally()

    def connect() -> Gt4Client:
        return Gt4Client(args.url, sign=sign.sign if sign else None)

    client = connect()
    floor_epr = EndpointReference(args.url + "WorkspaceService")
    etree.fromstring(b"<warm/>")
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    until = started + args.seconds
    while time.perf_counter() < until:
        try:
            floor_trip(client, tally, floor_epr) if args.floor else round_trip(client, tally)
        except RESETS as reset:
            tally.resets += 1
            print(f"reset: {reset!r}", file=sys.stderr)
            client.close()
            client = connect()
    elapsed = time.perf_counter() - started  # to the end of its last exchange
    client.close()
    result = {"latencies": tally.latencies, "errors": tally.errors, "resets": tally.resets, "elapsed": elapsed}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
