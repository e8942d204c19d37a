"""The ``DomainFiles`` contract (tests/test_pool_domain_files.py) on a real libvirtd: an upload
node's volumes created, uploaded through sparse streams, backed and deleted by the qemu driver's
storage pool, in a pool of the test's own."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_pool_domain_files import DomainFilesContract, Node, upload_node
from vws.config import PoolConfig
from vws.store.database import Store


class TestDomainFilesOnLibvirtd(DomainFilesContract):
    @pytest.fixture
    def node(self, libvirt_uri: str, own_storage_pool: dict[str, object], tmp_path: Path) -> Iterator[Node]:
        config = PoolConfig(**own_storage_pool)  # type: ignore[arg-type]
        yield from upload_node(libvirt_uri, Store(tmp_path / "vws.sqlite"), config, tmp_path / "scratch")
