"""A three-layer appliance boots in a real guest and reads a word from each layer: the guest's
own disk (system), a customization layer over it and an application layer over that, each
written with qemu-io at its own MiB of the disk and cached on the node by digest."""

import subprocess
from pathlib import Path

from tests.gt4wire import Gt4Client, created_eprs
from tests.integration.console import wait_for_line
from tests.integration.deploy import BOOT_TIMEOUT, console_path, create, domain_name

WORDS = {
    "system.qcow2": (4, "VWS-LAYER-SYSTEM"),
    "custom.qcow2": (5, "VWS-LAYER-CUSTOM"),
    "app.qcow2": (6, "VWS-LAYER-APP"),
}


def qemu_img(*arguments: str) -> None:
    subprocess.run(["qemu-img", *arguments], capture_output=True, check=True)


def qemu_io(*arguments: str) -> None:
    subprocess.run(["qemu-io", *arguments], capture_output=True, check=True)


def write_word(image: Path, scratch: Path) -> None:
    mib, word = WORDS[image.name]
    sector = scratch / f"{image.stem}.word"
    sector.write_bytes(f"{word}\n".encode().ljust(512, b"\0"))
    qemu_io("-f", "qcow2", "-c", f"write -s {sector} {mib}M 512", str(image))


def test_a_three_layer_appliance_boots_and_reads_a_word_from_each_layer(
    service, gt4: Gt4Client, repository: Path, connection, tmp_path: Path
):
    system = repository / "system.qcow2"  # the guest's own disk, as a standalone bottom layer
    qemu_img("convert", "-O", "qcow2", str(repository / "base.qcow2"), str(system))
    write_word(system, tmp_path)
    below = system
    for name in ("custom.qcow2", "app.qcow2"):
        qemu_img("create", "-q", "-f", "qcow2", "-b", below.name, "-F", "qcow2", str(repository / name))
        write_word(repository / name, tmp_path)
        below = repository / name
    (epr,) = created_eprs(create(gt4, root="app.qcow2"))
    assert gt4.state(epr) == "Running"
    console = console_path(connection.lookupByName(domain_name(epr)))
    wait_for_line(console, "^VWS-LAYERS VWS-LAYER-SYSTEM VWS-LAYER-CUSTOM VWS-LAYER-APP $", BOOT_TIMEOUT)
    cache = service.config.service.state_dir / "nodes" / "libvirt1" / "cache"
    assert len(list(cache.iterdir())) == 3  # each layer once; a local node reads kernel and initrd in place
    gt4.destroy(epr)
