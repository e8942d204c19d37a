"""Images: qcow2 overlays checked by qemu-img, caches, claims, the repository's bounds."""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.test_pool_helpers import SMALL, cancel, destroy, open_pool, raised_within, reserve
from vws.config import PoolConfig
from vws.errors import BackendError, Cancelled, InvalidMetadata, RequestDenied
from vws.pool import downloads, qcow2
from vws.pool.machine import BlankDiskRequest, DiskRequest, MachineRequest
from vws.pool.storage.cache import base_lock, cached_base
from vws.pool.storage.eviction import CacheFull, Holds
from vws.pool.storage.local import NodeCache
from vws.pool.storage.locks import keyed_lock
from vws.pool.storage.repository import SAMPLE_SIZE, Repository, checksum
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
    repo = Repository(tmp_path / "repo", Store(tmp_path / "vws.sqlite"))
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
    first = checksum(store, image)
    assert checksum(store, image) == first and len(calls) == 1
    image.write_bytes(b"two!")
    assert checksum(store, image) != first and len(calls) == 2


def test_node_cache_copies_once_and_keeps_holes(tmp_path):
    source = sparse(tmp_path / "base.raw", GIB)
    with open(source, "r+b") as file:
        file.seek(GIB // 2)
        file.write(b"data")
    cache = NodeCache(tmp_path / "cache")
    cached = cache.base(source, "a" * 64)
    assert cached.stat().st_size == GIB and cached.stat().st_blocks * 512 < (1 << 20)
    with open(cached, "rb") as file:
        file.seek(GIB // 2)
        assert file.read(4) == b"data"
    inode = cached.stat().st_ino
    assert cache.base(source, "a" * 64).stat().st_ino == inode  # a hit: no second copy


# ---- the cache limit: room made before a copy ------------------------------------------------


def mib_images(directory: Path, *names: str) -> dict[str, Path]:
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).write_bytes(os.urandom(1 << 20))  # 1 MiB allocated each
    return {name: directory / name for name in names}


def fill(cache: NodeCache, sources: dict[str, Path]) -> dict[str, Path]:
    """Copy each source in, oldest first (distinct mtimes order eviction)."""
    cached = {}
    for index, (name, source) in enumerate(sources.items()):
        cached[name] = cache.base(source, name * 64)
        os.utime(cached[name], ns=(index, index))
    return cached


def test_room_is_made_before_the_copy_least_recently_used_first(tmp_path):
    sources = mib_images(tmp_path / "repo", "a", "b", "c")
    cache = NodeCache(tmp_path / "cache", limit_mb=2)
    cached = fill(cache, {"a": sources["a"], "b": sources["b"]})
    cache.base(sources["a"], "a" * 64)  # a hit: a is now the most recently used
    during: list[bool] = []
    cache.base(sources["c"], "c" * 64, lambda done, total: during.append(cached["b"].exists()))
    assert during and not any(during)  # b went before c's copy began
    assert sorted(path.name[0] for path in (tmp_path / "cache").iterdir()) == ["a", "c"]


def test_a_base_that_cannot_fit_is_refused_before_anything_is_evicted_or_copied(tmp_path):
    sources = mib_images(tmp_path / "repo", "a", "b", "c")
    kept: set[Path] = set()
    cache = NodeCache(tmp_path / "cache", limit_mb=2, keep=lambda: kept)
    cached = fill(cache, {"a": sources["a"], "b": sources["b"]})
    kept.add(cached["b"])
    kept.add(cached["a"])
    with pytest.raises(CacheFull, match=r"1 MB image does not fit .* 2 MB of it hold images") as full:
        cache.base(sources["c"], "c" * 64)
    assert isinstance(full.value, BackendError)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == ["a" * 64, "b" * 64]
    with pytest.raises(CacheFull, match="larger than the 1 MB image cache"):
        big = tmp_path / "big"
        big.write_bytes(os.urandom(2 << 20))
        NodeCache(tmp_path / "small", limit_mb=1).base(big, "d" * 64)


def test_bases_a_define_in_progress_took_are_kept_until_it_is_over(tmp_path):
    sources = mib_images(tmp_path / "repo", "a", "b")
    holds = Holds()
    with holds.define("n1") as take:
        cache = NodeCache(tmp_path / "cache", limit_mb=1, keep=lambda: holds.of("n1"), take=take)
        taken = cache.base(sources["a"], "a" * 64)
        assert holds.of("n1") == {taken} and holds.of("n2") == set()
        with pytest.raises(CacheFull):
            cache.base(sources["b"], "b" * 64)  # a is held: no room
    assert holds.of("n1") == set()
    NodeCache(tmp_path / "cache", limit_mb=1, keep=lambda: holds.of("n1")).base(sources["b"], "b" * 64)
    assert not taken.exists()  # let go: evicted for b


def test_a_copy_waiting_for_another_into_the_same_cache_can_be_cancelled(tmp_path):
    sources = mib_images(tmp_path / "repo", "a")
    cache = NodeCache(tmp_path / "cache", limit_mb=4, name="node n1")

    def cancel(done: int, total: int) -> None:
        raise Cancelled("workspace 3 is being destroyed")

    with keyed_lock(("node n1", "room")):  # another copy into n1's cache is under way
        with pytest.raises(Cancelled):
            cache.base(sources["a"], "a" * 64, cancel)
    assert not (tmp_path / "cache").exists()


def test_waiting_for_another_copy_of_the_same_base_can_be_cancelled(tmp_path):
    sources = mib_images(tmp_path / "repo", "a")
    cache = NodeCache(tmp_path / "cache")
    copying, gate = threading.Event(), threading.Event()

    def held(done: int, total: int) -> None:
        copying.set()
        gate.wait()

    first = threading.Thread(target=cache.base, args=(sources["a"], "a" * 64, held))
    first.start()
    try:
        assert copying.wait(10)  # the first copy holds the base's lock
        assert isinstance(raised_within(lambda: cache.base(sources["a"], "a" * 64, cancel)), Cancelled)
    finally:
        gate.set()
        first.join()
    assert cache.base(sources["a"], "a" * 64).read_bytes() == sources["a"].read_bytes()


def test_copying_in_handing_out_and_evicting_a_base_wait_on_one_lock(tmp_path):
    sources = mib_images(tmp_path / "repo", "a", "b")
    cache = NodeCache(tmp_path / "cache", limit_mb=1, name="node n1")
    a = cached_base(cache, sources["a"], "a" * 64)
    with base_lock(cache, a.name):  # a define is handing a out...
        with pytest.raises(Cancelled):
            cached_base(cache, sources["a"], "a" * 64, cancel)  # ...so another waits to take it
        with pytest.raises(Cancelled):
            cached_base(cache, sources["b"], "b" * 64, cancel)  # ...and to evict it to make room for b
    assert a.exists() and not (cache.directory / ("b" * 64)).exists()
    cached_base(cache, sources["b"], "b" * 64)
    assert not a.exists()


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
    assert "backing-filename" not in info and info["virtual-size"] == SAMPLE_SIZE
    assert (
        subprocess.run(
            ["qemu-io", "-c", "read -P 0x61 0 64k", str(saved)], capture_output=True, text=True
        ).stdout.count("verification failed")
        == 0
    )
    with pytest.raises(RequestDenied, match="already exists"):
        pool.unpropagate(placed.node, placed.domain, "file://saved/mine.qcow2")
    assert pool.unpropagate(placed.node, placed.domain, None) == f"file://{placed.domain}.qcow2"


def test_define_makes_room_in_the_node_cache_or_fails_without_copying(tmp_path):
    store, pool = open_pool(tmp_path / "state", PoolConfig(image_cache_mb=1))
    sources = mib_images(pool.repository.root, "one", "two")
    first = MachineRequest(memory_mb=64, root=DiskRequest("file://one", "sda1"))
    second = MachineRequest(memory_mb=64, root=DiskRequest("file://two", "sda1"))
    a = reserve(store, pool, first)[0]
    pool.define(a, first)
    cache = tmp_path / "state" / "nodes" / "node1" / "cache"
    b = reserve(store, pool, second)[0]
    with pytest.raises(BackendError, match="does not fit in the 1 MB image cache of node node1"):
        pool.define(b, second)  # one's base is in use: no room for two's
    assert [path.name for path in cache.iterdir()] == [checksum(store, sources["one"])]  # two not copied
    assert not (tmp_path / "state" / "nodes" / "node1" / "domains" / b.domain).exists()
    destroy(store, pool, a)
    pool.define(b, second)  # one's base goes first, then two's is copied
    assert [path.name for path in cache.iterdir()] == [checksum(store, sources["two"])]
    assert pool.domain_states()[(b.node, b.domain)] == "shutoff"
