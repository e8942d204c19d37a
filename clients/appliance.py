"""``vws-appliance``: what an appliance's producer types to describe, layer, sign and check it.

    vws-appliance layer add --repository REPO --base system.qcow2 --from modified.img --name app.qcow2
    vws-appliance describe --repository REPO --image app.qcow2 --name worker --version 1.0 \\
        --arch x86_64 --attribute role=torque-worker -o worker.xml
    vws-appliance sign --key producerkey.pem --cert producercert.pem worker.xml -o REPO/worker.xml
    vws-appliance verify --producers DIR REPO/worker.xml

A descriptor names the appliance's top layer in the repository and the sha256 of each of
its layers, bottom first; a workspace whose root location names the signed descriptor
deploys that image once the service trusts the producer and finds those very layers.
``xmlsec1 --verify --trusted-pem producercert.pem worker.xml`` checks the signature too.

Exit status: 0 done (verified); 1 the descriptor is not trusted; 2 bad usage or input.
"""

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from lxml import etree

from vws.descriptor import Descriptor
from vws.errors import VwsError
from vws.security import appliances
from vws.xmlparse import parse

EXIT_UNTRUSTED, EXIT_USAGE = 1, 2


def describe(args: argparse.Namespace) -> int:
    repository = (args.repository or args.image.parent).resolve()
    image = _inside(args.image.resolve(), repository)
    vmm = args.vmm or []
    descriptor = Descriptor(
        name=args.name,
        version=args.version,
        image="file://" + image.relative_to(repository).as_posix(),
        layers=tuple(_sha256(layer) for layer in _chain(image, repository)),
        architecture=args.arch,
        vmm_type=vmm[0] if vmm else None,
        vmm_versions=tuple(vmm[1:]),
        kernel=args.kernel,
        attributes=tuple(_attribute(text) for text in args.attribute),
    )
    _write(appliances.to_xml(descriptor), args.output)
    return 0


def sign(args: argparse.Namespace) -> int:
    document = _read(args.descriptor)
    appliances.from_xml(document)  # a descriptor, complete, before it is signed
    signed = appliances.sign(document, args.key.read_bytes(), args.cert.read_bytes())
    _write(signed, args.output or args.descriptor)
    return 0


def verify(args: argparse.Namespace) -> int:
    producers = appliances.Producers.from_dir(args.producers)
    try:
        appliance = appliances.verify(args.descriptor.read_bytes(), producers)
    except appliances.ApplianceNotTrusted as refusal:
        print(f"vws-appliance: {refusal.description}", file=sys.stderr)
        return EXIT_UNTRUSTED
    print(f"{appliance.name} {appliance.version}: signed by {appliance.producer}, a trusted producer")
    print(f"  image {appliance.image}, {len(appliance.layers)} layer(s)")
    return 0


def layer_add(args: argparse.Namespace) -> int:
    """A new layer over ``--base`` holding what ``--from`` (a modified copy of it) changed."""
    repository = (args.repository or args.base.parent).resolve()
    base = _inside((repository / args.base).resolve(), repository)
    new = repository / args.name
    if new.exists():
        raise ValueError(f"{new} already exists")
    fmt = _info(base)["format"]
    _qemu_img("convert", "-q", "-O", "qcow2", "-B", base.name, "-F", fmt, str(args.source), str(new))
    print(f"{new.name}: a layer over {base.name} ({_info(new)['actual-size']} bytes)")
    return 0


# ---- helpers ---------------------------------------------------------------------------


def _chain(image: Path, repository: Path) -> list[Path]:
    """The image's layers, bottom first, each inside the repository (as the service requires)."""
    chain = json.loads(_qemu_img("info", "--backing-chain", "--output=json", str(image)))
    return [_inside(Path(entry["filename"]).resolve(), repository) for entry in reversed(chain)]


def _info(image: Path) -> dict:
    return json.loads(_qemu_img("info", "--output=json", str(image)))


def _inside(path: Path, repository: Path) -> Path:
    if repository not in path.parents:
        raise ValueError(f"{path} is not inside the repository {repository}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _attribute(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise ValueError(f"--attribute {text!r} is not NAME=VALUE")
    return name, value


def _read(path: Path) -> etree._Element:
    try:
        return parse(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def _write(document: etree._Element, output: Path | None) -> None:
    data = etree.tostring(document, xml_declaration=True, encoding="UTF-8")
    if output is None:
        sys.stdout.write(data.decode() + "\n")
    else:
        output.write_bytes(data)


def _qemu_img(*arguments: str) -> str:
    result = subprocess.run(["qemu-img", *arguments], capture_output=True, text=True)
    if result.returncode:
        raise ValueError(f"qemu-img failed: {result.stderr.strip()}")
    return result.stdout


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="vws-appliance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    actions = top.add_subparsers(dest="action", required=True)

    desc = actions.add_parser("describe", help="write an (unsigned) descriptor of an image in the repository")
    desc.add_argument("--image", type=Path, required=True, help="the appliance's top layer")
    desc.add_argument("--repository", type=Path, help="the image repository (default: the image's directory)")
    desc.add_argument("--name", required=True)
    desc.add_argument("--version", required=True)
    desc.add_argument("--arch", help="its CPU architecture (x86_64, aarch64, ...)")
    desc.add_argument("--vmm", nargs="+", metavar="TYPE_AND_VERSIONS", help="hypervisor type, then versions")
    desc.add_argument("--kernel", help="a kernel location in the repository")
    desc.add_argument("--attribute", action="append", default=[], metavar="NAME=VALUE")
    desc.add_argument("-o", "--output", type=Path)
    desc.set_defaults(run=describe)

    sig = actions.add_parser("sign", help="sign a descriptor as its producer (enveloped XML signature)")
    sig.add_argument("descriptor", type=Path)
    sig.add_argument("--key", type=Path, required=True, help="the producer's private key (PEM)")
    sig.add_argument("--cert", type=Path, required=True, help="the producer's certificate (PEM)")
    sig.add_argument("-o", "--output", type=Path, help="default: sign the file in place")
    sig.set_defaults(run=sign)

    ver = actions.add_parser("verify", help="check a descriptor's signature against the trusted producers")
    ver.add_argument("descriptor", type=Path)
    ver.add_argument("--producers", type=Path, required=True, help="directory of trusted producers' certificates")
    ver.set_defaults(run=verify)

    layer = actions.add_parser("layer", help="build appliance layers").add_subparsers(dest="layer", required=True)
    add = layer.add_parser("add", help="a new qcow2 layer over an image, from a modified copy of it")
    add.add_argument("--base", type=Path, required=True, help="the image (in the repository) to build over")
    add.add_argument("--from", dest="source", type=Path, required=True, help="a modified copy of the base")
    add.add_argument("--name", required=True, help="the new layer's file name in the repository")
    add.add_argument("--repository", type=Path, help="the image repository (default: the base's directory)")
    add.set_defaults(run=layer_add)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (VwsError, ValueError, OSError) as exc:
        print(f"vws-appliance: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
