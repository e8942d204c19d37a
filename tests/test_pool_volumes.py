"""Upload nodes without libvirtd: the test driver keeps storage pools and volumes but has no
virStorageVolUpload, so uploads are stood in for by empty volumes (``uploads``); the
stream itself is driven through libvirt-python's own ``sparseSendAll`` loop. The real
upload is tests/integration/test_upload_node.py."""

import dataclasses
import os
import threading
from datetime import timedelta
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.test_pool_helpers import SMALL, cancel, destroy, open_pool, raised_within, reserve, stand_in_uploads
from vws.config import PoolConfig
from vws.errors import BackendError, Cancelled, InvalidMetadata, RequestDenied
from vws.pool import nodes, testnode
from vws.pool.machine import BlankDiskRequest, DiskRequest, KernelRequest, MachineRequest, NicRequest
from vws.pool.progress import STEP
from vws.pool.storage import volumes
from vws.pool.storage.cache import base_lock
from vws.pool.storage.repository import checksum

NODE = "far"
STORAGE = PoolConfig().storage_pool
FULL = MachineRequest(
    memory_mb=256,
    root=DiskRequest("file://ttylinux-xen", "sda1"),
    partitions=(DiskRequest("file://data.img", "sdb1", writable=False),),
    blank_disks=(BlankDiskRequest("scratch", "sdc1", 64),),
    kernel=KernelRequest("file://vmlinuz", "file://initrd.gz", "console=ttyS0"),
    nics=(NicRequest("eth0", "public"),),
)


@pytest.fixture
def uploads(monkeypatch) -> list[str]:
    return stand_in_uploads(monkeypatch)


def upload_pool(tmp_path: Path, **config: object):
    """A pool whose one node is a test node with ``images = upload``."""
    uri = testnode.write_node(tmp_path / "far.xml", 4096, 4)
    nodes_file = tmp_path / "nodes.conf"
    nodes_file.write_text(f"[{NODE}]\nuri = {uri}\nmemory = 4096\ncpus = 4\nimages = upload\n")
    pool_config = PoolConfig(
        nodes_file=nodes_file, storage_pool_path=str(tmp_path / "on-node"), test_node_context_iso=True, **config
    )
    store, pool = open_pool(tmp_path / "state", pool_config)
    for name, content in (("data.img", b"d" * 4096), ("vmlinuz", b"k"), ("initrd.gz", b"i")):
        (pool.repository.root / name).write_bytes(content)
    return store, pool


def volume_names(pool) -> set[str]:
    storage = pool._driver(NODE).connection.storagePoolLookupByName(STORAGE)
    return {volume.name() for volume in storage.listAllVolumes(0)}


def digest(pool, store, name: str) -> str:
    return checksum(store, pool.repository.root / name)


def later(pool) -> None:
    pool._clock.advance(timedelta(seconds=1))


def test_define_puts_every_disk_and_file_in_volumes_and_remove_keeps_only_the_bases(tmp_path, uploads):
    store, pool = upload_pool(tmp_path)
    placed = reserve(store, pool, FULL)[0]
    pool.define(placed, FULL)

    bases = {digest(pool, store, name) for name in ("ttylinux-xen", "data.img", "vmlinuz", "initrd.gz")}
    own = {f"{placed.domain}.{name}" for name in ("root.qcow2", "blank-scratch.raw", "context.iso", "console.log")}
    assert set(uploads) == bases | {f"{placed.domain}.context.iso"} and volume_names(pool) == bases | own
    domain = etree.fromstring(pool._driver(NODE).xml(placed.domain).encode())
    on_node = tmp_path / "on-node"
    assert [Path(path) for path in domain.xpath("devices/disk/source/@file")] == [
        on_node / f"{placed.domain}.root.qcow2",
        on_node / digest(pool, store, "data.img"),
        on_node / f"{placed.domain}.blank-scratch.raw",
        on_node / f"{placed.domain}.context.iso",
    ]
    assert Path(domain.findtext("os/kernel")) == on_node / digest(pool, store, "vmlinuz")
    assert Path(domain.xpath("devices/serial/source/@path")[0]) == on_node / f"{placed.domain}.console.log"
    assert not (tmp_path / "state" / "nodes" / NODE / "cache").exists()  # nothing cached locally

    second = reserve(store, pool, FULL)[0]
    pool.define(second, FULL)
    assert uploads[len(bases) + 1 :] == [f"{second.domain}.context.iso"]  # the bases are not uploaded again

    destroy(store, pool, placed)
    assert volume_names(pool) == bases | {name.replace(placed.domain, second.domain) for name in own}
    destroy(store, pool, second)
    assert volume_names(pool) == bases


def test_a_failed_define_leaves_no_volume_of_its_own(tmp_path, uploads):
    store, pool = upload_pool(tmp_path)
    machine = MachineRequest(memory_mb=256, root=SMALL.root, blank_disks=(BlankDiskRequest("..", "sdb1", 1),))
    with pytest.raises(InvalidMetadata, match="not usable as a file name"):
        reserve(store, pool, machine)  # refused before it is accepted...
    placed = reserve(store, pool, dataclasses.replace(machine, blank_disks=()))[0]
    with pytest.raises(InvalidMetadata, match="not usable as a file name"):  # ...and by define, after the base
        pool.define(placed, machine)
    assert volume_names(pool) == {digest(pool, store, "ttylinux-xen")}
    assert pool.domain_states() == {}


def test_read_write_partitions_are_refused_on_upload_nodes(tmp_path, uploads):
    store, pool = upload_pool(tmp_path)
    machine = MachineRequest(memory_mb=256, partitions=(DiskRequest("file://data.img", "sdb1"),))
    placed = reserve(store, pool, machine)[0]
    with pytest.raises(RequestDenied, match="read-write partition data.img .* cannot reach"):
        pool.define(placed, machine)
    assert not {name for name in volume_names(pool) if name.startswith(placed.domain)}


def test_without_volume_upload_the_define_fails_and_leaves_nothing(tmp_path):
    store, pool = upload_pool(tmp_path)
    placed = reserve(store, pool, SMALL)[0]
    with pytest.raises(BackendError, match="virStorageVolUpload"):
        pool.define(placed, SMALL)
    assert volume_names(pool) == set()
    assert pool.domain_states() == {}


def test_a_base_volume_without_its_record_is_uploaded_again(tmp_path, uploads):
    """What a crash during an upload leaves: the volume under its final name, no node_volumes row."""
    store, pool = upload_pool(tmp_path)
    base = digest(pool, store, "ttylinux-xen")
    node_volumes = pool._volumes(pool._driver(NODE))
    node_volumes.create(base, 1, "raw")
    placed = reserve(store, pool, SMALL)[0]
    pool.define(placed, SMALL)
    assert uploads == [base]


def test_room_is_made_before_an_upload_least_recently_used_bases_no_domain_reads_first(tmp_path, uploads):
    store, pool = upload_pool(tmp_path, image_cache_mb=100)
    machines = {}
    for name in ("old.img", "new.img", "next.img"):
        with open(pool.repository.root / name, "wb") as image:
            image.write(name.encode())  # three images, three digests
            image.truncate(60 << 20)
        machines[name] = MachineRequest(memory_mb=64, root=DiskRequest(f"file://{name}", "sda1"))
    old, new = digest(pool, store, "old.img"), digest(pool, store, "new.img")
    first = reserve(store, pool, machines["old.img"])[0]
    pool.define(first, machines["old.img"])
    later(pool)
    second = reserve(store, pool, machines["new.img"])[0]
    pool.define(second, machines["new.img"])
    # 120 MB cached: the stand-in upload allocates the holes a real sparse one keeps as holes.
    assert {old, new} <= volume_names(pool)
    destroy(store, pool, first)
    later(pool)
    third = reserve(store, pool, machines["next.img"])[0]
    pool.define(third, machines["next.img"])
    assert old not in volume_names(pool) and new in volume_names(pool)  # old went; new is in use
    assert digest(pool, store, "next.img") in volume_names(pool)


def test_waiting_for_another_upload_of_the_same_base_can_be_cancelled(tmp_path, uploads):
    store, pool = upload_pool(tmp_path)
    source = pool.repository.root / "data.img"
    uploading, gate = threading.Event(), threading.Event()

    def held(done: int, total: int) -> None:
        uploading.set()
        gate.wait()

    def cached(progress) -> Path:
        return pool._volumes(pool._driver(NODE)).cached(source, digest(pool, store, "data.img"), progress)

    first = threading.Thread(target=cached, args=(held,))
    first.start()
    try:
        assert uploading.wait(10)  # the first upload holds the base's lock
        assert isinstance(raised_within(lambda: cached(cancel)), Cancelled)
    finally:
        gate.set()
        first.join()
    assert uploads == [digest(pool, store, "data.img")]


def test_uploading_handing_out_and_evicting_a_base_volume_wait_on_one_lock(tmp_path, uploads):
    store, pool = upload_pool(tmp_path, image_cache_mb=1)
    node = pool._volumes(pool._driver(NODE))
    sources = {}
    for name in ("a.img", "b.img"):
        sources[name] = pool.repository.root / name
        sources[name].write_bytes(name.encode() * (120 << 10))  # 600 KB: two do not fit in 1 MB
    a = node.cached(sources["a.img"], digest(pool, store, "a.img"))
    later(pool)
    with base_lock(node, a.name):  # a define is handing a out...
        with pytest.raises(Cancelled):
            node.cached(sources["a.img"], digest(pool, store, "a.img"), cancel)  # ...so another waits to take it
        with pytest.raises(Cancelled):
            node.cached(sources["b.img"], digest(pool, store, "b.img"), cancel)  # ...and to evict it for b
    assert volume_names(pool) == {a.name}
    node.cached(sources["b.img"], digest(pool, store, "b.img"))
    assert volume_names(pool) == {digest(pool, store, "b.img")}


def test_image_mode_may_not_change_under_live_workspaces(tmp_path, uploads):
    store, pool = upload_pool(tmp_path)
    placed = reserve(store, pool, SMALL)[0]
    with store.transaction() as db, pytest.raises(nodes.NodeBusy, match="cannot switch to local"):
        nodes.update_node(db, NODE, images=nodes.LOCAL)
    destroy(store, pool, placed)
    with store.transaction() as db:
        assert nodes.update_node(db, NODE, images=nodes.LOCAL).image_mode == nodes.LOCAL


# ---- the sparse stream ------------------------------------------------------------------


class RecordingStream:
    """What the node receives: data and holes in order, as ``virStream.sparseSendAll`` sends them."""

    sparseSendAll = libvirt.virStream.sparseSendAll

    def __init__(self) -> None:
        self.received = bytearray()
        self.holes: list[int] = []
        self.aborted = False
        self.finished = False

    def send(self, data: bytes) -> int:
        self.received += data
        return len(data)

    def sendHole(self, length: int, flags: int = 0) -> int:
        self.holes.append(length)
        self.received += bytes(length)
        return 0

    def abort(self) -> None:
        self.aborted = True

    def finish(self) -> None:
        self.finished = True


def sparse_file(path: Path) -> Path:
    """Data, a hole of 3 STEPs, data, then a trailing hole."""
    with open(path, "wb") as file:
        file.write(b"head")
        file.seek(3 * STEP)
        file.write(b"tail")
        file.truncate(4 * STEP)
    return path


def test_upload_stream_sends_holes_as_holes_and_reports_each_step(tmp_path):
    source = sparse_file(tmp_path / "sparse.img")
    reports: list[tuple[int, int]] = []
    stream = RecordingStream()
    with open(source, "rb") as file:
        volumes._send(stream, volumes._SparseFile(file.fileno(), 4 * STEP, lambda *report: reports.append(report)))
    assert stream.finished and not stream.aborted
    assert bytes(stream.received) == source.read_bytes()
    assert sum(stream.holes) > 3.9 * STEP  # only the blocks holding data were sent as data
    assert [done for done, _ in reports] == sorted({done for done, _ in reports}) and reports[-1][1] == 4 * STEP


def test_raising_from_progress_aborts_the_stream(tmp_path):
    source = tmp_path / "dense.img"
    source.write_bytes(os.urandom(1024) * (2 * STEP // 1024))
    stream = RecordingStream()

    def cancel(done: int, total: int) -> None:
        raise Cancelled("workspace 1 is being destroyed")

    with open(source, "rb") as file, pytest.raises(Cancelled):
        volumes._send(stream, volumes._SparseFile(file.fileno(), 2 * STEP, cancel))
    assert stream.aborted and not stream.finished
    assert len(stream.received) < 2 * STEP
