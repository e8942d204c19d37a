"""Waiting for the deployments a create starts in the background, on the manager's events."""

import argparse
import threading
from collections.abc import Callable, Sequence

from lxml import etree

from clients import monitor
from tests.gt4wire import Gt4Client, SoapFault
from vws.store.database import Store
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.wsrf.addressing import EndpointReference


class Deployments:
    """Wakes on every committed state change and checks whether any background work is still owed.

    Settled also means every committed state has been through the service's listeners (this
    one runs after them): a test that subscribes next must not be sent a change that its
    subscription came after.
    """

    def __init__(self, manager: WorkspaceManager, store: Store) -> None:
        self._store = store
        self._changed = threading.Condition()
        self._notified: dict[int, str] = {}
        manager.add_listener(self._seen)

    def _seen(self, workspace: Workspace) -> None:
        with self._changed:
            self._notified[workspace.id] = workspace.state.value
            self._changed.notify_all()

    def settle(self, timeout: float = 30) -> None:
        with self._changed:
            idle = self._changed.wait_for(self._idle, timeout)
        assert idle, f"deployments still running after {timeout} s"

    def _idle(self) -> bool:
        with self._store.reading() as db:  # checked on every state change: two cheap queries
            if db.execute("select 1 from workspaces where work_owed = 1 limit 1").fetchone():
                return False
            states = dict(db.execute("select id, state from workspaces where destroyed_at is null").fetchall())
        return all(self._notified.get(key, state) == state for key, state in states.items())


def settler(service) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    """What a test client calls after a create or an ensemble's done (see ``Gt4Client``)."""
    return Deployments(service.manager, service.store).settle


def wait_options(**overrides: object) -> argparse.Namespace:
    """vws-client's waiting options, defaults unless overridden."""
    parser = argparse.ArgumentParser()
    monitor.add_options(parser)
    return argparse.Namespace(**{**vars(parser.parse_args([])), **overrides})


class Gt4Remote:
    """A tests.gt4wire client as the Remote through which vws-client waits."""

    def __init__(self, client: Gt4Client) -> None:
        self.client = client

    def raw(self, target: EndpointReference, action: str, body: etree._Element) -> etree._Element:
        return self.client.call(target, action, body)

    @staticmethod
    def fault_name(error: Exception) -> str | None:
        element = error.element if isinstance(error, SoapFault) else None
        return None if element is None else etree.QName(element).localname


def wait_until(client: Gt4Client, eprs: Sequence[EndpointReference], target: str = "Running") -> None:
    """For a service in another process: wait as vws-client does, on the Notify of each state change."""
    outcome = monitor.wait_for(list(eprs), target, Gt4Remote(client), wait_options(timeout=60), client.base_url)
    assert outcome == 0, f"a workspace ended elsewhere than {target}"
