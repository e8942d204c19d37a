"""The driver contract: one suite that every libvirt URI must pass.

Parametrised over URIs; the test driver runs everywhere. An integration run adds
real hypervisors (e.g. ``qemu:///system``) to DRIVER_URIS or through VWS_DRIVER_URIS.
"""

import os
import uuid

import pytest

from tests.test_pool_helpers import Events
from vws.clock import ManualClock
from vws.errors import BackendError
from vws.pool import driver as driver_module
from vws.pool import testnode
from vws.pool.designer import QEMU, TEST
from vws.pool.domain_xml import DomainSpec, OwnerSpec
from vws.pool.driver import MISSING, PAUSED, RUNNING, SHUTOFF, Capacity, DomainMissing, Driver

DRIVER_URIS = ["test"] + [uri for uri in os.environ.get("VWS_DRIVER_URIS", "").split(",") if uri]


@pytest.fixture(params=DRIVER_URIS)
def uri(request, tmp_path) -> str:
    if request.param == "test":
        return testnode.write_node(tmp_path / "node.xml", 4096, 4)
    return request.param


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def driver(uri, events):
    opened = Driver("node-a", uri, ManualClock(), events)
    yield opened
    for name in opened.owned():
        if name.startswith("vws-contract-"):
            opened.destroy(name)
            opened.undefine(name)
    opened.close()


def spec(driver: Driver, workspace_id: int = 7) -> DomainSpec:
    kind = TEST if TEST in driver.virt_types() else QEMU
    return DomainSpec(
        name=f"vws-contract-{uuid.uuid4().hex[:8]}",
        uuid=str(uuid.uuid4()),
        virt_type=kind,
        memory_mb=64,
        vcpus=1,
        owner=OwnerSpec(workspace_id, driver.node),
        acpi=kind != TEST,
    )


def test_define_start_suspend_resume_shutdown_undefine(driver):
    domain = spec(driver)
    driver.define(domain.to_xml())
    assert driver.state(domain.name) == SHUTOFF
    driver.start(domain.name)
    assert driver.state(domain.name) == RUNNING
    driver.suspend(domain.name)
    assert driver.state(domain.name) == PAUSED
    driver.resume(domain.name)
    assert driver.state(domain.name) == RUNNING
    driver.shutdown(domain.name, wait=30)
    assert driver.state(domain.name) == SHUTOFF
    driver.undefine(domain.name)
    assert driver.state(domain.name) == MISSING


def test_reboot_keeps_it_running_and_destroy_stops_it(driver):
    domain = spec(driver)
    driver.define(domain.to_xml())
    driver.start(domain.name)
    driver.reboot(domain.name)
    assert driver.state(domain.name) == RUNNING
    driver.destroy(domain.name)
    assert driver.state(domain.name) == SHUTOFF
    driver.destroy(domain.name)  # already off: nothing to do, no error
    driver.undefine(domain.name)


def test_owned_lists_only_domains_with_vws_metadata(driver):
    ours = spec(driver, workspace_id=42)
    driver.define(ours.to_xml())
    foreign = spec(driver)
    xml = foreign.to_xml().replace("<metadata>", "<metadata><x:other xmlns:x='urn:someone-else'/>")
    xml = xml.replace(f'<vws:workspace xmlns:vws="urn:vws:libvirt:domain:1" id="7" node="{driver.node}"/>', "")
    driver.define(xml)
    owned = driver.owned()
    assert owned[ours.name].workspace_id == 42
    assert owned[ours.name].state == SHUTOFF
    assert foreign.name not in owned
    driver.undefine(foreign.name)


def test_libvirt_errors_become_backend_errors_with_libvirt_message(driver):
    with pytest.raises(DomainMissing) as missing:
        driver.start("vws-contract-no-such-domain")
    assert "node-a" in missing.value.description and "omain not found" in missing.value.description
    domain = spec(driver)
    driver.define(domain.to_xml())
    with pytest.raises(BackendError) as invalid:
        driver.resume(domain.name)  # not running: libvirt refuses
    assert not isinstance(invalid.value, DomainMissing)
    assert "not running" in invalid.value.description or "not paused" in invalid.value.description
    with pytest.raises(BackendError):
        driver.define("<domain type='test'><name>broken")
    driver.undefine(domain.name)


def test_state_of_an_unknown_domain_is_missing(driver):
    assert driver.state("vws-contract-never-defined") == MISSING


def test_lifecycle_events_arrive_through_the_callback(driver, events):
    domain = spec(driver)
    driver.define(domain.to_xml())
    driver.start(domain.name)
    driver.suspend(domain.name)
    driver.resume(domain.name)
    driver.destroy(domain.name)
    driver.undefine(domain.name)
    expected = ["defined", "started", "suspended", "resumed", "stopped", "undefined"]

    def arrived(seen):
        """Each expected event, in order; hypervisors may add others (QEMU: resumed, shutdown)."""
        remaining = iter(event for _, name, event in seen if name == domain.name)
        return all(wanted in remaining for wanted in expected)

    assert events.wait_for(arrived), events.seen
    assert {node for node, _, _ in events.seen} == {"node-a"}


def test_capacity_and_domain_types(driver, uri):
    capacity = driver.capacity()
    assert capacity.memory_mb > 0 and capacity.cpus > 0
    if uri.startswith("test:"):
        assert capacity == Capacity(4096, 4)
        assert driver.virt_types() == frozenset({TEST})
    else:
        assert QEMU in driver.virt_types()


def test_a_closed_connection_fails_calls_instead_of_hanging(uri):
    opened = Driver("node-a", uri, ManualClock())
    opened.close()
    assert not opened.alive()
    with pytest.raises(BackendError):
        opened.start("vws-contract-anything")


# ---- shutdown's bounded wait: a guest that ignores the request is destroyed ---------------


class _DeafDomain:
    """A domain whose guest ignores shutdown requests (the test driver always obeys)."""

    def __init__(self) -> None:
        self.active = True
        self.calls: list[str] = []

    def isActive(self) -> bool:  # noqa: N802 (libvirt's name)
        return self.active

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def destroy(self) -> None:
        self.calls.append("destroy")
        self.active = False


def test_shutdown_destroys_a_guest_that_ignores_it_after_the_wait(tmp_path, monkeypatch):
    opened = Driver("node-a", testnode.write_node(tmp_path / "node.xml", 1024, 1), ManualClock())
    deaf = _DeafDomain()
    monkeypatch.setattr(opened, "_lookup", lambda name: deaf)
    opened.shutdown("deaf", wait=0.05)
    assert deaf.calls == ["shutdown", "destroy"]
    opened.close()


def test_event_loop_is_registered_once(tmp_path):
    Driver("node-b", testnode.write_node(tmp_path / "b.xml", 1024, 1), ManualClock()).close()
    first = driver_module._loop_thread
    Driver("node-c", testnode.write_node(tmp_path / "c.xml", 1024, 1), ManualClock()).close()
    assert driver_module._loop_thread is first and first.is_alive()
