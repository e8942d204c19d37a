"""vws-admin against a running service's state dir: what an operator does to the pool."""

import pytest

from tests.gt4wire import SoapFault, created_eprs
from vws.cli.admin import main as admin
from vws.xmlns import TYPES, qname


def test_draining_a_node_stops_placements_and_shrinking_below_use_is_refused(service, gt4, capsys):
    state = ["--state-dir", str(service.config.service.state_dir)]
    created_eprs(gt4.create())
    assert admin([*state, "nodes", "update", "node1", "--memory", "128"]) == 1
    assert "cannot shrink" in capsys.readouterr().err

    assert admin([*state, "nodes", "update", "node1", "--inactive"]) == 0
    assert "inactive" in capsys.readouterr().out
    with pytest.raises(SoapFault) as refused:
        gt4.create()
    assert refused.value.element == qname(TYPES, "WorkspaceSchedulingFault")

    assert admin([*state, "nodes", "update", "node1", "--active"]) == 0
    assert created_eprs(gt4.create())
    assert admin([*state, "nodes", "remove", "node1"]) == 1
    assert "live workspace" in capsys.readouterr().err


def test_nodes_list_shows_what_each_node_holds(service, gt4, capsys):
    created_eprs(gt4.create())
    capsys.readouterr()
    assert admin(["--state-dir", str(service.config.service.state_dir), "nodes", "list"]) == 0
    header, node1 = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["node", "uri", "memory_mb", "used_mb"]
    assert node1.split()[2:4] == ["16384", "256"]


def test_nodes_add_and_update_set_how_a_node_gets_its_images(service, capsys):
    state = ["--state-dir", str(service.config.service.state_dir)]
    remote = ["nodes", "add", "far", "--uri", "qemu+ssh://far/system", "--memory", "1024", "--cpus", "1"]
    assert admin([*state, *remote]) == 0
    assert (
        admin(
            [
                *state,
                "nodes",
                "add",
                "near",
                "--uri",
                "qemu:///system",
                "--memory",
                "1024",
                "--cpus",
                "1",
                "--images",
                "upload",
            ]
        )
        == 0
    )
    assert admin([*state, "nodes", "update", "far", "--images", "local"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["node"][-1] == "images"
    assert (rows["far"][-1], rows["near"][-1], rows["node1"][-1]) == ("local", "upload", "local")
    with pytest.raises(SystemExit):
        admin([*state, "nodes", "update", "far", "--images", "rsync"])
