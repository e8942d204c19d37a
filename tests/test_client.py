"""vws-client over zeep against the WSDL the service serves: what a grid user types."""

from pathlib import Path

import pytest

from clients.workspace import main as client


@pytest.fixture
def run(service, capsys):
    factory = service.base_url + "WorkspaceFactoryService"

    def run(*argv: object) -> tuple[int, str]:
        code = client(["-s", factory, "--anonymous", *map(str, argv)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def deploy(run, tmp_path: Path, *options: object) -> Path:
    epr = tmp_path / "ws.epr"
    code, out = run("deploy", "--eprFile", epr, "--poll", "--poll-delay", 10, *options)
    assert code == 0, out
    return epr


def test_factoryrp_shows_the_factory_policy_and_networks(run):
    code, out = run("factoryrp")
    assert code == 0
    assert "MaximumRunningTime: P14DT0H0M0S" in out and "Associations: public" in out


def test_deploy_writes_an_epr_and_reports_the_address(run, tmp_path):
    epr = deploy(run, tmp_path, "--deploy-mem", 512, "--deploy-duration", 45)
    assert b"WorkspaceKey" in epr.read_bytes()
    code, out = run("rpquery", "--eprFile", epr)
    assert code == 0
    assert ">512<" in out and "P0DT0H45M0S" in out and "192.168.128." in out


def test_every_lifecycle_action_through_zeep(run, tmp_path):
    epr = deploy(run, tmp_path)
    for action, state in (
        ("pause", "Paused"),
        ("start", "Running"),
        ("reboot", "Running"),
        ("shutdown", "Propagated"),
        ("start", "Running"),
    ):
        code, out = run(action, "--eprFile", epr)
        assert (code, f"state: {state}") == (0, out.strip().splitlines()[-1]), out
    code, out = run("shutdown-save", "--eprFile", epr)  # waits while the disk is saved in the background
    assert code == 0 and out.strip().splitlines()[-1].endswith(": TransportReady"), out
    code, out = run("set-termination-time", "--eprFile", epr, "--minutes", 90)
    assert code == 0 and "termination time:" in out
    code, out = run("destroy", "--eprFile", epr)
    assert code == 0, out
    code, out = run("status", "--eprFile", epr)
    assert code == 1 and "no workspace" in out


def test_a_refused_operation_is_one_line_and_exit_1(run, tmp_path):
    epr = deploy(run, tmp_path)
    code, out = run("start", "--eprFile", epr)
    assert code == 1
    assert out.strip().splitlines() == [out.strip()] and "Running" in out


def test_deploy_paused_waits_for_paused(run, tmp_path):
    epr = deploy(run, tmp_path, "--deploy-state", "Paused")
    code, out = run("status", "--eprFile", epr)
    assert code == 0 and "state: Paused" in out
