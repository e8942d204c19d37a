"""Layered appliances: deploy time and bytes moved when the lower layers are already on the node
against when every layer travels, on a local node (a test-driver node reading the state dir)
and on an upload node (volumes in a storage pool of the real libvirtd, when one runs here).

Three 1 GiB sparse qcow2 layers (system <- custom <- app, each with 64 MiB of data) and a
second application (other-app) over the same two lower layers. "All travel" deploys app to an
empty node; "lower cached" then deploys other-app, which finds system and custom there.
"""

import functools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt  # noqa: E402

from tests.test_pool_helpers import reserve  # noqa: E402
from vws.clock import ManualClock  # noqa: E402
from vws.config import PoolConfig  # noqa: E402
from vws.pool.driver import Driver  # noqa: E402
from vws.pool.machine import DiskRequest, MachineRequest  # noqa: E402
from vws.pool.manager import PoolManager  # noqa: E402
from vws.pool.storage import layers  # noqa: E402
from vws.pool.storage.cache import allocated  # noqa: E402
from vws.pool.storage.volumes import NodeVolumes  # noqa: E402
from vws.store.database import Store  # noqa: E402

MIB = 1 << 20
DATA_MB = 64


def qemu_img(*arguments: str) -> None:
    subprocess.run(["qemu-img", *arguments], capture_output=True, check=True)


def qemu_io(*arguments: str) -> None:
    subprocess.run(["qemu-io", *arguments], capture_output=True, check=True)


def build(repository: Path) -> None:
    """system <- custom <- app, and other-app over custom: 1 GiB each, 64 MiB of data each."""
    below = None
    for offset, name in enumerate(("system", "custom", "app")):
        backing = ["-b", f"{below}.qcow2", "-F", "qcow2"] if below else []
        qemu_img("create", "-q", "-f", "qcow2", *backing, str(repository / f"{name}.qcow2"), "1G")
        qemu_io("-c", f"write -P {offset + 1} {offset * 128}M {DATA_MB}M", str(repository / f"{name}.qcow2"))
        below = name if name != "app" else below
    qemu_img("create", "-q", "-f", "qcow2", "-b", "custom.qcow2", "-F", "qcow2", str(repository / "other-app.qcow2"))
    qemu_io("-c", f"write -P 9 256M {DATA_MB}M", str(repository / "other-app.qcow2"))


def local_node(state: Path) -> list[tuple[str, float, int]]:
    """Define (disks prepared, domain defined) on the embedded test node: seconds, bytes into its cache."""
    store = Store(state / "vws.sqlite")
    pool = PoolManager(store, PoolConfig(image_repository=state / "images"), ManualClock(), state)
    build(state / "images")
    cache = state / "nodes" / "node1" / "cache"
    figures = []
    for label, image in (("all layers travel", "app.qcow2"), ("lower layers cached", "other-app.qcow2")):
        machine = MachineRequest(memory_mb=256, root=DiskRequest(f"file://{image}", "sda1"))
        placement = reserve(store, pool, machine)[0]
        before = sum(allocated(path) for path in cache.iterdir()) if cache.exists() else 0
        started = time.perf_counter()
        pool.define(placement, machine)
        seconds = time.perf_counter() - started
        figures.append((label, seconds, sum(allocated(path) for path in cache.iterdir()) - before))
    pool.close()
    return figures


def upload_node(work: Path) -> list[tuple[str, float, int]] | None:
    """The layers' upload into a storage pool of qemu:///system: seconds, bytes sent."""
    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        driver = Driver("bench", "qemu:///system", ManualClock())
    except Exception:
        return None
    repository = (work / "upload-repository").resolve()
    repository.mkdir()
    build(repository)
    config = PoolConfig(storage_pool=f"vws-bench-{work.name[-8:]}", storage_pool_path=str(work / "node-pool"))
    store = Store(work / "upload.sqlite")
    volumes = NodeVolumes(driver, store, ManualClock(), config)
    figures = []
    try:
        for label, image in (("all layers travel", "app.qcow2"), ("lower layers cached", "other-app.qcow2")):
            sent: list[int] = []
            started = time.perf_counter()
            layers.cached(volumes, store, repository, repository / image, functools.partial(_ended, sent))
            figures.append((label, time.perf_counter() - started, sum(sent)))
    finally:
        pool = driver.connection.storagePoolLookupByName(config.storage_pool)
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()
        pool.undefine()
        driver.close()
    return figures


def _ended(sent: list[int], done: int, total: int) -> None:
    if done == total:  # one final report per upload, of the file's whole size (holes travel as holes)
        sent.append(total)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vws-bench-appliance-") as work:
        root = Path(work)
        (root / "state" / "images").mkdir(parents=True)
        print(f"appliance layers: 3 x 1 GiB sparse qcow2 layers, {DATA_MB} MiB of data each")
        for kind, figures in (("local node", local_node(root / "state")), ("upload node", upload_node(root))):
            if figures is None:
                print(f"  {kind}: skipped (no libvirtd at qemu:///system)")
                continue
            for label, seconds, moved in figures:
                print(f"  {kind:11}  {label:20}  {seconds * 1e3:8.1f} ms  {moved / MIB:8.1f} MiB moved")
            ratio = figures[0][2] / max(figures[1][2], 1)
            print(f"  {kind:11}  bytes moved, all travel / lower cached: {ratio:.1f}x")


if __name__ == "__main__":
    main()
