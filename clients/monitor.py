"""Waiting for workspaces to reach a state: by notifications, or by polling.

By default a NotificationListener receives the service's Notify messages and the
client subscribes each workspace to its currentState and ResourceTermination
topics. Clients behind NAT, or any that ask (``--poll``), poll currentState with
GetResourceProperty every ``--poll-delay`` ms instead; so does a client whose
listener cannot bind its port.
"""

import argparse
import queue
import sys
import time
from collections.abc import Callable

from clients.listener import TERMINATED, NotificationListener, state_of
from vws.wsrf.addressing import EndpointReference
from vws.wsrf.notification import TERMINATION_TOPIC, subscribe_request
from vws.xmlns import TYPES, WORKSPACE, WSNT_ACTION, qname

STATE_TOPIC = qname(TYPES, "currentState")
WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
TERMINAL = {"Corrupted", "Cancelled", TERMINATED}
EXIT_STATE = 3  # a workspace ended up somewhere it can no longer leave for the exit state

StateReader = Callable[[EndpointReference], str]
Raw = Callable[[EndpointReference, str, object], object]


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exit-state", help="state to wait for (default: the initial state, or Running)")
    parser.add_argument("--poll", action="store_true", help="poll instead of listening for notifications")
    parser.add_argument("--poll-delay", type=int, default=200, metavar="MS", help="polling interval")
    parser.add_argument(
        "--listener-address", metavar="HOST:PORT", help="where the service can reach this client (NAT); binds PORT"
    )
    parser.add_argument("--timeout", type=float, default=3600, metavar="S", help="give up waiting after this long")


def open_listener(args: argparse.Namespace) -> NotificationListener | None:
    """A started listener, or None to poll (asked for, or the port cannot be bound)."""
    if args.poll:
        return None
    port = int(args.listener_address.rpartition(":")[2]) if args.listener_address else 0
    try:
        return NotificationListener(("0.0.0.0", port), advertise=args.listener_address).start()
    except OSError as exc:
        print(f"cannot listen for notifications ({exc}); polling instead", file=sys.stderr)
        return None


def wait_for(
    eprs: list[EndpointReference], target: str, read: StateReader, raw: Raw, args: argparse.Namespace, base_url: str
) -> int:
    """0 when every workspace reaches ``target``; EXIT_STATE when one ends up terminal."""
    listener = open_listener(args)
    try:
        if listener is None:
            return max(_poll(epr, target, read, args) for epr in eprs)
        return _listen(eprs, target, read, raw, listener, args, base_url)
    finally:
        if listener is not None:
            listener.stop()


def _listen(eprs, target, read, raw, listener, args, base_url) -> int:  # type: ignore[no-untyped-def]
    consumer = listener.consumer_reference(base_url)
    for epr in eprs:
        for topic in (STATE_TOPIC, TERMINATION_TOPIC):
            raw(epr, WSNT_ACTION + "Subscribe", subscribe_request(consumer, topic))
    # Subscribing takes a moment: read each state once so a change already made is not missed.
    states = {epr.key(WORKSPACE_KEY): _report(epr, read(epr)) for epr in eprs}
    deadline = time.monotonic() + args.timeout
    while not _settled(states, target):
        try:
            notification = listener.received.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no workspace reached {target} within {args.timeout} s") from None
        key = notification.producer.key(WORKSPACE_KEY) if notification.producer else None
        if key in states and states[key] not in TERMINAL:
            states[key] = _report_key(key, state_of(notification) or "?")
    return 0 if all(state == target for state in states.values()) else EXIT_STATE


def _settled(states: dict[str | None, str], target: str) -> bool:
    return all(state == target or state in TERMINAL for state in states.values())


def _poll(epr: EndpointReference, target: str, read: StateReader, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    seen = None
    while time.monotonic() < deadline:
        state = read(epr)
        if state != seen:
            seen = _report(epr, state)
        if state == target:
            return 0
        if state in TERMINAL:
            return EXIT_STATE
        time.sleep(args.poll_delay / 1000)  # polling is the protocol here: clients behind NAT do this
    raise TimeoutError(f"workspace did not reach {target} within {args.timeout} s")


def _report(epr: EndpointReference, state: str) -> str:
    return _report_key(epr.key(WORKSPACE_KEY), state)


def _report_key(key: str | None, state: str) -> str:
    print(f"workspace {key}: {state}", flush=True)
    return state
