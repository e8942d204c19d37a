"""An appliance descriptor as the service acts on it: what a producer signed, no XML.

The XML form (``app:appliance`` in the APPLIANCES namespace, with an enveloped signature) is
read and written in ``vws.security.appliances``; the workspace layer sees only this.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Descriptor:
    name: str
    version: str
    image: str  # the repository location of its top layer
    layers: tuple[str, ...]  # the sha256 of each layer, bottom first
    producer: str = ""  # the signer's subject DN once verified; as written before
    architecture: str | None = None
    vmm_type: str | None = None
    vmm_versions: tuple[str, ...] = ()
    kernel: str | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())
