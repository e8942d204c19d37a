"""One contract, every ``DomainFiles``: what ``prepare`` and the pool rely on (``DomainFilesContract``),
run against the local files of a state-dir node and the storage volumes of an upload node on the
libvirt test driver (its uploads stood in for: ``stand_in_uploads``) here, and on a real libvirtd
in tests/integration/test_domain_files.py. Each implementation comes with the probes that read
back what it made as the node sees it: a file, or a volume."""

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.test_pool_helpers import stand_in_uploads
from vws.clock import ManualClock
from vws.config import PoolConfig
from vws.errors import Cancelled, InvalidMetadata, RequestDenied
from vws.pool import qcow2, testnode
from vws.pool.driver import Driver
from vws.pool.progress import ignore
from vws.pool.storage.files import DomainFiles
from vws.pool.storage.local import LocalFiles, NodeCache
from vws.pool.storage.volumes import NodeVolumes, UploadedFiles
from vws.store.database import Store

MIB = 1 << 20


@dataclass
class Node:
    """A node's ``DomainFiles`` for any domain, and how to see what they made."""

    files_of: Callable[[str], DomainFiles]
    directory: Callable[[str], Path]  # the domain's local directory, where its context drive is built
    exists: Callable[[Path], bool]
    size: Callable[[Path], int]  # the size the guest sees
    backing: Callable[[Path], Path | None]
    writes_in_place: bool  # a read-write partition is the repository file itself (else refused)


def local_node(tmp_path: Path, store: Store) -> Node:
    cache = NodeCache(tmp_path / "node" / "cache", name="node local")

    def directory(domain: str) -> Path:
        return tmp_path / "node" / "domains" / domain

    def files_of(domain: str) -> DomainFiles:
        directory(domain).mkdir(parents=True, exist_ok=True)  # as the pool makes it, before any file
        return LocalFiles(store, cache, directory(domain), (tmp_path / "repository").resolve())

    def size(path: Path) -> int:
        return qcow2.virtual_size(path) if qcow2.detect_format(path) == "qcow2" else path.stat().st_size

    def backing(path: Path) -> Path | None:
        info = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True)
        name = json.loads(info.stdout).get("backing-filename")
        return Path(name) if name else None

    return Node(files_of, directory, Path.exists, size, backing, writes_in_place=True)


def upload_node(uri: str, store: Store, config: PoolConfig, scratch: Path) -> Iterator[Node]:
    """An upload node at ``uri``: its volumes in ``config``'s storage pool, domains' local files in ``scratch``."""
    clock = ManualClock()
    driver = Driver("far", uri, clock)
    volumes = NodeVolumes(driver, store, clock, config)

    def volume(path: Path) -> libvirt.virStorageVol | None:
        try:
            return driver.connection.storageVolLookupByPath(str(path))
        except libvirt.libvirtError:
            return None

    def size(path: Path) -> int:
        return volume(path).info()[1]

    def backing(path: Path) -> Path | None:
        described = etree.fromstring(volume(path).XMLDesc(0).encode())
        found = described.findtext("backingStore/path")
        return Path(found) if found else None

    def directory(domain: str) -> Path:
        return scratch / domain

    def files_of(domain: str) -> DomainFiles:
        directory(domain).mkdir(parents=True, exist_ok=True)  # as the pool makes it, before any file
        return UploadedFiles(volumes, store, domain, directory(domain), (scratch.parent / "repository").resolve())

    yield Node(files_of, directory, lambda path: volume(path) is not None, size, backing, writes_in_place=False)
    driver.close()


def context_drive(node: Node, domain: str) -> Path:
    """What the pool builds in the domain's directory before attaching it."""
    path = node.directory(domain) / "context.iso"
    path.write_bytes(b"context")
    return path


class DomainFilesContract:
    """What every ``DomainFiles`` does; a subclass per implementation gives the ``node`` fixture."""

    @pytest.fixture
    def image(self, tmp_path) -> Path:
        path = tmp_path / "repository" / "base.raw"
        path.parent.mkdir()
        path.write_bytes(b"base" * 1024)
        return path

    def test_a_base_is_named_by_its_content_and_made_once_for_every_domain(self, node, image):
        first = node.files_of("one").base(image, ignore)
        assert first.name == hashlib.sha256(image.read_bytes()).hexdigest()
        assert node.exists(first) and node.size(first) == image.stat().st_size
        assert node.files_of("two").base(image, ignore) == first

    def test_a_cancelled_copy_of_a_base_is_not_handed_out_the_next_define_copies_it_again(self, node, image):
        def cancel(done: int, total: int) -> None:
            raise Cancelled("destroyed meanwhile")

        with pytest.raises(Cancelled):
            node.files_of("one").base(image, cancel)
        reports: list[tuple[int, int]] = []
        base = node.files_of("two").base(image, lambda done, total: reports.append((done, total)))
        assert reports[-1] == (image.stat().st_size, image.stat().st_size)  # copied, not found
        assert node.exists(base) and node.size(base) == image.stat().st_size

    def test_an_overlay_is_the_size_asked_for_and_reads_through_its_base(self, node, image):
        files = node.files_of("one")
        base = files.base(image, ignore)
        overlay = files.overlay(base, "raw", 8 * MIB)
        assert overlay != base and node.exists(overlay)
        assert node.size(overlay) == 8 * MIB and node.backing(overlay) == base

    def test_a_blank_disk_has_its_size_and_a_name_from_its_partition(self, node):
        blank = node.files_of("one").blank("scratch", 2 * MIB)
        assert node.exists(blank) and node.size(blank) == 2 * MIB
        assert blank.name.endswith("blank-scratch.raw")
        with pytest.raises(InvalidMetadata, match="not usable as a file name"):
            node.files_of("one").blank("..", MIB)

    def test_kernels_and_attached_files_are_where_the_node_reads_them(self, node, image):
        files = node.files_of("one")
        assert node.exists(files.boot_file(image, ignore))
        attached = files.attach(context_drive(node, "one"))
        assert node.exists(attached) and node.size(attached) == len(b"context")

    def test_a_read_write_partition_is_the_repository_file_itself_or_refused(self, node, image):
        files = node.files_of("one")
        if node.writes_in_place:
            assert files.in_place(image) == image
        else:
            with pytest.raises(RequestDenied, match="ask for it ReadOnly"):
                files.in_place(image)

    def test_discard_deletes_the_domains_own_files_only_and_keeps_the_shared_bases(self, node, image):
        files, other = node.files_of("one"), node.files_of("two")
        context = context_drive(node, "one")
        base = files.base(image, ignore)
        own = [files.overlay(base, "raw", MIB), files.blank("scratch", MIB), files.attach(context), files.console_log()]
        kept = other.blank("scratch", MIB)
        files.discard()
        assert not any(node.exists(path) for path in own)
        assert node.exists(base) and node.exists(kept)
        files.discard()  # what is already gone is fine


class TestDomainFiles(DomainFilesContract):
    """Local files, and upload volumes on the test driver (its uploads stood in for)."""

    @pytest.fixture(params=["local", "upload"])
    def node(self, request, tmp_path, monkeypatch) -> Iterator[Node]:
        store = Store(tmp_path / "vws.sqlite")
        if request.param == "local":
            yield local_node(tmp_path, store)
        else:
            stand_in_uploads(monkeypatch)
            uri = testnode.write_node(tmp_path / "far.xml", 4096, 4)
            config = PoolConfig(storage_pool_path=str(tmp_path / "on-node"))
            yield from upload_node(uri, store, config, tmp_path / "scratch")
