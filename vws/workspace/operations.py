"""Operations on one workspace: check the transition, drive the hypervisor, commit.

The hypervisor is driven between transactions, under the workspace's lock. A transition
too slow to finish inside a request (an unpropagation copies a whole disk) commits its
waiting state at once and finishes on a deployer thread. Destroying a workspace whose
image is being copied abandons the copy rather than waiting for it.
"""

import logging
from dataclasses import replace

from vws.clock import Clock
from vws.errors import BackendError, IllegalState, OperationDisabled, UnknownResource, VwsError
from vws.pool.manager import PoolManager
from vws.workspace.caller import Caller
from vws.workspace.deployers import Deployers
from vws.workspace.records import Records, Workspace
from vws.workspace.states import Action, Op, State, Transition, transition

log = logging.getLogger(__name__)


class Operations:
    def __init__(self, records: Records, pool: PoolManager, clock: Clock, deployers: Deployers) -> None:
        self._records = records
        self._pool = pool
        self._clock = clock
        self._deployers = deployers

    def operate(self, caller: Caller, workspace_id: int, op: Op, save_target: str | None = None) -> Workspace:
        """What a client asks: refused once the lease has ended, except a destroy."""
        workspace = self._records.get(caller, workspace_id)
        if op is not Op.DESTROY and self._clock.now() >= workspace.termination_time:
            raise OperationDisabled(f"the lease of workspace {workspace_id} has ended")
        if op is not Op.DESTROY and workspace.work_owed and workspace.state is not State.UNPROPAGATING:
            # Accepted now, it would meet the bring-up's next step and end Corrupted.
            raise IllegalState(
                f"workspace {workspace_id} is still being deployed ({workspace.state.value}); "
                f"ask again once it is {workspace.request.initial_state}"
            )
        return self.apply(workspace_id, op, save_target=save_target)

    def apply(
        self,
        workspace_id: int,
        op: Op,
        work_owed: bool | None = None,
        *,
        failure_corrupts: bool = True,
        save_target: str | None = None,
    ) -> Workspace:
        """Check the transition, drive the hypervisor, commit the new state (and ``work_owed``).

        A hypervisor failure makes the workspace Corrupted, unless the caller (a bring-up,
        which gives back what the workspace holds) records that itself.
        """
        if op is Op.DESTROY:
            return self._destroy(workspace_id)
        with self._records.locked(workspace_id):
            workspace = self._records.snapshot(workspace_id)
            step = transition(workspace.state, op)
            if step.via is not None:  # an unpropagation: what can be refused now is refused now
                assert workspace.domain
                request = replace(workspace.request, save_target=save_target or workspace.request.save_target)
                self._pool.check_save_target(workspace.domain, request.save_target)
                committed = self._records.commit(
                    workspace_id, step.via, work_owed=True, request=request, reason=op.value
                )
                self._deployers.submit(self.finish, workspace_id, step)
                return committed
            # A restart that finds it set knows this was cut off (see recovery); a bring-up's
            # steps need no record: recovery starts a cut-off bring-up again from its reservation.
            if step.actions and not workspace.work_owed:
                self._records.begin(workspace_id, op)
            try:
                for action in step.actions:
                    self._perform(action, workspace)
            except BackendError as exc:
                if failure_corrupts:
                    self._records.commit(workspace_id, State.CORRUPTED, fault=exc.description)
                raise
            return self._records.commit(
                workspace_id, step.target, started=op is Op.START, work_owed=work_owed, reason=op.value
            )

    def finish(self, workspace_id: int, step: Transition) -> None:
        """The background half of a transition that waits in ``step.via``; a destroy may come first."""
        with self._records.locked(workspace_id):
            workspace = self._records.snapshot(workspace_id)
            if workspace.state is not step.via:
                return
            try:
                for action in step.actions:
                    self._perform(action, workspace)
            except Exception as exc:  # whatever it was, the client must see it in currentState
                if not isinstance(exc, VwsError):
                    log.exception("%s of workspace %s failed unexpectedly", step.op.value, workspace_id)
                reason = exc.description if isinstance(exc, VwsError) else f"internal error: {type(exc).__name__}"
                self._records.commit(workspace_id, State.CORRUPTED, fault=reason)
                return
            self._records.commit(workspace_id, step.target, work_owed=False, reason=step.op.value)

    def quietly(self, workspace_id: int, op: Op) -> None:
        """Apply ``op`` for the service itself: a failure is logged, and tried again later."""
        try:
            self.apply(workspace_id, op)
        except VwsError:
            log.exception("could not %s workspace %s; will retry", op.value, workspace_id)

    def _destroy(self, workspace_id: int) -> Workspace:
        """Remove the workspace; a copy of its image in flight is abandoned rather than waited for."""
        with self._deployers.destroying(workspace_id), self._records.locked(workspace_id):
            workspace = self._records.snapshot(workspace_id)
            if workspace.state.gone:  # another destroy ended it while this one waited for the lock
                raise UnknownResource(f"no workspace with key {workspace_id}")
            transition(workspace.state, Op.DESTROY)
            return self._remove(workspace)

    def _remove(self, workspace: Workspace) -> Workspace:
        self._records.commit(workspace.id, State.CANCELLED, reason=Op.DESTROY.value)
        if workspace.node and workspace.domain:
            # If this fails the workspace stays Cancelled and keeps its leases, so an
            # address is never handed out while a domain may still be using it.
            self._pool.remove(workspace.node, workspace.domain)
        return self._records.commit(workspace.id, State.DESTROYED, gone=True, reason=Op.DESTROY.value)

    def _perform(self, action: Action, workspace: Workspace) -> None:
        node, domain = workspace.node, workspace.domain
        assert node and domain
        match action:
            case Action.DEFINE:
                with self._deployers.watching(workspace.id, node) as progress:
                    self._pool.define(workspace.placement, workspace.request.machine, progress)
            case Action.START:
                self._pool.start(node, domain)
            case Action.SHUTDOWN:
                self._pool.shutdown(node, domain)
            case Action.SUSPEND:
                self._pool.suspend(node, domain)
            case Action.RESUME:
                self._pool.resume(node, domain)
            case Action.REBOOT:
                self._pool.reboot(node, domain)
            case Action.UNPROPAGATE:
                self._pool.unpropagate(node, domain, workspace.request.save_target)
            case Action.REMOVE:
                self._pool.remove(node, domain)
