"""Bringing reserved workspaces up to their initial state, on the deployer threads.

Every member of a request (or ensemble) is propagated before any is started, so they
run together or not at all. A deployment that fails gives back what its workspaces
reserved and leaves them Corrupted with the reason; a member destroyed meanwhile is
simply left out.
"""

import logging

from vws.errors import Cancelled, IllegalState, VwsError
from vws.pool.manager import PoolManager
from vws.workspace.deployers import Deployers, Interrupted
from vws.workspace.operations import Operations
from vws.workspace.records import Records, Workspace
from vws.workspace.states import INITIAL_OPS, Op, State

log = logging.getLogger(__name__)


class DeploymentFailed(Exception):
    def __init__(self, workspace_id: int, reason: str) -> None:
        super().__init__(reason)
        self.workspace_id = workspace_id
        self.reason = reason


class Deployment:
    def __init__(self, records: Records, pool: PoolManager, operations: Operations, deployers: Deployers) -> None:
        self._records = records
        self._pool = pool
        self._operations = operations
        self._deployers = deployers

    def deploy(self, workspaces: list[Workspace]) -> list[Workspace]:
        """Hand the workspaces to a deployer when work is owed to them; returns them."""
        if any(workspace.work_owed for workspace in workspaces):
            self.bring_up_later([workspace.id for workspace in workspaces])
        return workspaces

    def bring_up_later(self, ids: list[int]) -> None:
        self._deployers.submit(self._bring_up, ids)

    def _bring_up(self, ids: list[int]) -> None:
        """Take reserved workspaces to their initial states, stage by stage; one failure abandons them all."""
        plans = {workspace_id: INITIAL_OPS[self._initial_state(workspace_id)] for workspace_id in ids}
        try:
            for stage in range(max(len(ops) for ops in plans.values())):
                for workspace_id, ops in plans.items():
                    if stage < len(ops):
                        self._advance(workspace_id, ops[stage], last=stage == len(ops) - 1)
        except Interrupted:
            pass  # the service is stopping; recovery takes the deployment up at the next start
        except DeploymentFailed as failure:
            self._abandon(ids, failure)

    def _initial_state(self, workspace_id: int) -> str:
        return self._records.snapshot(workspace_id).request.initial_state

    def _advance(self, workspace_id: int, op: Op, last: bool) -> None:
        """One step of a bring-up; the last one's commit also says no more work is owed."""
        self._deployers.check_open()
        try:
            self._operations.apply(workspace_id, op, work_owed=False if last else None, failure_corrupts=False)
        except Interrupted:
            raise
        except (Cancelled, IllegalState):
            if self._being_destroyed(workspace_id):
                return
            raise DeploymentFailed(workspace_id, "its state changed while it was being deployed") from None
        except VwsError as exc:
            raise DeploymentFailed(workspace_id, exc.description) from None
        except Exception as exc:  # a deployer thread has nobody else to tell
            log.exception("deployment of workspace %s failed unexpectedly", workspace_id)
            raise DeploymentFailed(workspace_id, f"internal error: {type(exc).__name__}") from None

    def _being_destroyed(self, workspace_id: int) -> bool:
        return self._deployers.is_destroying(workspace_id) or self._records.snapshot(workspace_id).state in (
            State.CANCELLED,
            State.DESTROYED,
        )

    def _abandon(self, ids: list[int], failure: DeploymentFailed) -> None:
        """Give back what a failed deployment holds; its workspaces stay, Corrupted, with the reason."""
        log.warning("deployment of workspace %s failed: %s", failure.workspace_id, failure.reason)
        for workspace_id in ids:
            reason = failure.reason
            if workspace_id != failure.workspace_id:
                reason = f"workspace {failure.workspace_id} of the same request failed: {reason}"
            with self._records.locked(workspace_id):
                workspace = self._records.snapshot(workspace_id)
                if workspace.state in (State.CANCELLED, State.DESTROYED):
                    continue
                try:
                    if workspace.node and workspace.domain:
                        self._pool.remove(workspace.node, workspace.domain)
                except VwsError as exc:  # its domain may live on: keep the addresses it may use
                    self._records.commit(
                        workspace_id, State.CORRUPTED, fault=f"{reason}; cleanup failed: {exc.description}"
                    )
                    continue
                self._records.commit(workspace_id, State.CORRUPTED, fault=f"deployment failed: {reason}", release=True)
