"""A crash storm: SIGKILL the real vws-service at random points of a storm of creates, shutdowns,
starts and destroys from several clients, start it again, and check what a user relies on:

- nothing a client was told is lost: a confirmed create lives on, a confirmed destroy stays done,
  a confirmed shutdown or start holds (a request cut off by the kill may have happened or not);
- nothing leaks: node share, addresses, image claims, domains and their files belong to live
  workspaces only, and once every workspace is destroyed nothing is held at all;
- no healthy workspace is marked Corrupted, and every deployment cut off comes up after all.

The test driver keeps its domains in the service's process, so a domain on the driver is what
the pool recorded (``pool_domains``: the node file a restarted service rebuilds its node from,
see vws/pool/testnode.py) plus its files in the state dir; a restarted service reports any of
its domains that no live workspace claims, and the storm requires it reports none.

The storm is seeded: VWS_CRASH_SEED=<n> replays a failing one (timing still varies).
"""

import http.client
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deployments import wait_until
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import WORKSPACE, qname

SERVICE = Path(sys.executable).parent / "vws-service"
WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
ROUNDS = 8
CLIENTS = 4
LIVE_PER_CLIENT = 2  # the embedded node has 8 CPUs; each workspace takes one
GONE = "gone"
LOST_CONNECTION = (ConnectionError, http.client.HTTPException, OSError)


@dataclass
class Tracked:
    """One workspace a client was told of, and the states it may be in now."""

    epr: EndpointReference
    possible: set[str]
    deploying: bool = True  # created, not yet seen in its initial state


@dataclass
class StormClient:
    """One client of the storm: its own connection, its own workspaces, its own random choices."""

    number: int
    rng: random.Random
    tracked: dict[str, Tracked] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)

    def live(self) -> list[str]:
        return [key for key, workspace in self.tracked.items() if workspace.possible != {GONE}]

    def run(self, base: str, replies: "Replies") -> None:
        """Operate until the service is killed under it."""
        client = Gt4Client(base, timeout=60)
        try:
            while True:
                self._step(client)
                replies.count()
        except LOST_CONNECTION:
            return  # the kill: what was in flight may or may not have happened
        except Exception as exc:  # noqa: BLE001 - reported by the test, which the others keep storming
            self.unexpected.append(f"client {self.number}: {exc!r}")
        finally:
            client.close()

    def _step(self, client: Gt4Client) -> None:
        live = self.live()
        if len(live) < LIVE_PER_CLIENT and (not live or self.rng.random() < 0.4):
            epr = created_eprs(client.create())[0]
            self.tracked[epr.key(WORKSPACE_KEY)] = Tracked(epr, {"Running"})
            return
        workspace = self.tracked[self.rng.choice(live)]
        if workspace.deploying:
            if client.state(workspace.epr) == "Running":
                workspace.deploying = False
            return
        (current,) = workspace.possible
        if self.rng.random() < 0.25:
            self._operate(workspace, current, GONE, lambda: client.destroy(workspace.epr))
        elif current == "Running":
            self._operate(workspace, current, "Propagated", lambda: client.shutdown(workspace.epr))
        else:
            self._operate(workspace, current, "Running", lambda: client.start(workspace.epr))

    def _operate(self, workspace: Tracked, before: str, after: str, call) -> None:  # type: ignore[no-untyped-def]
        workspace.possible = {before, after}  # until the reply says which
        try:
            call()
        except SoapFault as fault:
            self.unexpected.append(f"client {self.number}: {before} -> {after} refused: {fault}")
            workspace.possible = {before}
            return
        workspace.possible = {after}


class Replies:
    """Counts the replies of the storm, so the kill can wait for the n-th one."""

    def __init__(self) -> None:
        self._seen = 0
        self._changed = threading.Condition()

    def count(self) -> None:
        with self._changed:
            self._seen += 1
            self._changed.notify_all()

    def wait_for(self, n: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._seen >= n, timeout=60)


class Run:
    """One vws-service process on the storm's state dir, its stderr kept in a file."""

    def __init__(self, state_dir: Path, number: int) -> None:
        self.log = state_dir.parent / f"service-{number}.log"
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                [SERVICE, "--listen", "127.0.0.1:0", "--state-dir", state_dir, "--insecure", "--log-level", "INFO"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        line = self.process.stdout.readline()
        if not line.startswith("vws-service listening on http://"):
            self.kill()
            pytest.fail(f"vws-service did not start: {line!r}\n{self.log.read_text()}")
        self.base = line.rsplit(" ", 1)[-1].strip()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, self.log.read_text()

    def unclaimed_domains(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "belongs to no live workspace" in line]


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """The storm's service processes: none outlives the test, whatever it found."""
    started: list[Run] = []
    yield started
    for run in started:
        if run.process.poll() is None:
            run.kill()


@pytest.fixture
def seed() -> int:
    chosen = int(os.environ.get("VWS_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash storm seed: VWS_CRASH_SEED={chosen}")  # shown by pytest when the test fails
    return chosen


def test_sigkill_storms_lose_nothing_confirmed_leak_nothing_and_corrupt_nothing(tmp_path, seed, runs):
    rng = random.Random(seed)
    state_dir = tmp_path / "state"
    clients = [StormClient(number, random.Random(rng.random())) for number in range(CLIENTS)]

    def start(number: int) -> Run:
        runs.append(Run(state_dir, number))
        return runs[-1]

    for round_number in range(ROUNDS):
        run = start(round_number)
        check_after_restart(run, clients, state_dir, f"seed {seed}, round {round_number}")
        storm(run, clients, kill_after=rng.randrange(0, 30))
    run = start(ROUNDS)
    check_after_restart(run, clients, state_dir, f"seed {seed}, after the last kill")
    destroy_everything(run, clients, state_dir)
    run.stop()
    run = start(ROUNDS + 1)  # the node is rebuilt from what the pool recorded: nothing
    assert held(state_dir) == {"live workspaces": set()}, f"seed {seed}"
    assert not run.unclaimed_domains()
    run.stop()


def storm(run: Run, clients: list[StormClient], kill_after: int) -> None:
    """Let the clients loose, SIGKILL the service after ``kill_after`` replies, wait for them to notice."""
    replies = Replies()
    threads = [threading.Thread(target=client.run, args=(run.base, replies)) for client in clients]
    for thread in threads:
        thread.start()
    try:
        assert replies.wait_for(kill_after), "the storm stalled"
    finally:
        run.kill()
        for thread in threads:
            thread.join()
    for client in clients:
        assert not client.unexpected, client.unexpected


def check_after_restart(run: Run, clients: list[StormClient], state_dir: Path, where: str) -> None:
    """Every workspace as its client was told (or as the request cut off made it), all deployments
    done, nothing held for what is gone; the orphans of creates cut off before their reply are destroyed."""
    client = Gt4Client(run.base)
    try:
        for storm_client in clients:
            for key, workspace in storm_client.tracked.items():
                found = state_or_gone(client, workspace.epr)
                bringing_up = {"Unpropagated", "Propagated"} if workspace.deploying else set()
                assert found in workspace.possible | bringing_up, (
                    f"{where}: workspace {key} is {found}, its client expects one of {workspace.possible}"
                )
                workspace.possible = {found}
        deploying = [
            workspace.epr
            for storm_client in clients
            for workspace in storm_client.tracked.values()
            if workspace.deploying and workspace.possible != {GONE}
        ]
        wait_until(client, deploying)  # fails if one ends elsewhere, Corrupted included
        for storm_client in clients:
            for workspace in storm_client.tracked.values():
                if workspace.deploying and workspace.possible != {GONE}:
                    workspace.deploying, workspace.possible = False, {"Running"}
        holdings = held(state_dir)
        tracked = {int(key) for c in clients for key, w in c.tracked.items() if w.possible != {GONE}}
        orphans = holdings["live workspaces"] - tracked
        for orphan in orphans:  # a create cut off before its reply: never confirmed, so no loss
            client.destroy(workspace_epr(run.base, orphan))
        assert held(state_dir) == {"live workspaces": tracked}, where
    finally:
        client.close()
    assert not run.unclaimed_domains(), f"{where}: {run.unclaimed_domains()}"


def state_or_gone(client: Gt4Client, epr: EndpointReference) -> str:
    try:
        return client.state(epr)
    except SoapFault as fault:
        assert fault.element == qname(WORKSPACE, "UnknownWorkspaceFault") or "no workspace" in str(fault), fault
        return GONE


def workspace_epr(base: str, workspace_id: int) -> EndpointReference:
    return EndpointReference(base + "WorkspaceService", (key_property(WORKSPACE_KEY, str(workspace_id)),))


def held(state_dir: Path) -> dict[str, set]:
    """The live workspaces, and whatever is held for a workspace that is not live (or not as it says)."""
    db = sqlite3.connect(f"file:{state_dir / 'vws.sqlite'}?mode=ro", uri=True)
    try:
        live = dict(db.execute("select id, state from workspaces where destroyed_at is null").fetchall())
        domains = dict(db.execute("select workspace_id, state from pool_domains").fetchall())
        names = {row[0] for row in db.execute("select domain from workspaces where destroyed_at is null")}
        leaks = {
            "live workspaces": set(live),
            "not settled or Corrupted": {(i, s) for i, s in live.items() if s not in _DOMAIN_STATE},
            "node share": set(_ids(db, "select workspace_id from pool_placements where held = 1")) - set(live),
            "addresses": set(_ids(db, "select workspace_id from leases where workspace_id is not null")) - set(live),
            "image claims": set(_ids(db, "select workspace_id from image_claims")) - set(live),
            "domains": set(domains) - set(live),
            "domains not as their workspace": {
                (i, s, domains.get(i)) for i, s in live.items() if domains.get(i) != _DOMAIN_STATE.get(s)
            },
            "domain files": {p.name for p in state_dir.glob("nodes/*/domains/*")} - names,
        }
    finally:
        db.close()
    return {name: found for name, found in leaks.items() if found or name == "live workspaces"}


_DOMAIN_STATE = {"running": "running", "propagated": "shutoff"}  # settled workspace -> its domain


def _ids(db: sqlite3.Connection, query: str) -> list[int]:
    return [row[0] for row in db.execute(query)]


def destroy_everything(run: Run, clients: list[StormClient], state_dir: Path) -> None:
    client = Gt4Client(run.base)
    try:
        for workspace_id in held(state_dir)["live workspaces"]:
            client.destroy(workspace_epr(run.base, workspace_id))
    finally:
        client.close()
    for storm_client in clients:
        storm_client.tracked.clear()
