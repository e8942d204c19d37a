"""libvirt is the truth about what runs: the service notices when a domain dies behind its back."""

import threading

import pytest

from tests.conftest import make_config
from tests.gt4wire import created_eprs
from vws.pool.domain_xml import VWS_NS
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.workspace.states import State


def test_a_domain_destroyed_behind_the_services_back_makes_the_workspace_corrupted(service, gt4):
    (epr,) = created_eprs(gt4.create())
    (workspace,) = service.manager.workspaces(SERVICE)
    corrupted = threading.Event()
    service.manager.add_listener(lambda changed: changed.state is State.CORRUPTED and corrupted.set())
    # What an operator's `virsh destroy` does; the test driver's domains live in the pool's connection.
    service.pool._driver(workspace.node).destroy(workspace.domain)
    assert corrupted.wait(10)
    assert gt4.state(epr) == "Corrupted"
    reason = gt4.get_property(epr, "{http://www.globus.org/2008/06/workspace/types}currentState")
    assert workspace.domain in "".join(reason.itertext())
    gt4.destroy(epr)  # the only way out of Corrupted, and it frees everything
    assert service.manager.workspaces(SERVICE) == []


def test_a_periodic_sweep_agrees_with_libvirt_and_changes_nothing(service, gt4):
    created_eprs(gt4.create())
    assert service.manager.reconcile() == []
    assert [w.state for w in service.manager.workspaces(SERVICE)] == [State.RUNNING]


STRAY = f"""<domain type='test'>
  <name>wrksp-999</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>
  <metadata><vws:workspace xmlns:vws='{VWS_NS}' id='999' node='node1'/></metadata>
</domain>"""


@pytest.mark.parametrize("remove", [False, True], ids=["reported", "removed"])
def test_a_domain_no_workspace_claims_is_reported_and_removed_only_when_configured(tmp_path, clock, remove):
    config = make_config(tmp_path / "state").with_overrides("pool", remove_unclaimed_domains=remove)
    service = Service(config, clock=clock)
    service.start()
    try:
        driver = service.pool._driver("node1")
        driver.define(STRAY)  # what a crash between libvirt and the database can leave behind
        (finding,) = service.manager.reconcile()
        assert "wrksp-999 on node1 belongs to no live workspace" in finding
        assert finding.endswith("; removed" if remove else "; left alone")
        assert ("wrksp-999" in driver.owned()) is not remove
    finally:
        service.stop()
