"""Layered appliances on an upload node (a real libvirtd's storage pool): each layer travels as
a volume named by its key, backed by the volume below it; a second appliance sharing the lower
layers uploads only its top, counted in bytes sent."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.deploy import NODE
from tests.test_appliance_layers import layer, reads
from vws.clock import ManualClock
from vws.config import PoolConfig
from vws.pool.driver import Driver
from vws.pool.storage import layers
from vws.pool.storage.volumes import NodeVolumes, UploadedFiles
from vws.store.database import Store


@pytest.fixture
def node(libvirt_uri: str, own_storage_pool: dict[str, object], tmp_path: Path) -> Iterator[tuple[NodeVolumes, Store]]:
    store, clock = Store(tmp_path / "vws.sqlite"), ManualClock()
    driver = Driver(NODE, libvirt_uri, clock)
    try:
        yield NodeVolumes(driver, store, clock, PoolConfig(**own_storage_pool)), store  # type: ignore[arg-type]
    finally:
        driver.close()


def test_layers_travel_once_as_volumes_backed_by_the_volume_below(node, tmp_path, connection):
    volumes, store = node
    repository = (tmp_path / "repository").resolve()
    repository.mkdir()
    custom = layer(repository / "custom.qcow2", layer(repository / "system.qcow2"))
    app, other = layer(repository / "app.qcow2", custom), layer(repository / "other-app.qcow2", custom)
    sent: list[int] = []

    def cache(top: Path) -> Path:
        finished: list[int] = []

        def progress(done: int, total: int) -> None:
            if done == total:  # each upload ends with one report of its whole size
                finished.append(total)

        top_volume = layers.cached(volumes, store, repository, top, progress)
        sent.append(sum(finished))
        return top_volume

    first = cache(app)
    chain = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--backing-chain", "--output=json", str(first)], capture_output=True, check=True
        ).stdout
    )
    assert len(chain) == 3 and all(Path(image["filename"]).parent == first.parent for image in chain)
    assert reads(first, "system") and reads(first, "custom") and reads(first, "app")

    second = cache(other)
    assert sent[1] == other.stat().st_size  # only its top layer travelled
    assert sent[0] == sum(path.stat().st_size for path in (repository / "system.qcow2", custom, app))
    storage = connection.storagePoolLookupByName(volumes._pool.name())
    assert len(storage.listAllVolumes(0)) == 4

    files = UploadedFiles(volumes, store, "wrksp-layers", tmp_path / "scratch", repository)
    overlay = files.overlay(second, "qcow2", 64 << 20)
    assert reads(overlay, "system") and reads(overlay, "custom") and reads(overlay, "other-app")
    files.discard()  # the domain's own volume goes; the four layers stay cached
    assert sorted(volume.name() for volume in storage.listAllVolumes(0)) == sorted(
        base.name for base, _ in volumes.bases()
    )
