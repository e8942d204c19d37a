"""Appliances as stacks of qcow2 layers: each layer backed by the one below, cached by digest.

In the repository a layer names the one below by a path (relative to its own directory, as
qemu reads it), which must lie inside the repository. On a node every layer is cached once,
shared by every workspace and appliance whose chain holds it, under a key made of digests
only: the bottom layer's is its sha256, an upper layer's the sha256 of its own digest and
the key below (so a layer rebuilt below makes new keys above it, never a stale chain). A
cached upper layer's backing file is the lower layer's key, relative (``qemu-img rebase
-u``), which resolves next to it in a node's cache directory and in an upload node's
storage pool alike. Propagation copies only the layers a node lacks; eviction never takes a
layer a cached layer above it still names (``cache.room_for``).
"""

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vws.affinity import unpinned
from vws.errors import BackendError, InvalidMetadata
from vws.pool import qcow2
from vws.pool.progress import Progress, ignore
from vws.pool.storage.cache import BaseCache, cached_base
from vws.pool.storage.repository import checksum
from vws.store.database import Store

MAX_LAYERS = 16  # deeper chains are refused: each layer is one more file qemu opens per disk


@dataclass(frozen=True)
class Layer:
    path: Path  # the repository file
    format: str  # raw for a bottom layer that is a plain disk; qcow2 otherwise


def chain(root: Path, top: Path) -> list[Layer]:
    """The layers of repository image ``top``, bottom first; InvalidMetadata for a chain that
    leaves the repository, loops, names a missing file or is deeper than MAX_LAYERS."""
    layers = [Layer(top, qcow2.detect_format(top))]
    while (named := qcow2.backing(layers[-1].path)) is not None:
        name, fmt = named
        below = (layers[-1].path.parent / name).resolve()
        what = f"layer {layers[-1].path.name} is backed by {name}"
        if below != root and root not in below.parents:
            raise InvalidMetadata(f"{what}, outside the image repository")
        if not below.is_file():
            raise InvalidMetadata(f"{what}, which is not in the repository")
        if any(layer.path == below for layer in layers) or len(layers) >= MAX_LAYERS:
            raise InvalidMetadata(f"{what}: a chain must end within {MAX_LAYERS} layers without a loop")
        layers.append(Layer(below, fmt or qcow2.detect_format(below)))
    return layers[::-1]


def key(digest: str, below: str | None) -> str:
    """A cached layer's name: its digest alone at the bottom, else bound to the key below it."""
    return digest if below is None else hashlib.sha256(f"{digest}:{below}".encode()).hexdigest()


def cached(cache: BaseCache, store: Store, root: Path, top: Path, progress: Progress = ignore) -> Path:
    """The node's cached copy of ``top`` with every layer below it, copying only those missing."""
    below: tuple[str, str] | None = None  # (key, format) of the layer just cached
    base = None
    for layer in chain(root, top):
        name = key(checksum(store, layer.path), below and below[0])
        base = cached_base(cache, layer.path, name, progress, below)
        below = (name, layer.format)
    assert base is not None  # a chain has at least its top
    return base


def rebase(path: Path, backing: tuple[str, str]) -> None:
    """Point the qcow2 ``path`` at ``backing`` (name, format) without touching its data."""
    name, fmt = backing
    with unpinned():
        result = subprocess.run(
            ["qemu-img", "rebase", "-u", "-b", name, "-F", fmt, str(path)], capture_output=True, text=True
        )
    if result.returncode:
        raise BackendError(f"qemu-img rebase of {path.name} failed: {result.stderr.strip() or result.returncode}")
