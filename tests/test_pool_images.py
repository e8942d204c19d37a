"""Images: qcow2 overlays checked by qemu-img, caches, claims, the repository's bounds."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_pool_helpers import SMALL, destroy, open_pool, reserve
from vws.config import PoolConfig
from vws.errors import InvalidMetadata, RequestDenied
from vws.pool import downloads, images, qcow2
from vws.pool.machine import BlankDiskRequest, DiskRequest, MachineRequest
from vws.store.database import Store

GIB = 1 << 30


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


# ---- the qcow2 overlay ----------------------------------------------------------------------


@pytest.mark.parametrize("base_format", ["raw", "qcow2"])
def test_overlay_is_valid_qcow2_over_its_base(tmp_path, base_format):
    if base_format == "raw":
        base = sparse(tmp_path / "base.raw", 10 * GIB)
    else:
        base = tmp_path / "base.qcow2"
        assert qemu_img("create", "-q", "-f", "qcow2", str(base), "3G").returncode == 0
    overlay = tmp_path / "overlay.qcow2"
    qcow2.write_overlay(overlay, base, qcow2.detect_format(base), qcow2.virtual_size(base))
    info = json.loads(qemu_img("info", "--output=json", str(overlay)).stdout)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == qcow2.virtual_size(base)
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == base_format
    assert info["cluster-size"] == 65536
    assert info["format-specific"]["data"]["compat"] == "1.1"  # qcow2 v3
    check = qemu_img("check", str(overlay))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No errors were found" in check.stdout


def test_guest_writes_land_in_the_overlay_and_reads_fall_through(tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"B" * 65536 + b"\0" * (1 << 20))
    overlay = tmp_path / "overlay.qcow2"
    qcow2.write_overlay(overlay, base, "raw", qcow2.virtual_size(base))
    io = subprocess.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-c",
            "read -P 0x42 0 64k",
            "-c",
            "write -P 0x7a 64k 64k",
            "-c",
            "read -P 0x7a 64k 64k",
            str(overlay),
        ],
        capture_output=True,
        text=True,
    )
    assert io.returncode == 0 and "Pattern verification failed" not in io.stdout, io.stdout
    assert base.read_bytes()[65536:131072] == b"\0" * 65536  # the base is untouched
    assert qemu_img("check", str(overlay)).returncode == 0


def test_overlay_cost_does_not_depend_on_base_size(tmp_path):
    small = sparse(tmp_path / "small.raw", 10 << 20)
    large = sparse(tmp_path / "large.raw", 10 * GIB)

    def cost(base: Path, run: str) -> float:
        timings = []
        for index in range(30):
            target = tmp_path / f"{base.stem}-{run}{index}.qcow2"
            started = time.perf_counter()
            qcow2.write_overlay(target, base, "raw", qcow2.virtual_size(base))
            timings.append(time.perf_counter() - started)
        return sorted(timings)[len(timings) // 2]

    cost(small, "warm")
    small_cost, large_cost = cost(small, ""), cost(large, "")
    assert large_cost < 0.005 and small_cost < 0.005
    assert large_cost < 3 * small_cost + 0.0005
    assert os.stat(tmp_path / "large-0.qcow2").st_size == os.stat(tmp_path / "small-0.qcow2").st_size


def test_overlay_refuses_to_overwrite(tmp_path):
    base = sparse(tmp_path / "base.raw", 1 << 20)
    qcow2.write_overlay(tmp_path / "o.qcow2", base, "raw", 1 << 20)
    with pytest.raises(FileExistsError):
        qcow2.write_overlay(tmp_path / "o.qcow2", base, "raw", 1 << 20)


# ---- repository, checksums, node cache ------------------------------------------------------


def test_repository_resolves_names_and_refuses_escapes(tmp_path):
    repo = images.Repository(tmp_path / "repo")
    repo.write_sample()
    assert repo.resolve("file://ttylinux-xen") == (tmp_path / "repo" / "ttylinux-xen").resolve()
    assert repo.resolve(f"file://{tmp_path}/repo/ttylinux-xen") == repo.resolve("file://ttylinux-xen")
    for outside in ("file:///etc/passwd", "file://../../etc/passwd", "scp://host/image"):
        with pytest.raises(RequestDenied):
            repo.resolve(outside)
    with pytest.raises(InvalidMetadata, match="not found"):
        repo.resolve("file://no-such-image")
    with pytest.raises(RequestDenied, match="allowed_image_hosts"):
        repo.resolve("http://images.example.org/ttylinux")


def test_checksum_is_computed_once_per_size_and_mtime(tmp_path, monkeypatch):
    store = Store(tmp_path / "vws.sqlite")
    image = tmp_path / "image"
    image.write_bytes(b"one")
    calls = []
    real = downloads.sha256_file
    monkeypatch.setattr(downloads, "sha256_file", lambda path: calls.append(path) or real(path))
    first = images.checksum(store, image)
    assert images.checksum(store, image) == first and len(calls) == 1
    image.write_bytes(b"two!")
    assert images.checksum(store, image) != first and len(calls) == 2


def test_node_cache_copies_once_keeps_holes_and_evicts_only_unused(tmp_path):
    source = sparse(tmp_path / "base.raw", GIB)
    with open(source, "r+b") as file:
        file.seek(GIB // 2)
        file.write(b"data")
    cache = images.NodeCache(tmp_path / "cache", limit_mb=1)
    cached = cache.base(source, "a" * 64)
    assert cached.stat().st_size == GIB and cached.stat().st_blocks * 512 < (1 << 20)
    with open(cached, "rb") as file:
        file.seek(GIB // 2)
        assert file.read(4) == b"data"
    inode = cached.stat().st_ino
    assert cache.base(source, "a" * 64).stat().st_ino == inode  # a hit: no second copy
    other = tmp_path / "other.raw"
    other.write_bytes(os.urandom(2 << 20))  # 2 MB allocated: over the 1 MB limit
    kept = cache.base(other, "b" * 64)
    assert cache.evict(in_use={kept, cached}) == []  # everything in use stays, even over the limit
    assert cache.evict(in_use={cached}) == [kept]


# ---- through PoolManager: disks per workspace, claims ----------------------------------------


def test_define_builds_overlay_blank_and_partitions(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    repo = pool.repository.root
    sparse(repo / "data.raw", 8 << 20)
    sparse(repo / "scratch-ro.raw", 8 << 20)
    machine = MachineRequest(
        memory_mb=128,
        root=DiskRequest("file://ttylinux-xen", "sda1"),
        partitions=(
            DiskRequest("file://data.raw", "sdb1"),
            DiskRequest("file://scratch-ro.raw", "sdc1", writable=False),
        ),
        blank_disks=(BlankDiskRequest("blankdisk1", "sdd1", 512),),
    )
    placed = reserve(store, pool, machine)[0]
    pool.define(placed, machine)
    directory = tmp_path / "state" / "nodes" / "node1" / "domains" / placed.domain
    blank = directory / "blank-blankdisk1.raw"
    assert blank.stat().st_size == 512 << 20 and blank.stat().st_blocks == 0
    assert qemu_img("check", str(directory / "root.qcow2")).returncode == 0
    with store.reading() as db:
        xml = db.execute("select xml from pool_domains where domain = ?", [placed.domain]).fetchone()[0]
    assert f"{repo.resolve()}/data.raw" in xml  # read-write partition: in place
    assert "<readonly/>" in xml and "<shareable/>" in xml  # read-only partition: shared cached base
    for target in ("vda", "vdb", "vdc", "vdd"):
        assert f'dev="{target}"' in xml
    destroy(store, pool, placed)
    assert not directory.exists()
    assert list((tmp_path / "state" / "nodes" / "node1" / "cache").iterdir())  # cached bases stay


def test_read_write_partitions_are_not_shared_read_only_ones_are(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    sparse(pool.repository.root / "shared.raw", 1 << 20)
    writer = MachineRequest(memory_mb=64, partitions=(DiskRequest("file://shared.raw", "sdb1"),))
    reader = MachineRequest(memory_mb=64, partitions=(DiskRequest("file://shared.raw", "sdb1", writable=False),))
    assert len(reserve(store, pool, reader, 2)) == 2  # read-only: shared
    with pytest.raises(RequestDenied, match="read-write"):
        reserve(store, pool, writer)
    store2, pool2 = open_pool(tmp_path / "other")
    sparse(pool2.repository.root / "shared.raw", 1 << 20)
    first = reserve(store2, pool2, writer)[0]
    with pytest.raises(RequestDenied, match="cannot be shared"):
        reserve(store2, pool2, writer)
    with pytest.raises(RequestDenied):
        reserve(store2, pool2, reader)
    destroy(store2, pool2, first)  # the claim goes with the workspace
    reserve(store2, pool2, writer)


def test_a_failed_define_removes_its_own_files(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    machine = MachineRequest(
        memory_mb=64, root=DiskRequest("file://ttylinux-xen", "sda1"), blank_disks=(BlankDiskRequest("b", "sdb1", 1),)
    )
    placed = reserve(store, pool, machine)[0]
    broken = MachineRequest(memory_mb=64, root=machine.root, partitions=(DiskRequest("file://missing.raw", "sdc1"),))
    with pytest.raises(InvalidMetadata):
        pool.define(placed, broken)
    assert not (tmp_path / "state" / "nodes" / "node1" / "domains" / placed.domain).exists()
    assert pool.domain_states() == {}


def test_unpropagate_saves_base_plus_writes_as_a_new_image(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, SMALL)[0]
    pool.define(placed, SMALL)
    overlay = tmp_path / "state" / "nodes" / "node1" / "domains" / placed.domain / "root.qcow2"
    assert subprocess.run(["qemu-io", "-c", "write -P 0x61 0 64k", str(overlay)], capture_output=True).returncode == 0
    uri = pool.unpropagate(placed.node, placed.domain, "file://saved/mine.qcow2")
    assert uri == "file://saved/mine.qcow2"
    saved = pool.repository.resolve(uri)
    info = json.loads(qemu_img("info", "--output=json", str(saved)).stdout)
    assert "backing-filename" not in info and info["virtual-size"] == images.SAMPLE_SIZE
    assert (
        subprocess.run(
            ["qemu-io", "-c", "read -P 0x61 0 64k", str(saved)], capture_output=True, text=True
        ).stdout.count("verification failed")
        == 0
    )
    with pytest.raises(RequestDenied, match="already exists"):
        pool.unpropagate(placed.node, placed.domain, "file://saved/mine.qcow2")
    assert pool.unpropagate(placed.node, placed.domain, None) == f"file://{placed.domain}.qcow2"


def test_cache_limit_evicts_bases_no_domain_uses(tmp_path):
    store, pool = open_pool(tmp_path / "state", PoolConfig(image_cache_mb=1))
    for name in ("one", "two"):
        (pool.repository.root / name).write_bytes(os.urandom(1 << 20))
    first = MachineRequest(memory_mb=64, root=DiskRequest("file://one", "sda1"))
    second = MachineRequest(memory_mb=64, root=DiskRequest("file://two", "sda1"))
    a = reserve(store, pool, first)[0]
    pool.define(a, first)
    b = reserve(store, pool, second)[0]
    pool.define(b, second)
    cache = tmp_path / "state" / "nodes" / "node1" / "cache"
    assert len(list(cache.iterdir())) == 2  # both in use: over the limit, nothing evicted
    destroy(store, pool, a)
    c = reserve(store, pool, second)[0]
    pool.define(c, second)
    assert len(list(cache.iterdir())) == 1  # one's base went once nothing read through it
