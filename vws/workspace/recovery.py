"""At start-up, before serving: finish what a crash cut off half-way, then reconcile.

A destroy that was under way is completed, and so is an unpropagation. A deployment
still owed is started again from its reservation: whatever it had put on the node is
removed first, so a half-copied image or a half-defined domain never counts as done.
An operation cut off between driving libvirt and committing (a start whose domain
runs, a shutdown whose domain is off) is taken as done when libvirt shows it done, and
as never asked otherwise: its client was told neither, and reconciliation must not
take it for a failure.
"""

import logging

from vws.errors import VwsError
from vws.pool.manager import PoolManager
from vws.workspace.deployers import Deployers
from vws.workspace.deployment import Deployment
from vws.workspace.operations import Operations
from vws.workspace.reconciliation import Reconciliation, expected_domain
from vws.workspace.records import Records, Workspace
from vws.workspace.states import Op, State, transition

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        records: Records,
        pool: PoolManager,
        deployers: Deployers,
        operations: Operations,
        deployment: Deployment,
        reconciliation: Reconciliation,
    ) -> None:
        self._records = records
        self._pool = pool
        self._deployers = deployers
        self._operations = operations
        self._deployment = deployment
        self._reconciliation = reconciliation

    def recover(self) -> list[str]:
        """Take up every workspace's cut-off work, reconcile, then redeploy; returns what was found."""
        findings = []
        owed: dict[str, list[int]] = {}  # the deployments to start again, by request or ensemble
        for workspace in self._records.unfinished():
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
        findings += self._reconciliation.reconcile()
        for ids in owed.values():
            self._deployment.bring_up_later(ids)
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
