"""A restart loses nothing: SIGKILL the real vws-service process and start it again."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deployments import wait_until
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.xmlns import LOGISTICS, WORKSPACE, WSRL, qname

SERVICE = Path(sys.executable).parent / "vws-service"


def start(state_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [SERVICE, "--listen", "127.0.0.1:0", "--state-dir", state_dir, "--insecure"], stdout=subprocess.PIPE, text=True
    )
    line = process.stdout.readline()
    assert line.startswith("vws-service listening on http://"), line
    return process, line.rsplit(" ", 1)[-1].strip()


def snapshot(client: Gt4Client, eprs) -> dict[str, tuple[str, str, str]]:
    """What a user can see of each workspace: state, termination time, address."""
    return {
        epr.key(qname(WORKSPACE, "WorkspaceKey")): (
            client.state(epr),
            client.get_property(epr, qname(WSRL, "TerminationTime"))[0].text,
            client.get_property(epr, qname(LOGISTICS, "logistics")).findtext(f".//{{{LOGISTICS}}}ipAddress"),
        )
        for epr in eprs
    }


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def test_sigkill_then_restart_keeps_workspaces_states_leases_and_terminations(state_dir):
    process, base = start(state_dir)
    try:
        client = Gt4Client(base)
        running, paused, destroyed = (created_eprs(client.create())[0] for _ in range(3))
        wait_until(client, (running, paused, destroyed))
        client.shutdown(paused, "Pause")
        client.destroy(destroyed)
        before = snapshot(client, (running, paused))
        client.close()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    process, base = start(state_dir)
    try:
        client = Gt4Client(base)
        after = snapshot(client, (running, paused))
        assert after == before
        assert [state for state, _, _ in after.values()] == ["Running", "Paused"]
        with pytest.raises(SoapFault):
            client.state(destroyed)
        # Both survivors still hold their addresses: a new workspace gets a third one.
        fresh = created_eprs(client.create())[0]
        wait_until(client, [fresh])
        ip = client.get_property(fresh, qname(LOGISTICS, "logistics")).findtext(f".//{{{LOGISTICS}}}ipAddress")
        assert ip not in {address for _, _, address in before.values()}
        client.shutdown(running, "Pause")  # the restarted service still drives the old domains
        assert client.state(running) == "Paused"
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
