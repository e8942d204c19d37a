"""Appliances named by their descriptors: trusted, and their layers what will be deployed.

Before a request is reserved, a root disk whose location names an appliance descriptor in
the image repository is checked and replaced by the appliance's top layer: the descriptor
must verify (``verify``, injected from the security layer: a signature that fails or a
producer not trusted refuse it), and the sha256 of each layer of that image's chain must
be the descriptor's, bottom first. With ``[appliances] require_signed`` every root must be
such an appliance. A root may also name a catalogue entry, ``appliance:NAME[/VERSION]``: the
catalogue is every descriptor in the repository that a trusted producer signed. Each refusal
is InvalidMetadata (a WorkspaceMetadataFault), raised before anything is written or copied.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from vws.descriptor import Descriptor
from vws.errors import InvalidMetadata
from vws.pool.manager import PoolManager
from vws.workspace.request import DeploymentRequest, Vmm

Verify = Callable[[bytes], Descriptor]
CATALOGUE_SCHEME = "appliance:"  # a root location naming a catalogue entry: appliance:NAME[/VERSION]


@dataclass(frozen=True)
class Entry:
    """One appliance in the catalogue: the descriptor's repository location and what it says."""

    location: str
    appliance: Descriptor

    @property
    def address(self) -> str:
        """How a root location names it."""
        return f"{CATALOGUE_SCHEME}{self.appliance.name}/{self.appliance.version}"


def _version_key(version: str) -> tuple:
    """1.10 after 1.9: numeric parts compare as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in version.split("."))


class Appliances:
    def __init__(self, pool: PoolManager, verify: Verify, require_signed: bool) -> None:
        self._pool = pool
        self._verify = verify
        self._require_signed = require_signed

    def catalogue(self) -> list[Entry]:
        """The appliances a user may deploy: every descriptor in the repository a trusted producer
        signed, by name and version."""
        entries = []
        for location, data in self._pool.descriptors():
            try:
                entries.append(Entry(location, self._verify(data)))
            except InvalidMetadata:  # unsigned, tampered with, or not a trusted producer's: not offered
                continue
        return sorted(entries, key=lambda entry: (entry.appliance.name, _version_key(entry.appliance.version)))

    def resolve(self, request: DeploymentRequest) -> DeploymentRequest:
        """``request`` with a descriptor's appliance in place of its root location, once trusted."""
        root = request.machine.root
        if root is None:
            return request
        if root.location.startswith(CATALOGUE_SCHEME):
            appliance = self._entry(root.location).appliance
        else:
            data = self._pool.descriptor(root.location)
            if data is None:
                if self._require_signed:
                    raise InvalidMetadata(
                        f"image {root.location} is not a signed appliance, and this service deploys only those "
                        "([appliances] require_signed)"
                    )
                return request
            appliance = self._verify(data)
        self._check_layers(appliance)
        machine = request.machine
        machine = replace(
            machine,
            root=replace(root, location=appliance.image, layers=appliance.layers),  # checked again when copied
            architecture=machine.architecture or appliance.architecture,
            vmm=machine.vmm or (Vmm(appliance.vmm_type, appliance.vmm_versions) if appliance.vmm_type else None),
        )
        return replace(request, machine=machine)

    def _entry(self, location: str) -> "Entry":
        """The catalogue entry ``appliance:NAME[/VERSION]`` names (its latest version without one)."""
        name, _, version = location[len(CATALOGUE_SCHEME) :].partition("/")
        entries = [entry for entry in self.catalogue() if entry.appliance.name == name]
        matching = [entry for entry in entries if not version or entry.appliance.version == version]
        if not matching:
            offered = ", ".join(entry.address for entry in entries) or "none by that name"
            raise InvalidMetadata(f"{location} is not in the appliance catalogue (offered: {offered})")
        return matching[-1]

    def _check_layers(self, appliance: Descriptor) -> None:
        deployed = self._pool.layer_digests(appliance.image)
        label = f"appliance {appliance.name} {appliance.version}"
        if len(deployed) != len(appliance.layers):
            raise InvalidMetadata(
                f"{label} lists {len(appliance.layers)} layers; {appliance.image} has {len(deployed)}"
            )
        for index, (signed, found) in enumerate(zip(appliance.layers, deployed, strict=True)):
            if signed != found:
                raise InvalidMetadata(
                    f"{label}: layer {index + 1} of {len(deployed)} (from the bottom) has sha256 {found}, "
                    f"not the {signed} its producer signed"
                )
