"""At start-up: take every node up again, in the background, while the service already answers.

Taking a node up finishes what a crash cut off there half-way, then reconciles the node
with libvirt; until it is done, its node's gate (``gates``) holds back whatever would change
its workspaces, so nothing is decided on a view of the node not checked yet, while reads
are answered from the store. Nodes are taken up side by side: a slow or unreachable one
holds up only its own workspaces.

A renegotiation cut off is finished (see ``renegotiation``). A destroy that was under way
is completed, and so is an unpropagation. A deployment still owed is started again from
its reservation, once every node is taken up (a group may span nodes): whatever it had put
on the node is removed first, so a half-copied image or a half-defined domain never counts
as done. An operation cut off between driving libvirt and committing (a start whose domain
runs, a shutdown whose domain is off) is taken as done when libvirt shows it done, and as
never asked otherwise: its client was told neither, and reconciliation must not take it
for a failure.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from vws.errors import VwsError
from vws.pool.manager import PoolManager
from vws.workspace.deployers import Deployers
from vws.workspace.deployment import Deployment
from vws.workspace.operations import Operations
from vws.workspace.reconciliation import Reconciliation, expected_domain
from vws.workspace.records import Records, Workspace
from vws.workspace.renegotiation import Renegotiation
from vws.workspace.states import Op, State, transition

log = logging.getLogger(__name__)

MAX_PARALLEL_NODES = 8  # nodes taken up at once

# The deployments to start again once every node is taken up, by request or ensemble.
Owed = dict[str, list[int]]


class Recovery:
    def __init__(
        self,
        records: Records,
        pool: PoolManager,
        deployers: Deployers,
        operations: Operations,
        deployment: Deployment,
        reconciliation: Reconciliation,
        renegotiation: Renegotiation,
    ) -> None:
        self._records = records
        self._pool = pool
        self._deployers = deployers
        self._operations = operations
        self._deployment = deployment
        self._reconciliation = reconciliation
        self._renegotiation = renegotiation
        self._thread: threading.Thread | None = None
        self._findings: list[str] = []

    def begin(self) -> None:
        """Close every node's gate and take the nodes up on a background thread."""
        nodes = self._reconciliation.nodes()
        self._records.gates.close(nodes)
        self._thread = threading.Thread(target=self._take_up_all, args=(nodes,), name="recovery", daemon=True)
        self._thread.start()

    def wait(self) -> list[str]:
        """Once every node is taken up (at once if recovery never began): what it found."""
        if self._thread is not None:
            self._thread.join()
        return self._findings

    def _take_up_all(self, nodes: list[str]) -> None:
        with ThreadPoolExecutor(min(len(nodes), MAX_PARALLEL_NODES) or 1, thread_name_prefix="take-up") as threads:
            taken_up = list(threads.map(self._take_up, nodes))
        owed: Owed = {}
        for findings, node_owed in taken_up:
            self._findings += findings
            for key, ids in node_owed.items():
                owed.setdefault(key, []).extend(ids)
        for ids in owed.values():
            self._deployment.bring_up_later(ids)
        log.info("recovery: %d nodes taken up; %d findings", len(nodes), len(self._findings))

    def _take_up(self, node: str) -> tuple[list[str], Owed]:
        """Finish the work cut off on ``node``, then reconcile it; its findings and the deployments owed."""
        owed: Owed = {}
        with self._records.gates.taking_up(node):
            try:
                findings = self._renegotiation.recover(node) + self._finish_cut_off(node, owed)
                return findings + self._reconciliation.reconcile_node(node), owed
            except Exception:
                log.exception("recovery: taking node %s up failed; reconciliation will look again", node)
                return [], owed

    def _finish_cut_off(self, node: str, owed: Owed) -> list[str]:
        """Take up every workspace's cut-off work on ``node``; deployments to start again go in ``owed``."""
        findings = []
        for workspace in self._records.unfinished(node):
            if workspace.state is State.CANCELLED:
                findings.append(f"workspace {workspace.id}: its destroy was cut off; finished")
                self._operations.quietly(workspace.id, Op.DESTROY)
            elif workspace.state is State.UNPROPAGATING:
                findings.append(f"workspace {workspace.id}: its unpropagation was cut off; started again")
                # Shutting down a domain that is already off returns at once.
                unpropagation = transition(State.RUNNING, Op.READY_FOR_TRANSPORT)
                self._deployers.submit(self._operations.finish, workspace.id, unpropagation)
            elif workspace.work_owed:
                findings.append(f"workspace {workspace.id}: its deployment was cut off; started again")
                self._reset(workspace)
                key = workspace.group_key or workspace.ensemble_key or str(workspace.id)
                owed.setdefault(key, []).append(workspace.id)
            elif workspace.operation is not None:
                findings.append(self._settle_cut_off(workspace))
        for finding in findings:
            log.warning("recovery: %s", finding)
        return findings

    def _settle_cut_off(self, workspace: Workspace) -> str:
        """The outcome of an operation cut off after it was recorded: what libvirt shows of it."""
        op = workspace.operation
        assert op is not None and workspace.node and workspace.domain
        step = transition(workspace.state, op)
        cut_off = f"workspace {workspace.id}: its {op.value} was cut off"
        with self._records.locked(workspace.id):
            if self._pool.domain_state(workspace.node, workspace.domain) == expected_domain(step.target):
                self._records.commit(workspace.id, step.target, started=op is Op.START, reason=f"recovery: {op.value}")
                return f"{cut_off} after libvirt did it; now {step.target.value}"
            self._records.abandon(workspace.id)
        return f"{cut_off}; still {workspace.state.value}"

    def _reset(self, workspace: Workspace) -> None:
        """Back to a bare reservation: the domain and its files go, the leases stay."""
        with self._records.locked(workspace.id):
            try:
                if workspace.node and workspace.domain:
                    self._pool.remove(workspace.node, workspace.domain)
            except VwsError as exc:
                fault = f"recovery could not clean up: {exc.description}"
                self._records.commit(workspace.id, State.CORRUPTED, fault=fault)
                return
            if workspace.state is not State.UNPROPAGATED:
                self._records.commit(workspace.id, State.UNPROPAGATED, reason="recovery: deployment cut off")
