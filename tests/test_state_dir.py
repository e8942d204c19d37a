"""The state dir keeps users' userdata and private keys to itself: 0700, and every file in it 0600,
whatever the umask vws-service and vws-admin were started with; start-up names what is not."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.deployments import wait_until
from tests.gt4wire import Gt4Client, created_eprs
from vws import state_dir as private
from vws.store.database import Store

BIN = Path(sys.executable).parent


def modes(root: Path) -> dict[str, str]:
    """Every directory and file under ``root`` (itself included) -> its permission bits, as 0700."""
    paths = [root, *root.rglob("*")]
    return {str(path.relative_to(root)): f"{stat.S_IMODE(path.lstat().st_mode):04o}" for path in paths}


def start(state_dir: Path, config: Path) -> tuple[subprocess.Popen, str]:
    argv = [BIN / "vws-service", "--config", config, "--listen", "127.0.0.1:0", "--state-dir", state_dir, "--insecure"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=0)
    line = process.stdout.readline()
    assert line.startswith("vws-service listening on http://"), line + process.stderr.read()
    return process, line.rsplit(" ", 1)[-1].strip()


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    return process.communicate(timeout=60)[1]


def test_everything_vws_makes_in_the_state_dir_is_private_under_umask_0(tmp_path):
    state, config = tmp_path / "state", tmp_path / "vws.conf"
    config.write_text("[pool]\ntest_node_context_iso = yes\n")  # the contextualization ISO too
    subprocess.run(
        [BIN / "vws-admin", "--state-dir", state, "ca", "init", "--hostname", "localhost"], umask=0, check=True
    )
    process, base = start(state, config)
    try:
        client = Gt4Client(base)
        wait_until(client, created_eprs(client.create()))
        client.close()
        made = modes(state)  # while it runs: the WAL files exist
    finally:
        warnings = stop(process)
    secrets = {"vws.sqlite", "vws.sqlite-wal", "vws.sqlite-shm", "security/hostkey.pem", "security/userkey.pem"}
    assert secrets <= set(made)
    assert any(name.endswith(".iso") for name in made)
    assert {name: mode for name, mode in made.items() if mode not in ("0700", "0600")} == {}
    assert warnings == ""


def test_start_up_names_what_other_users_may_read(tmp_path):
    state, config = tmp_path / "state", tmp_path / "vws.conf"
    config.write_text("")
    state.mkdir()
    Store(state / "vws.sqlite").close()
    os.chmod(state, 0o755)  # as vws made them before it kept its files private
    os.chmod(state / "vws.sqlite", 0o644)
    process, _ = start(state, config)
    warnings = stop(process)
    assert f"other users may read {state} (0755), {state / 'vws.sqlite'} (0644)" in warnings
    assert f"chmod -R go= {state}" in warnings


def test_beneath_a_directory_closed_to_other_users_only_secrets_are_looked_at(tmp_path):
    state = tmp_path / "state"
    domain = state / "nodes" / "node1" / "domains" / "wrksp-1"
    domain.mkdir(parents=True)
    (state / "security").mkdir()
    for path in (state, state / "nodes", state / "security"):
        os.chmod(path, 0o700)
    for path in (domain.parent.parent, domain.parent, domain):  # whatever the umask of the test run
        os.chmod(path, 0o755)
    (domain / "root.qcow2").write_text("")
    os.chmod(domain / "root.qcow2", 0o644)  # out of reach: nodes/ is closed to other users
    (state / "security" / "hostkey.pem").write_text("")
    os.chmod(state / "security" / "hostkey.pem", 0o644)  # a secret: named even so
    assert private.exposed(state) == [f"{state / 'security' / 'hostkey.pem'} (0644)"]
    os.chmod(state / "nodes", 0o755)
    assert f"{domain / 'root.qcow2'} (0644)" in private.exposed(state)
