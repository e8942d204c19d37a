"""Waiting for workspaces to reach a state: by notifications, or by polling.

By default a NotificationListener receives the service's Notify messages and the
client subscribes each workspace to its currentState and ResourceTermination
topics. However the wait ends (the state reached, a failure, a timeout, Ctrl-C),
the client destroys those subscriptions, so the service is not left posting to a
listener that is gone. Clients behind NAT, or any that ask (``--poll``), poll
currentState every ``--poll-delay`` ms instead; so does a client whose listener
cannot bind its port.

An image copy is not a notification topic: while a workspace is Unpropagated, its
``propagation`` property is read every ``--poll-delay`` ms and shown (clients.progress).
"""

import argparse
import queue
import sys
import time
from collections.abc import Callable

from clients.listener import NotificationListener, notified_state
from clients.progress import Display
from clients.resource import DESTROYED, CurrentState, Remote, copies, current_state, destroy, unknown
from vws.wsrf.addressing import EndpointReference
from vws.wsrf.notification import TERMINATION_TOPIC, subscribe_request
from vws.xmlns import TYPES, WORKSPACE, WSNT, WSNT_ACTION, qname

STATE_TOPIC = qname(TYPES, "currentState")
WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
PROBLEMS = frozenset({"Corrupted", "Cancelled"})  # states a workspace does not leave but to be destroyed
STATES = (
    "Unstaged",
    "Unpropagated",
    "Propagated",
    "Running",
    "Paused",
    "TransportReady",
    "StagedOut",
    "Corrupted",
    "Cancelled",
    DESTROYED,
)
EXIT_STATE = 3  # a workspace ended up somewhere it can no longer leave for the exit state

# Waits up to the given number of seconds; returns the workspaces whose state it learnt.
Source = Callable[[float | None], list[tuple[str | None, CurrentState]]]


def state_name(text: str) -> str:
    """A state named in any case, spelt as the service spells it (an argparse type)."""
    for state in STATES:
        if state.lower() == text.lower():
            return state
    raise argparse.ArgumentTypeError(f"{text!r} is not a workspace state (one of {', '.join(STATES)})")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exit-state", type=state_name, help="state to wait for, in any case (Destroyed: until the workspace is gone)"
    )
    parser.add_argument("--poll", action="store_true", help="poll instead of listening for notifications")
    parser.add_argument(
        "--poll-delay", type=int, default=200, metavar="MS", help="polling interval, of states and of image copies"
    )
    parser.add_argument(
        "--listener-address",
        metavar="HOST[:PORT]",
        help="where the service can reach this client (NAT); binds PORT, else any port",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, metavar="S", help="give up waiting after this long (0: never)"
    )
    parser.add_argument(
        "--auto-destroy", action="store_true", help="destroy a workspace that ends up Corrupted or Cancelled"
    )


def open_listener(args: argparse.Namespace) -> NotificationListener | None:
    """A started listener, or None to poll (asked for, or the port cannot be bound)."""
    if args.poll:
        return None
    port = args.listener_address.partition(":")[2] if args.listener_address else ""
    try:
        return NotificationListener(("0.0.0.0", int(port or 0)), advertise=args.listener_address).start()
    except OSError as exc:
        print(f"cannot listen for notifications ({exc}); polling instead", file=sys.stderr)
        return None


def wait_for(
    eprs: list[EndpointReference],
    target: str,
    remote: Remote,
    args: argparse.Namespace,
    base_url: str,
    display: Display | None = None,
) -> int:
    """0 when every workspace reaches ``target``; EXIT_STATE when one ends up elsewhere for good."""
    watch = _Watch(eprs, target, remote, args.auto_destroy, display or Display())
    listener = open_listener(args)
    subscriptions: list[EndpointReference] = []
    try:
        if listener is not None:
            _subscribe(eprs, listener.consumer_reference(base_url), remote, subscriptions)
        # Read each state once, after subscribing: a change made meanwhile is not missed.
        for epr in eprs:
            watch.see(epr.key(WORKSPACE_KEY), _read(remote, epr))
        source = _notifications(listener) if listener is not None else _polls(watch, remote, args.poll_delay)
        return _run(watch, source, args)
    finally:
        _unsubscribe(subscriptions, remote)
        if listener is not None:
            listener.stop()


def _run(watch: "_Watch", source: Source, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout if args.timeout else None
    progress_delay = args.poll_delay / 1000
    while not watch.settled():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"no workspace reached {watch.target} within {args.timeout:g} s")
        wait = left
        if watch.copying():  # a copy's progress is read at the poll delay
            wait = progress_delay if left is None else min(progress_delay, left)
        for key, current in source(wait):
            watch.see(key, current)
        watch.show_copies()
    return watch.outcome()


def _notifications(listener: NotificationListener) -> Source:
    def next_notification(wait: float | None) -> list[tuple[str | None, CurrentState]]:
        try:
            notification = listener.received.get(timeout=wait)
        except queue.Empty:
            return []
        producer = notification.producer.key(WORKSPACE_KEY) if notification.producer else None
        current = notified_state(notification)
        return [] if current is None else [(producer, current)]

    return next_notification


def _polls(watch: "_Watch", remote: Remote, delay_ms: int) -> Source:
    delay = delay_ms / 1000

    def poll(wait: float | None) -> list[tuple[str | None, CurrentState]]:
        time.sleep(delay if wait is None else min(delay, wait))  # polling is the protocol here
        return [(key, _read(remote, epr)) for key, epr in watch.waiting()]

    return poll


def _read(remote: Remote, epr: EndpointReference) -> CurrentState:
    """The workspace's currentState; Destroyed once it no longer exists."""
    try:
        return current_state(remote, epr)
    except Exception as error:
        if unknown(remote, error):
            return CurrentState(DESTROYED)
        raise


def _subscribe(
    eprs: list[EndpointReference], consumer: EndpointReference, remote: Remote, made: list[EndpointReference]
) -> None:
    """Subscribe ``consumer`` to both topics of every workspace, adding each subscription to ``made``."""
    for epr in eprs:
        for topic in (STATE_TOPIC, TERMINATION_TOPIC):
            reply = remote.raw(epr, WSNT_ACTION + "Subscribe", subscribe_request(consumer, topic))
            made.append(EndpointReference.from_element(reply.find(qname(WSNT, "SubscriptionReference"))))


def _unsubscribe(subscriptions: list[EndpointReference], remote: Remote) -> None:
    """Destroy each subscription; those of a destroyed workspace are gone already."""
    for subscription in subscriptions:
        try:
            destroy(remote, subscription)
        except Exception as error:  # cleaning up must not hide why the wait ended
            if not unknown(remote, error):
                print(f"could not end subscription {subscription.address}: {error}", file=sys.stderr)


class _Watch:
    """What is known of each workspace waited for, and whether the wait is over."""

    def __init__(
        self, eprs: list[EndpointReference], target: str, remote: Remote, auto_destroy: bool, display: Display
    ) -> None:
        self.target = target
        self._eprs = {epr.key(WORKSPACE_KEY): epr for epr in eprs}
        self._remote = remote
        self._auto_destroy = auto_destroy
        self._display = display
        self._states: dict[str | None, CurrentState] = {}
        self._settled: set[str | None] = set()  # reached the target, or can no longer reach it

    def see(self, key: str | None, current: CurrentState) -> None:
        if key not in self._eprs or key in self._settled:
            return
        if self._states.get(key) != current:
            self._display.line(f"workspace {key}: {current}")
        self._states[key] = current
        if current.state != "Unpropagated":
            self._display.copied(f"workspace {key}")
        if current.state in (self.target, DESTROYED):
            self._settled.add(key)
        elif current.state in PROBLEMS and self._auto_destroy:
            self._destroy(key)
        elif current.state in PROBLEMS and self.target != DESTROYED:
            self._settled.add(key)  # a lease running out destroys it later: only a wait for Destroyed goes on

    def _destroy(self, key: str | None) -> None:
        self._display.line(f"workspace {key}: destroying it (--auto-destroy)")
        try:
            destroy(self._remote, self._eprs[key])
        except Exception as error:
            if not unknown(self._remote, error):
                raise
        self.see(key, CurrentState(DESTROYED))

    def waiting(self) -> list[tuple[str | None, EndpointReference]]:
        return [(key, epr) for key, epr in self._eprs.items() if key not in self._settled]

    def copying(self) -> bool:
        return any(self._states[key].state == "Unpropagated" for key, _ in self.waiting())

    def show_copies(self) -> None:
        for key, epr in self.waiting():
            if self._states[key].state != "Unpropagated":
                continue
            try:
                for copy in copies(self._remote, epr):
                    self._display.copying(f"workspace {key}", copy)
            except Exception as error:  # destroyed meanwhile: its notification or next poll says so
                if not unknown(self._remote, error):
                    raise

    def settled(self) -> bool:
        return len(self._settled) == len(self._eprs)

    def outcome(self) -> int:
        return 0 if all(self._states[key].state == self.target for key in self._eprs) else EXIT_STATE
