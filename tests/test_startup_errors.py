"""A configuration or data file vws cannot use stops vws-service with one line naming the file
and the line, and exit status 2: never a traceback, never a start on half a configuration.
vws-admin check, which reads with the same loaders, reports the same line."""

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vws.cli import admin

SERVICE = Path(sys.executable).parent / "vws-service"


@dataclass(frozen=True)
class Broken:
    vws_conf: str
    where: str  # the file (relative to vws.conf's directory) and line the message must start with
    says: str
    files: dict[str, str] = field(default_factory=dict)  # other files next to vws.conf
    insecure: bool = True

    def write(self, directory: Path) -> Path:
        for name, text in {"vws.conf": self.vws_conf, **self.files}.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
        return directory / "vws.conf"


BROKEN = {
    "vws.conf syntax": Broken("[pool]\nplacement = greedy\nno equals sign\n", "vws.conf:3", "not an INI line"),
    "vws.conf section": Broken("[pool]\n[pools]\n", "vws.conf:2", "unknown section [pools]"),
    "vws.conf key": Broken("[pool]\n\nplacment = greedy\n", "vws.conf:3", "unknown key placment"),
    "vws.conf value": Broken("[notification]\nworkers = many\n", "vws.conf:2", "[notification] workers"),
    "vws.conf value the pool checks": Broken("[pool]\n\ndomain_prefix = 9\n", "vws.conf:3", "domain_prefix '9'"),
    "tls with --insecure": Broken(
        "[service]\nagent_listen = 127.0.0.1:0\n[security]\ntls = yes\n",
        "vws.conf:4",
        "cannot be combined with insecure",
    ),
    "network pool": Broken(
        "[pool]\nnetwork_pools_dir = pools\n",
        "pools/public:3",
        "'192.168.0.300' is not an IPv4 address",
        {"pools/public": "none\npub01 192.168.0.10 none\npub02 192.168.0.300 none\n"},
    ),
    "network pool address twice": Broken(
        "[pool]\nnetwork_pools_dir = pools\n",
        "pools/public:4",
        "192.168.0.10 is listed twice",
        {"pools/public": "none\npub01 192.168.0.10 none\n\npub02 192.168.0.10 none\n"},
    ),
    "network pools dir": Broken("[pool]\nnetwork_pools_dir = pools\n", "pools", "cannot read network pools"),
    "nodes file": Broken(
        "[pool]\nnodes_file = nodes.conf\n",
        "nodes.conf:3",
        "[n1] memory = 'lots' is not a number of MB",
        {"nodes.conf": "[n1]\nuri = test:///default\nmemory = lots\n"},
    ),
    "grid-mapfile": Broken(
        "[security]\ngridmap = grid-mapfile\n",
        "grid-mapfile:2",
        "unterminated quoted DN",
        {"grid-mapfile": '"/O=Grid/CN=Alice" alice\n"/O=Grid/CN=Bob bob\n'},
    ),
    "quota rules": Broken(
        "[quotas]\nrules_file = rules\n",
        "rules:2",
        "expected name=minutes",
        {"rules": "@physics max_workspaces=1\n@chemistry max_workspace=2\n"},
    ),
    "quota rules quote": Broken(
        "[quotas]\nrules_file = rules\n", "rules:1", "no closing quotation", {"rules": '"/O=x\n'}
    ),
    "quota rules file": Broken("[quotas]\nrules_file = rules\n", "rules", "cannot read quota rules"),
    "host credential": Broken(
        "[security]\ntrust_dir = .\nhost_cert = hostcert.pem\nhost_key = hostkey.pem\n",
        "hostcert.pem",
        "cannot load the host credential",
        {"hostcert.pem": "not PEM\n", "hostkey.pem": "not PEM\n"},
        insecure=False,
    ),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each broken case's directory and what vws-service did with it, all started at once."""
    started = {}
    for case, broken in BROKEN.items():
        directory = tmp_path_factory.mktemp("broken")
        argv = [SERVICE, "--config", broken.write(directory), "--state-dir", directory / "state"]
        argv += ["--listen", "127.0.0.1:0"] + ["--insecure"] * broken.insecure
        started[case] = directory, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ended = {}
    for case, (directory, process) in started.items():
        stdout, stderr = process.communicate(timeout=60)
        ended[case] = directory, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return ended


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_vws_service_names_the_file_and_line_and_exits_2(refusals, case):
    directory, run = refusals[case]
    assert (run.returncode, run.stdout) == (2, "")
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"vws-service: {directory / BROKEN[case].where}: ") and BROKEN[case].says in line


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_vws_admin_check_reports_what_stops_vws_service(refusals, case):
    directory, run = refusals[case]
    argv = ["--config", str(directory / "vws.conf"), "--state-dir", str(directory / "state"), "check"]
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        status = admin.main(argv + ["--insecure"] * BROKEN[case].insecure)
    reported = [line.removeprefix("vws-admin: ") for line in out.getvalue().splitlines()]
    assert status != 0 and run.stderr.strip().removeprefix("vws-service: ") in reported
