"""vws-client over zeep against the WSDL the service serves: what a grid user types."""

from pathlib import Path

import pytest

from clients.monitor import WORKSPACE_KEY
from clients.workspace import EXIT_TIMEOUT, SAMPLES, read_epr
from clients.workspace import main as client
from vws.soap.porttypes.producer import producer_key

SAMPLE_METADATA = (SAMPLES / "workspace.xml").read_text()


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


def state_of(run, epr: Path) -> str:
    code, out = run("status", "--eprFile", epr)
    assert code == 0, out
    return out.splitlines()[0].removeprefix("state: ")


def subscriptions_of(service, epr: Path) -> list:
    key = read_epr(epr).key(WORKSPACE_KEY)
    return service.subscriptions.active(producer_key(int(key)), None)


def test_group_operations_act_on_every_member_and_exit_0(run, tmp_path):
    group = tmp_path / "group.epr"
    code, out = run("deploy", "-n", 2, "--groupfile", group, "--file", tmp_path / "ws", "--poll", "--poll-delay", 10)
    assert code == 0, out
    members = sorted(tmp_path.glob("ws-*.epr"))
    assert [path.name for path in members] == ["ws-001.epr", "ws-002.epr"]
    for action, state in (("pause", "Paused"), ("start", "Running"), ("reboot", "Running"), ("shutdown", "Propagated")):
        code, out = run(action, "--eprFile", group)
        assert code == 0, out
        assert [state_of(run, member) for member in members] == [state, state]
    code, out = run("destroy", "--eprFile", group)
    assert code == 0, out
    assert run("status", "--eprFile", members[0])[0] == 1


def test_a_request_joining_an_ensemble_as_the_last_starts_every_member(run, tmp_path):
    ensemble, first, second = tmp_path / "ensemble.epr", tmp_path / "first.epr", tmp_path / "second.epr"
    code, out = run("deploy", "--new-ensemble", "--ensfile", ensemble, "--file", first)
    assert code == 0, out
    assert state_of(run, first) == "Unpropagated"
    code, out = run("deploy", "--join-ensemble", ensemble, "--last-in-ensemble", "--file", second, "--poll")
    assert code == 0, out
    assert [state_of(run, first), state_of(run, second)] == ["Running", "Running"]


def test_the_epr_file_names_the_service_so_s_is_not_needed(run, tmp_path, capsys):
    epr = deploy(run, tmp_path)
    assert client(["--anonymous", "pause", "--eprFile", str(epr)]) == 0
    assert capsys.readouterr().out.strip() == "state: Paused"


@pytest.mark.parametrize(
    "content, message",
    [
        (SAMPLE_METADATA.replace("<name>", "<title>").replace("</name>", "</title>"), "not a valid VirtualWorkspace"),
        ("<VirtualWorkspace", "not a valid VirtualWorkspace"),
        (None, "cannot read"),
    ],
    ids=["schema-invalid", "not-xml", "missing"],
)
def test_a_bad_metadata_file_is_one_line_naming_it_and_exit_2(run, tmp_path, content, message):
    bad = tmp_path / "bad.xml"
    if content is not None:
        bad.write_text(content)
    code, out = run("deploy", "--metadata", bad, "--file", tmp_path / "ws.epr")
    assert code == 2
    (line,) = out.strip().splitlines()
    assert f"{message}" in line and "bad.xml" in line


def test_a_timeout_has_its_own_exit_status_and_leaves_no_subscription_behind(run, tmp_path, service):
    epr = deploy(run, tmp_path)
    code, out = run("subscribe", "--eprFile", epr, "--exit-state", "paused", "--timeout", 0.2)
    assert code == EXIT_TIMEOUT
    assert out.strip().endswith("no workspace reached Paused within 0.2 s")
    assert subscriptions_of(service, epr) == []


def test_waiting_on_notifications_leaves_no_subscription_behind(run, tmp_path, service):
    epr = tmp_path / "ws.epr"
    code, out = run("deploy", "--file", epr)
    assert code == 0 and "Running" in out, out
    assert subscriptions_of(service, epr) == []
