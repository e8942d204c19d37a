"""vws-admin check: every problem of a configuration, one a line and exit 1; else a summary and exit 0."""

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from vws import check as checkup
from vws.cli import admin
from vws.clock import ManualClock
from vws.config import load

POOL = "192.168.128.1\npub01 192.168.128.10 192.168.128.1 192.168.128.255 255.255.255.0\n"


def vws_admin_check(*argv: str) -> tuple[int, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = admin.main([*argv, "check"])
    return status, out.getvalue().splitlines() + err.getvalue().splitlines()


def configured(tmp_path: Path, pool_section: str, nodes: str, security: str = "") -> Path:
    """A vws.conf with a network pool and a nodes file, the development CA in its state dir."""
    (tmp_path / "pools").mkdir()
    (tmp_path / "pools" / "public").write_text(POOL)
    (tmp_path / "nodes.conf").write_text(nodes)
    (tmp_path / "rules").write_text("@vwsuser max_workspaces=2\n")
    config = tmp_path / "vws.conf"
    config.write_text(
        f"[service]\nstate_dir = state\n[pool]\nnetwork_pools_dir = pools\nnodes_file = nodes.conf\n{pool_section}"
        f"[quotas]\nrules_file = rules\n[security]\n{security}"
    )
    assert admin.main(["--config", str(config), "ca", "init", "--hostname", "localhost"]) == 0
    return config


def test_a_sound_configuration_gets_a_summary_and_exit_0(tmp_path):
    config = configured(tmp_path, "", "[n1]\nuri = test:///default\nmemory = 4096\ncpus = 4\n")
    status, lines = vws_admin_check("--config", str(config))
    assert (status, lines[-1]) == (0, "vws-admin check: no problems")
    assert f"network pools in {tmp_path / 'pools'}: public (1 addresses)" in lines
    assert "nodes: 1 active (n1), 0 inactive" in lines
    assert f"quotas: 1 rules in {tmp_path / 'rules'}" in lines
    assert "security: signed messages; 1 mapped" in lines
    allowed = os.sched_getaffinity(0)
    assert ("service threads: on every CPU" if len(allowed) < 2 else f"service threads: on CPU {max(allowed)}") in lines
    host = tmp_path / "state" / "security" / "hostcert.pem"
    assert any(line.startswith(f"host credential {host}: valid until") for line in lines)


def test_a_cpu_the_service_may_not_use_is_a_problem_at_its_line(tmp_path):
    config = configured(tmp_path, "", "[n1]\nuri = test:///default\nmemory = 4096\ncpus = 4\n")
    config.write_text(config.read_text().replace("[service]\n", "[service]\ncpu = 4096\n"))
    status, lines = vws_admin_check("--config", str(config))
    allowed = sorted(os.sched_getaffinity(0))
    assert (status, lines[:-1]) == (
        1,
        [f"{config}:2: [service] cpu = 4096: this process may run only on CPUs {allowed}"],
    )


def test_each_problem_is_one_line_and_exit_1(tmp_path):
    nodes = (
        "[gone]\nuri = test:///nowhere/node.xml\nmemory = 1024\n"
        "[far]\nuri = test:///default\nmemory = 1024\nimages = upload\n"
        "[drained]\nuri = test:///nowhere/either.xml\nmemory = 1024\nactive = no\n"
    )
    # The test driver's own storage pool stands for one an admin made on the node.
    pool_section = "storage_pool = default-pool\nstorage_pool_path = /var/lib/libvirt/images/vws\n"
    config = configured(tmp_path, pool_section, nodes)
    state = tmp_path / "state"
    os.chmod(state / "security" / "grid-mapfile", 0o644)
    (state / "security" / "certificates" / "0badca11.0").write_text("not a certificate\n")
    status, lines = vws_admin_check("--config", str(config))
    assert status == 1
    assert lines[-1] == "vws-admin check: 4 problem(s)"
    unreachable = [line for line in lines if line.startswith("node gone (test:///nowhere/node.xml): open connection")]
    assert len(unreachable) == 1  # and the drained node is not asked
    assert sorted(set(lines[:-1]) - set(unreachable)) == sorted(
        [
            f"{state / 'security' / 'certificates' / '0badca11.0'}: not a PEM CA certificate",
            f"{state} holds users' userdata and private keys, but other users may read "
            f"{state / 'security' / 'grid-mapfile'} (0644): run chmod -R go= {state}",
            "node far (test:///default): storage pool default-pool is at /default-pool, "
            "not at [pool] storage_pool_path /var/lib/libvirt/images/vws",
        ]
    )


def test_the_host_credential_close_to_its_end_is_a_problem(tmp_path):
    config = configured(tmp_path, "", "[n1]\nuri = test:///default\nmemory = 1024\n")
    settings = load(config, environ={})
    host = tmp_path / "state" / "security" / "hostcert.pem"
    end = x509.load_pem_x509_certificate(host.read_bytes()).not_valid_after_utc

    def about_the_host(at: datetime) -> list[str]:
        return [line for line in checkup.check(settings, ManualClock(at)).problems if line.startswith(f"{host}:")]

    assert about_the_host(end - timedelta(days=30)) == []
    assert about_the_host(end - timedelta(days=2, hours=12)) == [
        f"{host}: the host certificate expires on {end:%Y-%m-%d %H:%M} UTC, in 2 days"
    ]
    assert about_the_host(end + timedelta(minutes=1)) == [
        f"{host}: the host certificate expired on {end:%Y-%m-%d %H:%M} UTC"
    ]


def test_insecure_beyond_loopback_is_a_problem(tmp_path):
    config = tmp_path / "vws.conf"
    config.write_text(f"[service]\nlisten = 0.0.0.0:8443\nstate_dir = {tmp_path / 'state'}\ninsecure = yes\n")
    status, lines = vws_admin_check("--config", str(config))
    assert status == 1
    assert lines[0] == (
        f"{config}:4: [service] insecure accepts anonymous, unsigned requests from anyone who reaches 0.0.0.0:8443: "
        "listen on 127.0.0.1 unless this network is yours alone"
    )
