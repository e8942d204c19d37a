"""Appliance descriptors: their XML, and their producers' enveloped XML signatures (signxml).

A descriptor (``app:appliance``) says what an appliance is: its name, version, producer,
architecture, VMM, kernel, the repository location of its top layer, the sha256 of each
layer (bottom first) and free attributes. Its producer signs it whole (an enveloped
signature over the document, exclusive c14n, RSA-SHA256, the signing certificate in
KeyInfo), which ``xmlsec1 --verify`` accepts as well. A descriptor is trusted when its
signature verifies with the certificate it carries and that certificate is one of the
trusted producers' (PEM files in a directory, like the CA trust dir). What is acted on is
what the signature covers: the descriptor is read from the tree signxml returns as signed.
"""

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier, methods
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration

from vws.descriptor import Descriptor
from vws.errors import InvalidMetadata
from vws.xmlns import APPLIANCES, DS, qname
from vws.xmlparse import parse

DESCRIPTOR = qname(APPLIANCES, "appliance")
C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
# One reference (the whole document), SHA-2 only, the signer's certificate required.
_EXPECTED = SignatureConfiguration(
    require_x509=True,
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}),
)


class ApplianceNotTrusted(InvalidMetadata):
    """A descriptor that is unsigned, whose signature fails, or whose producer is not trusted."""


def is_descriptor(data: bytes) -> bool:
    """Whether ``data`` looks like a descriptor document (an image never starts with ``<``)."""
    return data.lstrip()[:1] == b"<" and DESCRIPTOR.split("}")[0][1:].encode() in data[:4096]


def to_xml(descriptor: Descriptor) -> etree._Element:
    """The unsigned descriptor document."""
    root = etree.Element(DESCRIPTOR, nsmap={"app": APPLIANCES})

    def add(tag: str, text: str | None, **attributes: str) -> None:
        if text is not None:
            etree.SubElement(root, qname(APPLIANCES, tag), **attributes).text = text

    add("name", descriptor.name)
    add("version", descriptor.version)
    add("producer", descriptor.producer)
    add("architecture", descriptor.architecture)
    if descriptor.vmm_type:
        vmm = etree.SubElement(root, qname(APPLIANCES, "vmm"))
        etree.SubElement(vmm, qname(APPLIANCES, "type")).text = descriptor.vmm_type
        for version in descriptor.vmm_versions:
            etree.SubElement(vmm, qname(APPLIANCES, "version")).text = version
    add("kernel", descriptor.kernel)
    add("image", descriptor.image)
    for digest in descriptor.layers:
        etree.SubElement(root, qname(APPLIANCES, "layer"), sha256=digest)
    for name, value in descriptor.attributes:
        add("attribute", value, name=name)
    return root


def from_xml(root: etree._Element) -> Descriptor:
    """The descriptor in ``root`` (signed or not); InvalidMetadata when it is not one."""
    if root.tag != DESCRIPTOR:
        raise InvalidMetadata(f"not an appliance descriptor: the document is {root.tag}")

    def text(path: str) -> str | None:
        found = root.findtext(path.replace("app:", f"{{{APPLIANCES}}}"))
        return found.strip() if found and found.strip() else None

    name, version, image = text("app:name"), text("app:version"), text("app:image")
    if not (name and version and image):
        raise InvalidMetadata("an appliance descriptor needs a name, a version and an image")
    return Descriptor(
        name=name,
        version=version,
        image=image,
        layers=tuple(layer.get("sha256", "") for layer in root.iterfind(qname(APPLIANCES, "layer"))),
        producer=text("app:producer") or "",
        architecture=text("app:architecture"),
        vmm_type=text("app:vmm/app:type"),
        vmm_versions=tuple(
            (element.text or "").strip() for element in root.iterfind(f"{{{APPLIANCES}}}vmm/{{{APPLIANCES}}}version")
        ),
        kernel=text("app:kernel"),
        attributes=tuple(
            (element.get("name", ""), (element.text or "").strip())
            for element in root.iterfind(qname(APPLIANCES, "attribute"))
        ),
    )


def sign(document: etree._Element, key_pem: bytes, certificate_pem: bytes) -> etree._Element:
    """``document`` with its producer's enveloped signature, the producer element naming the signer."""
    producer = document.find(qname(APPLIANCES, "producer"))
    if producer is None:
        producer = etree.Element(qname(APPLIANCES, "producer"))
        document.insert(2, producer)
    producer.text = subject(x509.load_pem_x509_certificate(certificate_pem))
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=C14N,
    )
    return signer.sign(document, key=key_pem, cert=certificate_pem.decode())


@dataclass(frozen=True)
class Producers:
    """The trusted producers: their certificates, read from a directory of PEM files."""

    certificates: tuple[x509.Certificate, ...]

    @classmethod
    def from_dir(cls, directory: Path | None) -> "Producers":
        if directory is None or not directory.is_dir():
            return cls(())
        return cls(tuple(_certificates(sorted(directory.glob("*.pem")))))

    def trusts(self, certificate: x509.Certificate) -> bool:
        return certificate in self.certificates


def verify(data: bytes, producers: Producers) -> Descriptor:
    """The descriptor ``data`` signs, with ``producer`` the signer's DN; ApplianceNotTrusted
    when it is unsigned, its signature does not verify, or its signer is not a trusted producer."""
    root = parse(data)
    signature = root.find(qname(DS, "Signature"))
    if signature is None:
        raise ApplianceNotTrusted(f"appliance {_label(root)} is not signed")
    certificate = _signing_certificate(signature, root)
    if not producers.trusts(certificate):
        raise ApplianceNotTrusted(
            f"appliance {_label(root)} is signed by {subject(certificate)}, who is not a trusted producer"
        )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    try:
        verified = XMLVerifier().verify(root, x509_cert=pem, expect_config=_EXPECTED)
    except (InvalidSignature, InvalidInput) as exc:
        raise ApplianceNotTrusted(f"the signature of appliance {_label(root)} does not verify: {exc}") from None
    signed = verified.signed_xml  # the signed descriptor, and nothing the signature leaves out
    if signed is None or signed.tag != DESCRIPTOR:
        raise ApplianceNotTrusted(f"the signature of appliance {_label(root)} does not cover the descriptor")
    descriptor = from_xml(signed)
    return Descriptor(**{**descriptor.__dict__, "producer": subject(certificate)})


def subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _signing_certificate(signature: etree._Element, root: etree._Element) -> x509.Certificate:
    certificates = signature.findall(f".//{{{DS}}}X509Certificate")
    if len(certificates) != 1:
        raise ApplianceNotTrusted(f"appliance {_label(root)}'s signature must carry its signer's one certificate")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((certificates[0].text or "").split())))
    except ValueError:
        raise ApplianceNotTrusted(f"appliance {_label(root)}'s signing certificate cannot be read") from None


def _label(root: etree._Element) -> str:
    return root.findtext(qname(APPLIANCES, "name")) or "(unnamed)"


def _certificates(paths: Iterable[Path]) -> Iterable[x509.Certificate]:
    for path in paths:
        yield from x509.load_pem_x509_certificates(path.read_bytes())
