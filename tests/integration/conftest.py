"""Session fixtures for real-guest tests; every test in this package is marked integration."""

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration import guest, libvirtd

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
