"""Keeping workspaces and what libvirt runs in agreement, both ways.

A domain that died or vanished behind the service's back makes its workspace Corrupted,
whether a periodic round finds it or a libvirt lifecycle event reports it. Domains vws
owns that no live workspace claims are reported, and removed only when ``[pool]
remove_unclaimed_domains`` says so.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

from vws.errors import VwsError
from vws.pool.manager import PoolManager
from vws.store import rows
from vws.store.database import Store
from vws.workspace.records import Location, Records, Workspace
from vws.workspace.states import State

log = logging.getLogger(__name__)

# What libvirt should report for a domain whose workspace is in each settled state.
_EXPECTED_DOMAIN = {State.RUNNING: "running", State.PAUSED: "paused", State.PROPAGATED: "shutoff"}

_FATAL_EVENTS = frozenset({"stopped", "crashed", "undefined"})


class Reconciliation:
    def __init__(self, store: Store, pool: PoolManager, records: Records) -> None:
        self._store = store
        self._pool = pool
        self._records = records
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="domain-events")

    def reconcile(self) -> list[str]:
        """Compare every settled workspace with its domain, node by node; returns what was found wrong."""
        return [finding for node in self.nodes() for finding in self.reconcile_node(node)]

    def nodes(self) -> list[str]:
        """The nodes to compare: the pool's, and any that live workspaces are still placed on."""
        return sorted(set(self._pool.node_names()) | self._records.nodes_in_use())

    def reconcile_node(self, node: str) -> list[str]:
        """Compare every settled workspace on ``node`` with its domain; returns what was found wrong.

        A mismatch is checked again under the workspace's lock, so an operation in flight
        (its domain already changed, its state not yet committed) is not mistaken for a failure.
        """
        actual = self._pool.domain_states(node)
        locations = self._records.locations(node)
        findings = [
            finding
            for location in locations
            if _domain_mismatch(location, actual)
            for finding in self._confirm_mismatch(location.id)
        ]
        claimed = {location.domain for location in locations}
        findings += [self._unclaimed(node, domain) for _, domain in actual if domain not in claimed]
        for finding in findings:
            log.warning("reconciliation: %s", finding)
        return findings

    def on_domain_event(self, node: str, domain: str, event: str) -> None:
        """A lifecycle event from libvirt; handled off the event thread so it never waits on an operation."""
        self._events.submit(self._check_domain, node, domain, event)

    def close(self) -> None:
        """Stop handling events, once those already reported are handled."""
        self._events.shutdown(wait=True)

    def _unclaimed(self, node: str, domain: str) -> str:
        """Report a domain of ours that no live workspace claims; remove it only when configured."""
        finding = f"domain {domain} on {node} belongs to no live workspace"
        if not self._pool.removes_unclaimed:
            return finding + "; left alone"
        try:
            self._pool.remove(node, domain)
        except VwsError as exc:
            return finding + f"; removing it failed: {exc.description}"
        return finding + "; removed"

    def _confirm_mismatch(self, workspace_id: int) -> list[str]:
        with self._records.locked(workspace_id):
            workspace = self._records.snapshot(workspace_id)
            reason = _domain_mismatch(workspace, self._pool.domain_states(workspace.node))
            if reason is None:
                return []
            self._records.commit(workspace_id, State.CORRUPTED, fault=reason)
            return [f"workspace {workspace_id}: {reason}"]

    def _check_domain(self, node: str, domain: str, event: str) -> None:
        if event not in _FATAL_EVENTS:
            return
        with self._store.reading() as db:
            found = rows.select(
                db, "select id from workspaces where node = ? and domain = ? and destroyed_at is null", [node, domain]
            )
        if not found:
            return
        workspace_id = found[0]["id"]
        with self._records.locked(workspace_id):  # after any operation on it has committed
            workspace = self._records.snapshot(workspace_id)
            if workspace.state not in (State.RUNNING, State.PAUSED):
                return
            # An event may be older than the state it meets: the "stopped" of a shutdown handled
            # after the start that followed it. Only a domain that libvirt reports wrong now is a surprise.
            if _domain_mismatch(workspace, {(node, domain): self._pool.domain_state(node, domain)}):
                self._records.commit(workspace_id, State.CORRUPTED, fault=f"domain {domain} {event} unexpectedly")


def expected_domain(state: State) -> str | None:
    """What libvirt should report for the domain of a workspace settled in ``state`` (None: no one thing)."""
    return _EXPECTED_DOMAIN.get(state)


def _domain_mismatch(workspace: Workspace | Location, actual: dict[tuple[str, str], str]) -> str | None:
    """Why libvirt disagrees with a settled workspace, or None when it agrees."""
    expected = expected_domain(workspace.state)
    found = actual.get((workspace.node or "", workspace.domain or ""), "missing")
    # An unreachable node says nothing about its domains: the pool marks the node
    # unavailable, and its workspaces keep their state until it answers again.
    if expected is None or found in (expected, "unreachable"):
        return None
    return f"libvirt reports domain {workspace.domain} {found}, expected {expected}"
