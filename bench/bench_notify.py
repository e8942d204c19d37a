"""Notification round trip: a committed state change to the Notify in the consumer's hands.

The service runs in this process, so the clock starts in a WorkspaceManager listener
registered after the publisher (the instant the change is committed and queued)
and stops when the consumer's queue hands over the message. Pause and start in turn.
Target (issue #5): p50 < 5 ms (GT4 Java WS Core: 28 ms).
"""

import time

from common import report, running_service

from clients.listener import NotificationListener, notified_state
from tests.deployments import settler
from tests.gt4wire import Gt4Client, created_eprs
from tests.resources import STATE_TOPIC, create, create_request, subscribe

COUNT = 1000


def main() -> None:
    with running_service() as service, NotificationListener(("127.0.0.1", 0)) as listener:
        client = Gt4Client(service.base_url, settle=settler(service))
        (epr,) = created_eprs(create(client, create_request(initial_state="Propagated")))
        subscribe(client, epr, listener.consumer_reference(service.base_url), STATE_TOPIC)
        committed: list[float] = []
        service.manager.add_listener(lambda workspace: committed.append(time.perf_counter()))
        latencies = []
        for n in range(COUNT):
            client.start(epr) if n % 2 == 0 else client.shutdown(epr, "Pause")
            notification = listener.received.get(timeout=10)
            latencies.append(time.perf_counter() - committed[-1])
            assert notified_state(notification).state == ("Running" if n % 2 == 0 else "Paused")
        report("state change -> Notify received", latencies[50:])
        client.close()


if __name__ == "__main__":
    main()
