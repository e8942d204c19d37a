"""Appliances as stacks of qcow2 layers, made and read with real qemu-img and qemu-io: deployed
over HTTP, each layer reaches the node once, by digest, and the workspace reads every layer."""

import json
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from clients.appliance import main as appliance
from tests.gt4wire import FACTORY_ACTION, SAMPLES, Gt4Client, SoapFault, create_body, created_eprs
from vws.pool.storage.cache import allocated, cached_base
from vws.pool.storage.layers import key
from vws.pool.storage.local import NodeCache
from vws.workspace.caller import SERVICE
from vws.xmlns import TYPES, WORKSPACE, qname

MIB = 1 << 20
# Each layer writes its own byte pattern at its own offset: a read shows which layer answers.
PATTERNS = {"system": (0x11, 0), "custom": (0x22, MIB), "app": (0x33, 2 * MIB), "other-app": (0x44, 2 * MIB)}


def qemu_img(*arguments: str) -> str:
    return subprocess.run(["qemu-img", *arguments], capture_output=True, text=True, check=True).stdout


def qemu_io(*arguments: str) -> str:
    return subprocess.run(["qemu-io", *arguments], capture_output=True, text=True, check=True).stdout


def layer(path: Path, below: Path | None = None) -> Path:
    """A 64 MiB qcow2 over ``below`` (named relative, as qemu-img writes it) with its pattern written."""
    backing = ["-b", below.name, "-F", "qcow2"] if below else []
    qemu_img("create", "-q", "-f", "qcow2", *backing, str(path), "64M")
    pattern, offset = PATTERNS[path.stem]
    qemu_io("-c", f"write -P {pattern:#x} {offset} 64k", str(path))
    return path


def reads(image: Path, name: str) -> bool:
    """Whether ``image`` shows the pattern of layer ``name`` where that layer wrote it."""
    pattern, offset = PATTERNS[name]
    result = subprocess.run(
        ["qemu-io", "-r", "-c", f"read -P {pattern:#x} {offset} 64k", str(image)], capture_output=True, text=True
    )
    return result.returncode == 0 and "Pattern verification failed" not in result.stdout


@pytest.fixture
def appliances(service) -> Path:
    """system <- custom <- app and system <- custom <- other-app, in the service's repository."""
    repository = service.pool.repository.root
    custom = layer(repository / "custom.qcow2", layer(repository / "system.qcow2"))
    layer(repository / "app.qcow2", custom)
    layer(repository / "other-app.qcow2", custom)
    return repository


def deploy(gt4: Gt4Client, image: str) -> int:
    metadata = etree.parse(str(SAMPLES / "workspace.xml")).getroot()
    metadata.find(".//{*}rootVBD/{*}location").text = f"file://{image}"
    request = etree.parse(str(SAMPLES / "deployment-request.xml")).getroot()
    (epr,) = created_eprs(gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request)))
    assert gt4.state(epr) == "Running"
    return int(epr.key(qname(WORKSPACE, "WorkspaceKey")))


def cache_of(service) -> dict[str, int]:
    """The embedded node's cached bases: name -> bytes allocated."""
    directory = service.config.service.state_dir / "nodes" / "node1" / "cache"
    return {path.name: allocated(path) for path in directory.iterdir() if not path.name.startswith(".")}


def overlay_of(service, workspace_id: int) -> Path:
    workspace = service.manager.get(SERVICE, workspace_id)
    return service.config.service.state_dir / "nodes" / "node1" / "domains" / workspace.domain / "root.qcow2"


def test_a_three_layer_appliance_reaches_the_node_whole_and_reads_every_layer(service, gt4, appliances):
    workspace = deploy(gt4, "app.qcow2")
    cached = cache_of(service)
    assert len(cached) == 3
    overlay = overlay_of(service, workspace)
    chain = json.loads(qemu_img("info", "--backing-chain", "--output=json", str(overlay)))
    assert [Path(image["filename"]).parent.name for image in chain[1:]] == ["cache"] * 3
    assert [Path(image["filename"]).name for image in chain[1:]] == [
        Path(image["full-backing-filename"]).name for image in chain[:-1]
    ]
    assert set(cached) == {Path(image["filename"]).name for image in chain[1:]}  # named by digests alone
    assert all(reads(overlay, name) for name in ("system", "custom", "app"))
    qemu_img("check", str(overlay))


def test_a_second_appliance_sharing_the_lower_layers_copies_only_its_top(service, gt4, appliances):
    deploy(gt4, "app.qcow2")
    before = cache_of(service)
    workspace = deploy(gt4, "other-app.qcow2")
    after = cache_of(service)
    (added,) = set(after) - set(before)  # one new layer...
    copied = after[added]
    assert copied == allocated(appliances / "other-app.qcow2")  # ...as many bytes as its repository file
    assert copied < sum(before.values()) / 2
    overlay = overlay_of(service, workspace)
    assert reads(overlay, "system") and reads(overlay, "custom") and reads(overlay, "other-app")
    assert not reads(overlay, "app")


def test_a_layer_rebuilt_below_makes_new_keys_above_it(service, gt4, appliances):
    deploy(gt4, "app.qcow2")
    before = cache_of(service)
    qemu_io("-c", "write -P 0x55 8M 64k", str(appliances / "custom.qcow2"))
    deploy(gt4, "app.qcow2")
    assert len(set(cache_of(service)) - set(before)) == 2  # custom and app again; system is shared


@pytest.mark.parametrize("backing", ["/etc/hostname", "../outside.qcow2", "missing.qcow2"])
def test_a_chain_leaving_the_repository_or_broken_is_refused_before_anything_is_held(service, gt4, backing):
    repository = service.pool.repository.root
    (repository.parent / "outside.qcow2").write_bytes(b"")
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        backing,
        "-F",
        "raw",
        str(repository / "bad.qcow2"),
        "64M",
    )
    metadata = etree.parse(str(SAMPLES / "workspace.xml")).getroot()
    metadata.find(".//{*}rootVBD/{*}location").text = "file://bad.qcow2"
    request = etree.parse(str(SAMPLES / "deployment-request.xml")).getroot()
    with pytest.raises(SoapFault) as raised:
        gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request))
    assert raised.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert service.manager.workspaces(SERVICE) == []


def test_eviction_never_takes_a_layer_a_cached_layer_above_names(tmp_path):
    repository = tmp_path / "repository"
    repository.mkdir()
    custom = layer(repository / "custom.qcow2", layer(repository / "system.qcow2"))
    cache = NodeCache(tmp_path / "cache", limit_mb=1)
    lower = key("1" * 64, None)
    below = cache.base(repository / "system.qcow2", lower)
    upper = cached_base(cache, custom, key("2" * 64, lower), backing=(lower, "qcow2"))
    assert cache.below(upper) == below.name
    assert reads(upper, "system") and reads(upper, "custom")
    filler = tmp_path / "filler.raw"  # fits once the upper layer is gone, not before
    filler.write_bytes(b"x" * (MIB - allocated(below) - allocated(upper) // 2))
    cache.base(filler, "f" * 64)  # the least recently used is the layer below: it stays, named by the upper
    assert not upper.exists() and below.exists()


def test_vws_appliance_layer_add_keeps_only_what_the_modified_copy_changed(tmp_path):
    repository = tmp_path / "repository"
    repository.mkdir()
    system = layer(repository / "system.qcow2")
    modified = tmp_path / "modified.qcow2"
    qemu_img("convert", "-O", "qcow2", str(system), str(modified))  # a whole copy, then changed
    qemu_io("-c", f"write -P {0x22:#x} {MIB} 64k", str(modified))
    qemu_io("-c", "write -P 0x5a 32M 8M", str(modified))
    assert appliance(["layer", "add", "--base", str(system), "--from", str(modified), "--name", "custom.qcow2"]) == 0
    custom = repository / "custom.qcow2"
    assert json.loads(qemu_img("info", "--output=json", str(custom)))["backing-filename"] == "system.qcow2"
    assert reads(custom, "system") and reads(custom, "custom")
    assert allocated(custom) < allocated(modified) - allocated(system) + MIB  # the changes, not the whole copy
