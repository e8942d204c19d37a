"""A workspace layer with no HTTP in front: a tmp SQLite store, the embedded test:/// node,
the injected ManualClock; and waiting on its state changes (helpers, no tests here)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.deployments import Deployments
from vws.clock import ManualClock
from vws.config import PolicyConfig, PoolConfig
from vws.pool.manager import PoolManager
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.workspace.request import DeploymentRequest, DiskRequest, MachineRequest, NicRequest
from vws.workspace.states import State

ALICE = Caller("/O=Grid/OU=Example/CN=Alice")
BOB = Caller("/O=Grid/OU=Example/CN=Bob")
MACHINE = MachineRequest(
    memory_mb=256, vcpus=1, root=DiskRequest("file://ttylinux-xen", "sda1"), nics=(NicRequest("eth0", "public"),)
)


def request(initial_state: str = "Running", **fields: object) -> DeploymentRequest:
    return DeploymentRequest(name="ws", machine=MACHINE, initial_state=initial_state, **fields)  # type: ignore[arg-type]


class Layer:
    """The workspace layer as vws.service wires it, without the SOAP edge."""

    def __init__(
        self, state: Path, clock: ManualClock, policy: PolicyConfig | None = None, domain_events: bool = True
    ) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.policy = policy or PolicyConfig()
        self.store = Store(state / "vws.sqlite")
        self.pool = PoolManager(
            self.store, PoolConfig(), clock, state, on_event=self._domain_event if domain_events else None
        )
        self._open_manager()

    def _open_manager(self) -> None:
        self.manager = WorkspaceManager(self.store, self.pool, self.clock, self.policy, deployers=1)
        self.deployments = Deployments(self.manager, self.store)
        self.states = StateLog(self.manager)

    def restart(self) -> list[str]:
        """A new manager on the same store and pool, as after a kill; returns what its recovery found."""
        self.manager.close()
        self._open_manager()
        return self.manager.recover()

    def leave_as_killed(self, workspace_id: int, **columns: object) -> None:
        """Set the row as a kill at that instant leaves it."""
        with self.store.transaction() as db:
            db["workspaces"].update(workspace_id, columns)

    def _domain_event(self, node: str, domain: str, event: str) -> None:
        self.manager.on_domain_event(node, domain, event)

    def settle(self) -> None:
        """Wait until no background work is owed to any workspace."""
        self.deployments.settle()

    def domain_state(self, workspace: Workspace) -> str:
        return self.pool.domain_states().get((workspace.node or "", workspace.domain or ""), "missing")

    def rows(self, sql: str, *parameters: object) -> list[tuple]:
        with self.store.reading() as db:
            return db.execute(sql, parameters).fetchall()

    def close(self) -> None:
        self.manager.close()
        self.pool.close()
        self.store.close()


class StateLog:
    """Every committed state of every workspace, in order; ``wait_for`` waits on the next ones."""

    def __init__(self, manager: WorkspaceManager) -> None:
        self._changed = threading.Condition()
        self.seen: dict[int, list[State]] = {}
        manager.add_listener(self._record)

    def _record(self, workspace: Workspace) -> None:
        with self._changed:
            self.seen.setdefault(workspace.id, []).append(workspace.state)
            self._changed.notify_all()

    def wait_for(self, workspace_id: int, state: State, timeout: float = 30) -> None:
        with self._changed:
            reached = self._changed.wait_for(lambda: state in self.seen.get(workspace_id, []), timeout)
        assert reached, f"workspace {workspace_id} never reached {state}: {self.seen.get(workspace_id)}"


@contextmanager
def layer(
    state: Path, clock: ManualClock, policy: PolicyConfig | None = None, domain_events: bool = True
) -> Iterator[Layer]:
    """``domain_events=False``: libvirt's lifecycle events never reach the manager (a lost connection)."""
    opened = Layer(state, clock, policy, domain_events)
    try:
        yield opened
    finally:
        opened.close()
