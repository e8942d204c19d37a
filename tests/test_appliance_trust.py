"""Signed appliance descriptors, end to end: a producer describes, signs and checks them with
``vws-appliance`` (and ``xmlsec1``, a second implementation, accepts the signature); over HTTP
the service deploys a trusted one and refuses, before anything is held or copied, one that is
unsigned, tampered with, signed by a producer it does not trust, or whose layers differ."""

import subprocess
from pathlib import Path

import pytest
from lxml import etree

from clients.appliance import main as appliance
from tests.conftest import make_config
from tests.gt4wire import FACTORY_ACTION, SAMPLES, SoapFault, create_body, created_eprs
from tests.test_appliance_layers import layer, qemu_io, reads
from tests.test_appliance_matching import rows, running
from tests.test_pool_helpers import open_pool, reserve
from vws.errors import InvalidMetadata
from vws.pool.machine import DiskRequest, MachineRequest
from vws.workspace.caller import SERVICE
from vws.xmlns import TYPES, WORKSPACE, qname


def credential(directory: Path, name: str) -> tuple[Path, Path]:
    """A producer's self-signed certificate and key, made by openssl."""
    key, cert = directory / f"{name}key.pem", directory / f"{name}cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", f"/O=Grid/OU=Appliances/CN={name}"],
        capture_output=True,
        check=True,
    )
    return key, cert


@pytest.fixture
def producer(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "producer").mkdir()
    return credential(tmp_path / "producer", "alice")


@pytest.fixture
def trusting(tmp_path, clock, producer):
    """A service whose only trusted producer is alice, and which deploys only signed appliances."""
    producers = tmp_path / "producers"
    producers.mkdir()
    producers.joinpath("alice.pem").write_bytes(producer[1].read_bytes())
    config = make_config(tmp_path / "state").with_overrides("appliances", require_signed=True, producers_dir=producers)
    with running(config, clock) as both:
        yield both


def worker(repository: Path, producer: tuple[Path, Path], tmp_path: Path) -> Path:
    """The layered ``app`` appliance, described and signed into the repository as worker.xml."""
    custom = layer(repository / "custom.qcow2", layer(repository / "system.qcow2"))
    layer(repository / "app.qcow2", custom)
    unsigned, signed = tmp_path / "worker.xml", repository / "worker.xml"
    assert (
        appliance(
            ["describe", "--repository", str(repository), "--image", str(repository / "app.qcow2")]
            + ["--name", "worker", "--version", "1.0", "--arch", "x86_64", "--attribute", "role=torque-worker"]
            + ["-o", str(unsigned)]
        )
        == 0
    )
    key, cert = producer
    assert appliance(["sign", "--key", str(key), "--cert", str(cert), str(unsigned), "-o", str(signed)]) == 0
    return signed


def create(gt4, location: str):
    metadata = etree.parse(str(SAMPLES / "workspace.xml")).getroot()
    metadata.find(".//{*}rootVBD/{*}location").text = location
    request = etree.parse(str(SAMPLES / "deployment-request.xml")).getroot()
    return gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request))


def refused(service, gt4, location: str) -> str:
    before = rows(service)
    with pytest.raises(SoapFault) as raised:
        create(gt4, location)
    assert raised.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert rows(service) == before and service.manager.workspaces(SERVICE) == []
    cache = service.config.service.state_dir / "nodes" / "node1" / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # nothing was propagated
    return " ".join(raised.value.detail.itertext())


def test_a_signed_appliance_from_a_trusted_producer_deploys_its_layers(trusting, producer, tmp_path):
    service, gt4 = trusting
    signed = worker(service.pool.repository.root, producer, tmp_path)
    (epr,) = created_eprs(create(gt4, "file://worker.xml"))
    assert gt4.state(epr) == "Running"
    workspace = service.manager.get(SERVICE, int(epr.key(qname(WORKSPACE, "WorkspaceKey"))))
    overlay = service.config.service.state_dir / "nodes" / "node1" / "domains" / workspace.domain / "root.qcow2"
    assert reads(overlay, "system") and reads(overlay, "custom") and reads(overlay, "app")
    assert b"worker" in signed.read_bytes()


def test_xmlsec1_accepts_what_vws_appliance_signs_and_refuses_it_tampered(producer, tmp_path):
    repository = tmp_path / "repository"
    repository.mkdir()
    signed = worker(repository, producer, tmp_path)

    def xmlsec1(path: Path) -> int:
        command = ["xmlsec1", "--verify", "--trusted-pem", str(producer[1]), str(path)]
        return subprocess.run(command, capture_output=True).returncode

    assert xmlsec1(signed) == 0
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"torque-worker", b"anything-else"))
    assert xmlsec1(tampered) != 0


def test_vws_appliance_verify_names_the_producer_or_says_why_not(producer, tmp_path, capsys):
    repository = tmp_path / "repository"
    repository.mkdir()
    signed = worker(repository, producer, tmp_path)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    assert appliance(["verify", "--producers", str(trusted), str(signed)]) == 1
    assert "CN=alice,OU=Appliances,O=Grid, who is not a trusted producer" in capsys.readouterr().err
    trusted.joinpath("alice.pem").write_bytes(producer[1].read_bytes())
    assert appliance(["verify", "--producers", str(trusted), str(signed)]) == 0
    assert "worker 1.0: signed by CN=alice,OU=Appliances,O=Grid, a trusted producer" in capsys.readouterr().out


def test_an_unsigned_image_is_refused_when_only_signed_appliances_may_run(trusting, producer, tmp_path):
    service, gt4 = trusting
    worker(service.pool.repository.root, producer, tmp_path)
    assert "not a signed appliance" in refused(service, gt4, "file://app.qcow2")
    (service.pool.repository.root / "unsigned.xml").write_bytes((tmp_path / "worker.xml").read_bytes())
    assert "worker is not signed" in refused(service, gt4, "file://unsigned.xml")


def test_an_appliance_signed_by_an_untrusted_producer_is_refused(trusting, tmp_path):
    service, gt4 = trusting
    (tmp_path / "mallory").mkdir()
    worker(service.pool.repository.root, credential(tmp_path / "mallory", "mallory"), tmp_path)
    assert "CN=mallory,OU=Appliances,O=Grid, who is not a trusted producer" in refused(
        service, gt4, "file://worker.xml"
    )


def test_a_tampered_descriptor_is_refused(trusting, producer, tmp_path):
    service, gt4 = trusting
    signed = worker(service.pool.repository.root, producer, tmp_path)
    signed.write_bytes(signed.read_bytes().replace(b">1.0<", b">9.0<"))
    assert "does not verify" in refused(service, gt4, "file://worker.xml")


def test_layers_that_differ_from_the_signed_digests_are_refused(trusting, producer, tmp_path):
    service, gt4 = trusting
    worker(service.pool.repository.root, producer, tmp_path)
    custom = service.pool.repository.root / "custom.qcow2"
    subprocess.run(["qemu-io", "-c", "write -P 0x66 4M 64k", str(custom)], capture_output=True, check=True)
    description = refused(service, gt4, "file://worker.xml")
    assert "layer 2 of 3 (from the bottom) has sha256" in description and "its producer signed" in description


def test_a_named_descriptor_is_checked_even_where_unsigned_images_may_run(service, gt4, producer, tmp_path):
    worker(service.pool.repository.root, producer, tmp_path)  # nobody is trusted here
    assert "who is not a trusted producer" in refused(service, gt4, "file://worker.xml")
    (epr,) = created_eprs(create(gt4, "file://app.qcow2"))  # a plain image still deploys
    assert gt4.state(epr) == "Running"


def test_layers_changed_after_acceptance_are_not_copied(tmp_path):
    """The digests a signed descriptor was accepted with travel with the request, and are checked
    again just before the layers are copied to the node."""
    store, pool = open_pool(tmp_path / "state")
    repository = pool.repository.root
    layer(repository / "app.qcow2", layer(repository / "custom.qcow2", layer(repository / "system.qcow2")))
    accepted = pool.layer_digests("file://app.qcow2")
    qemu_io("-c", "write -P 0x66 4M 64k", str(repository / "custom.qcow2"))
    machine = MachineRequest(memory_mb=256, root=DiskRequest("file://app.qcow2", "sda1", layers=accepted))
    placement = reserve(store, pool, machine)[0]
    with pytest.raises(InvalidMetadata, match="changed since its signed descriptor was checked"):
        pool.define(placement, machine)
    assert not (tmp_path / "state" / "nodes" / "node1" / "cache").exists()
