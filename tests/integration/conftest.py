"""Fixtures for real-guest tests; every test in this package is marked integration.

``service`` runs vws with one node, ``qemu:///system`` (TCG), the guest's files in its image
repository and the ``public`` network pool of ``deploy.py``; a test module changes the node's
nodes-file lines with ``node_options`` and the ``[pool]`` settings with ``pool_options``.
"""

import shutil
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import libvirt
import pytest

from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client
from tests.integration import deploy, guest, libvirtd
from vws.service import Service

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A hook in a sub-directory conftest still sees the whole session's items.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    """``qemu:///system`` with libvirtd running; skips where it cannot run."""
    try:
        return libvirtd.ensure_libvirtd()
    except libvirtd.LibvirtdUnavailable as reason:
        pytest.skip(str(reason))


@pytest.fixture(scope="session")
def guest_image() -> guest.GuestImage:
    """The cached test guest (kernel, initrd, base disk), built on first use."""
    reason = guest.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return guest.build_guest()


@pytest.fixture
def connection(libvirt_uri: str) -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors arrive as exceptions anyway
    opened = libvirt.open(libvirt_uri)
    yield opened
    opened.close()


@pytest.fixture
def repository(guest_image: guest.GuestImage, tmp_path: Path) -> Path:
    """The guest's three files in an image repository of their own (file:// names resolve
    inside it, and the service may not read files elsewhere)."""
    root = tmp_path / "images"
    root.mkdir()
    for source in (guest_image.kernel, guest_image.initrd, guest_image.base):
        shutil.copyfile(source, root / source.name)
    return root


@pytest.fixture
def node_options() -> str:
    """Extra nodes-file lines for the node (e.g. ``images = upload``)."""
    return ""


@pytest.fixture
def pool_options() -> dict[str, object]:
    """Extra ``[pool]`` settings."""
    return {}


@pytest.fixture
def node_memory_mb() -> int:
    """The node's memory: room for one guest and a half, so a second deploy fits only once the first is gone."""
    return deploy.MEMORY_MB + deploy.MEMORY_MB // 2


@pytest.fixture
def node_cpus() -> int:
    return 1


@pytest.fixture
def service_options() -> dict[str, object]:
    """Extra ``[service]`` settings."""
    return {}


@pytest.fixture
def own_storage_pool(tmp_path: Path, connection: libvirt.virConnect) -> Iterator[dict[str, object]]:
    """``[pool]`` settings naming a storage pool of this test's own, so its first upload starts from an
    empty cache; the pool and its volumes are deleted afterwards (after ``service``, which uses them)."""
    name = f"vws-test-{uuid.uuid4().hex[:8]}"
    yield {"storage_pool": name, "storage_pool_path": str(tmp_path / "node-pool")}
    with suppress(libvirt.libvirtError):
        storage = connection.storagePoolLookupByName(name)
        for volume in storage.listAllVolumes(0):
            volume.delete(0)
        storage.destroy()
        storage.undefine()


@pytest.fixture
def service(
    libvirt_uri: str,
    repository: Path,
    tmp_path: Path,
    node_options: str,
    pool_options: dict[str, object],
    node_memory_mb: int,
    node_cpus: int,
    service_options: dict[str, object],
) -> Iterator[Service]:
    nodes_file = tmp_path / "nodes.conf"
    nodes_file.write_text(
        f"[{deploy.NODE}]\nuri = {libvirt_uri}\nmemory = {node_memory_mb}\ncpus = {node_cpus}\n"
        f"networks = {deploy.POOL}\n{node_options}"
    )
    pools = tmp_path / "network-pools"
    pools.mkdir()
    (pools / deploy.POOL).write_text(deploy.POOL_TEXT)
    config = make_config(tmp_path / "state").with_overrides("service", **service_options)
    config = config.with_overrides(
        "pool",
        nodes_file=nodes_file,
        network_pools_dir=pools,
        image_repository=repository,
        virt_type="qemu",
        shutdown_wait_seconds=5,
        domain_prefix=deploy.DOMAIN_PREFIX,
        **pool_options,
    )
    running = Service(config)
    running.start()
    try:
        yield running
    finally:
        with running.store.reading() as db:
            leftovers = [row[0] for row in db.execute("select domain from pool_domains")]
        running.stop()
        deploy.remove_domains(libvirt_uri, leftovers)


@pytest.fixture
def gt4(service: Service) -> Iterator[Gt4Client]:
    """A client whose create returns once the deployment it started has settled."""
    client = Gt4Client(service.base_url, settle=settler(service))
    yield client
    client.close()
