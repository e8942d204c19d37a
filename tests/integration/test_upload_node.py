"""Upload nodes on a real libvirtd: the node is ``qemu:///system`` registered with ``images =
upload``, so everything the guest needs goes over its libvirt connection as it would to a
remote ``qemu+ssh://`` node: base, kernel and initrd uploaded once into the node's storage
pool as volumes named by their sha256, the overlay and the context drive as volumes of the
domain. The guest must boot and read its context from them; a second deploy of the same
image must find the base already there; destroy must delete the domain's volumes and keep
the bases; shutdown-save must bring the flattened root (the guest's write included) back
into the repository.
"""

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.deployments import wait_until
from tests.gt4wire import Gt4Client, created_eprs
from tests.integration import guest
from tests.integration.console import wait_for_line
from tests.integration.deploy import (
    BOOT_TIMEOUT,
    NODE,
    assert_contextualized,
    at_marker,
    backing,
    console_path,
    create,
    disk_sources,
    domain_name,
    sha256,
    wait_until_gone,
)
from vws.clock import ManualClock
from vws.config import PoolConfig
from vws.errors import Cancelled
from vws.pool.driver import Driver
from vws.pool.progress import STEP
from vws.pool.storage.eviction import CacheFull
from vws.pool.storage.volumes import NodeVolumes
from vws.service import Service
from vws.store.database import Store
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import LOGISTICS

UPLOADED = "uploaded "  # how vws.pool.storage.volumes logs each upload of a base


@pytest.fixture
def node_options() -> str:
    return "images = upload\n"


@pytest.fixture
def pool_options(own_storage_pool: dict[str, object]) -> dict[str, object]:
    return own_storage_pool


def test_upload_node_boots_the_guest_from_volumes_and_uploads_each_base_once(
    service: Service,
    gt4: Gt4Client,
    connection: libvirt.virConnect,
    repository: Path,
    pool_options: dict[str, object],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record_property,
) -> None:
    caplog.set_level(logging.INFO, logger="vws.pool.storage.volumes")
    bases = {sha256(repository / name) for name in ("base.qcow2", "vmlinuz", "initrd.img")}
    base = sha256(repository / "base.qcow2")

    started = time.monotonic()
    response = create(gt4)
    record_property("first_deploy_seconds", round(time.monotonic() - started, 2))
    (epr,) = created_eprs(response)
    assert gt4.state(epr) == "Running"
    assert sum(UPLOADED in message for message in caplog.messages) == len(bases)
    storage = connection.storagePoolLookupByName(str(pool_options["storage_pool"]))
    on_node = Path(etree.fromstring(storage.XMLDesc(0)).findtext("target/path"))
    name = domain_name(epr)
    own = {f"{name}.{file}" for file in ("root.qcow2", "context.iso", "console.log")}
    assert _volumes(storage) == bases | own

    domain = connection.lookupByName(name)
    assert disk_sources(domain) == [on_node / f"{name}.root.qcow2", on_node / f"{name}.context.iso"]
    assert backing(on_node / f"{name}.root.qcow2") == on_node / base
    console = console_path(domain)
    assert console == on_node / f"{name}.console.log"
    hostname = response.findtext(f".//{{{LOGISTICS}}}hostname")
    wait_for_line(console, f"^{guest.BOOTED}$", BOOT_TIMEOUT)
    wait_for_line(console, f"^{guest.WROTE}$", 30)
    assert_contextualized(console, hostname, response.findtext(f".//{{{LOGISTICS}}}ipAddress"))

    _destroy(gt4, connection, epr)
    assert _volumes(storage) == bases  # the domain's volumes went, the cache stays

    uploaded_at = _changed(storage.storageVolLookupByName(base))
    started = time.monotonic()
    (again,) = created_eprs(create(gt4))
    record_property("second_deploy_seconds", round(time.monotonic() - started, 2))
    assert gt4.state(again) == "Running"
    assert sum(UPLOADED in message for message in caplog.messages) == len(bases)  # none since the first
    assert _changed(storage.storageVolLookupByName(base)) == uploaded_at
    wait_for_line(console_path(connection.lookupByName(domain_name(again))), f"^{guest.WROTE}$", BOOT_TIMEOUT)

    # Shutdown-save: the overlay flattened on the node comes back as a standalone image.
    started = time.monotonic()
    gt4.shutdown(again, "ReadyForTransport")  # saved in the background
    wait_until(gt4, [again], "TransportReady")
    record_property("save_seconds", round(time.monotonic() - started, 2))
    saved = repository / f"{domain_name(again)}.qcow2"
    assert backing(saved) is None
    assert at_marker(saved, tmp_path, "vws-real-1") == guest.marker("vws-real-1")
    _destroy(gt4, connection, again)
    assert _volumes(storage) == bases


def test_an_upload_abandoned_from_its_progress_callback_leaves_no_volume(
    libvirt_uri: str, connection: libvirt.virConnect, pool_options: dict[str, object], tmp_path: Path
) -> None:
    image = tmp_path / "big.img"
    with open(image, "wb") as file:  # data, a hole of 3 progress steps, data
        file.write(b"head")
        file.seek(3 * STEP)
        file.write(b"tail")
    store, clock = Store(tmp_path / "vws.sqlite"), ManualClock()
    driver = Driver(NODE, libvirt_uri, clock)
    reports: list[int] = []

    def destroyed_meanwhile(done: int, total: int) -> None:
        reports.append(done)
        raise Cancelled("workspace 1 is being destroyed")

    try:
        node = NodeVolumes(driver, store, clock, PoolConfig(**pool_options))  # type: ignore[arg-type]
        with pytest.raises(Cancelled):
            node.cached(image, sha256(image), destroyed_meanwhile)
    finally:
        driver.close()
    assert reports == [3 * STEP]  # stopped at the first report, before the end
    assert _volumes(connection.storagePoolLookupByName(str(pool_options["storage_pool"]))) == set()


def _volumes(storage: libvirt.virStoragePool) -> set[str]:
    return {volume.name() for volume in storage.listAllVolumes(0)}


def _changed(volume: libvirt.virStorageVol) -> str | None:
    """The volume file's ctime, as libvirt reports it: a new upload would change it."""
    return etree.fromstring(volume.XMLDesc(0)).findtext("target/timestamps/ctime")


def _destroy(gt4: Gt4Client, connection: libvirt.virConnect, epr: EndpointReference) -> None:
    gt4.destroy(epr)
    wait_until_gone(connection, domain_name(epr))


def test_the_volume_cache_makes_room_before_an_upload_or_refuses_it(
    libvirt_uri: str, connection: libvirt.virConnect, pool_options: dict[str, object], tmp_path: Path
) -> None:
    sources = {}
    for name in ("a", "b", "c"):
        sources[name] = tmp_path / name
        sources[name].write_bytes(os.urandom(1 << 20))  # 1 MiB allocated each, under a 2 MB limit
    store, clock, kept = Store(tmp_path / "vws.sqlite"), ManualClock(), set()
    driver = Driver(NODE, libvirt_uri, clock)
    try:
        config = PoolConfig(image_cache_mb=2, **pool_options)  # type: ignore[arg-type]
        node = NodeVolumes(driver, store, clock, config, keep=lambda: kept)
        uploaded = {}
        for name in ("a", "b"):
            uploaded[name] = node.cached(sources[name], sha256(sources[name]))
            clock.advance(timedelta(seconds=1))  # a used before b
        kept.add(uploaded["b"])
        uploaded["c"] = node.cached(sources["c"], sha256(sources["c"]))  # a goes first
        kept.add(uploaded["c"])
        with pytest.raises(CacheFull, match="does not fit"):
            node.cached(sources["a"], sha256(sources["a"]))  # b and c are kept: refused, nothing uploaded
    finally:
        driver.close()
    storage = connection.storagePoolLookupByName(str(pool_options["storage_pool"]))
    assert _volumes(storage) == {uploaded["b"].name, uploaded["c"].name}
