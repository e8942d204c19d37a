"""A tiny real guest: Debian's kernel, a busybox initramfs running ``guest_init.sh``, a base disk.

Built once per input set and cached: the key names the kernel package and version and hashes
the recipe (init script, busybox binary, module list, disk layout), so a new kernel or a new
script gives a new entry and nothing else rebuilds. Nothing is installed on the host: the
kernel package is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``.
"""

import fcntl
import gzip
import hashlib
import lzma
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.integration.proc import CommandFailed, run

DEFAULT_CACHE_DIR = Path(os.environ.get("VWS_TEST_GUEST_CACHE", "/var/cache/vws-test-guest"))
KERNEL_METAPACKAGE = "linux-image-amd64"
# What /init loads (plus their modules.dep dependencies): PCI virtio, its disks, the ISO drive,
# and the NIC a context member's agent reaches the broker through.
MODULES = ("virtio_pci", "virtio_blk", "isofs", "virtio_net")
INIT_SCRIPT = Path(__file__).with_name("guest_init.sh")
BUSYBOX = Path("/bin/busybox")  # busybox-static: the initramfs has no libc
BASE_SIZE = 16 * 1024 * 1024
BASE_HEAD = b"VWS-BASE-IMAGE\n"  # sector 0 of the base disk; the guest reports its first word
RECIPE_VERSION = "1"  # bump when this file changes what it builds
KEEP_ENTRIES = 3  # cached builds kept (other checkouts may use other recipes)

# The guest's console protocol (guest_init.sh).
CMDLINE = "console=ttyS0 quiet panic=-1"
BOOTED = "VWS-GUEST-BOOTED"
WROTE = "VWS-GUEST-WROTE"
ERROR = "VWS-GUEST-ERROR"
CTX = "VWS-CTX"
MARKER_OFFSET = 2048 * 512  # where the guest writes its marker on the root disk


def marker(hostname: str) -> bytes:
    """What the guest writes at MARKER_OFFSET of its root disk."""
    return f"VWS-OVERLAY-WRITE-{hostname}\n".encode()


@dataclass(frozen=True)
class GuestImage:
    kernel: Path  # vmlinuz
    initrd: Path  # initrd.img (gzip'd newc cpio)
    base: Path  # base.qcow2, BASE_SIZE bytes virtual
    key: str  # cache entry name: <kernel package>_<version>+<recipe hash>

    @property
    def vmlinuz(self) -> Path:
        return self.kernel

    @property
    def base_qcow2(self) -> Path:
        return self.base


@dataclass(frozen=True)
class KernelPackage:
    name: str
    version: str


def unavailable_reason(cache_dir: Path = DEFAULT_CACHE_DIR) -> str | None:
    """Why the guest cannot be built here, or None."""
    missing = [tool for tool in ("apt-get", "apt-cache", "dpkg-deb", "cpio", "qemu-img") if not shutil.which(tool)]
    if not BUSYBOX.exists():
        missing.append(f"{BUSYBOX} (busybox-static)")
    if missing:
        return f"cannot build the test guest, missing: {', '.join(missing)}"
    existing = next(path for path in (cache_dir, *cache_dir.parents) if path.exists())
    if not os.access(existing, os.W_OK):
        return f"cannot write the guest cache {cache_dir} (set VWS_TEST_GUEST_CACHE)"
    return None


def build_guest(cache_dir: Path = DEFAULT_CACHE_DIR) -> GuestImage:
    """The cached guest for the current kernel package and recipe, built if absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        package = _resolve_kernel()
        image = _image(cache_dir, package)
        if not _complete(image):
            image = _build(cache_dir, package)
        os.utime(image.kernel.parent)  # most recently used, for _prune
        _prune(cache_dir)
    return image


def _image(cache_dir: Path, package: KernelPackage) -> GuestImage:
    key = f"{package.name}_{package.version}+{_recipe_hash()}"
    entry = cache_dir / key
    return GuestImage(entry / "vmlinuz", entry / "initrd.img", entry / "base.qcow2", key)


def _complete(image: GuestImage) -> bool:
    # Entries appear by one rename of a finished directory, so all three or none exist.
    return all(path.is_file() for path in (image.kernel, image.initrd, image.base))


def _recipe_hash() -> str:
    digest = hashlib.sha256(RECIPE_VERSION.encode())
    digest.update(INIT_SCRIPT.read_bytes())
    digest.update(BUSYBOX.read_bytes())
    digest.update(repr((MODULES, BASE_SIZE, BASE_HEAD)).encode())
    return digest.hexdigest()[:12]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _resolve_kernel() -> KernelPackage:
    """The versioned kernel package the metapackage's candidate depends on."""
    try:
        return parse_kernel_depends(_apt_show(KERNEL_METAPACKAGE))
    except (CommandFailed, LookupError):
        _apt_update()  # no or stale package lists (e.g. a fresh container)
        return parse_kernel_depends(_apt_show(KERNEL_METAPACKAGE))


def _apt_show(package: str) -> str:
    return run(["apt-cache", "show", "--no-all-versions", package]).decode()


def parse_kernel_depends(show: str) -> KernelPackage:
    found = re.search(r"^Depends:.*?\b(linux-image-[^\s,(]+)\s*\(=\s*([^)\s]+)\)", show, re.MULTILINE)
    if not found:
        raise LookupError(f"{KERNEL_METAPACKAGE} names no versioned kernel package:\n{show}")
    return KernelPackage(found[1], found[2])


def _apt_update() -> None:
    run(["apt-get", "update", "-qq"])


def _build(cache_dir: Path, package: KernelPackage) -> GuestImage:
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as scratch:
        work = Path(scratch)
        try:
            deb = _download(package, work)
        except CommandFailed:
            _apt_update()  # the lists named a version the mirror no longer has
            package = _resolve_kernel()
            deb = _download(package, work)
        image = _image(cache_dir, package)
        if _complete(image):
            return image
        out = work / "out"
        out.mkdir()
        _unpack_kernel(deb, work / "root", out)
        _make_base(out / "base.qcow2")
        entry = image.kernel.parent
        shutil.rmtree(entry, ignore_errors=True)
        out.rename(entry)
    return image


def _download(package: KernelPackage, work: Path) -> Path:
    # As root apt would drop to the _apt user, which cannot write to our scratch dir.
    sandbox = "APT::Sandbox::User=root"
    run(["apt-get", "download", "-q", "-o", sandbox, f"{package.name}={package.version}"], cwd=work)
    return next(work.glob(f"{package.name}_*.deb"))


def _unpack_kernel(deb: Path, root: Path, out: Path) -> None:
    run(["dpkg-deb", "-x", deb, root])
    (vmlinuz,) = root.glob("boot/vmlinuz-*")
    shutil.copyfile(vmlinuz, out / "vmlinuz")
    modules_dir = _modules_dir(root)
    _depmod(modules_dir)
    _make_initrd(modules_dir, out / "initrd.img")


def _modules_dir(root: Path) -> Path:
    """lib/modules/<release> (usr/lib/modules/<release> on merged-/usr packages)."""
    (order,) = [*root.glob("lib/modules/*/modules.order"), *root.glob("usr/lib/modules/*/modules.order")]
    return order.parent


def _depmod(modules_dir: Path) -> None:
    """Debian's package ships no modules.dep (its postinst makes it): busybox makes one."""
    base = modules_dir.parent.parent.parent  # the dir holding lib/modules
    run([BUSYBOX, "depmod", "-b", base, modules_dir.name])


def load_order(modules_dep: str, builtin: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """modules.dep paths to insmod, dependencies first, for the wanted module names."""
    deps = {}
    for line in modules_dep.splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {_module_name(path): path for path in deps}
    built_in = {_module_name(path) for path in builtin}
    order: list[str] = []

    def visit(path: str) -> None:
        if path not in order:
            for dependency in deps[path]:
                visit(dependency)
            order.append(path)

    for name in wanted:
        if name in built_in:
            continue
        if name not in by_name:
            raise LookupError(f"kernel module {name} is neither built in nor in modules.dep")
        visit(by_name[name])
    return order


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def _make_initrd(modules_dir: Path, initrd: Path) -> None:
    stage = initrd.parent / "initramfs"
    for directory in ("bin", "etc", "lib/modules"):
        (stage / directory).mkdir(parents=True)
    shutil.copy2(INIT_SCRIPT, stage / "init")
    (stage / "init").chmod(0o755)
    shutil.copy2(BUSYBOX, stage / "bin/busybox")
    modules_dep = (modules_dir / "modules.dep").read_text()
    builtin = (modules_dir / "modules.builtin").read_text().split()
    names = []
    for path in load_order(modules_dep, builtin, MODULES):
        names.append(_module_name(path))
        (stage / f"lib/modules/{names[-1]}.ko").write_bytes(_module_bytes(modules_dir / path))
    (stage / "etc/vws-modules").write_text("".join(f"{name}\n" for name in names))
    initrd.write_bytes(gzip.compress(_cpio(stage), mtime=0))
    shutil.rmtree(stage)


def _module_bytes(path: Path) -> bytes:
    if path.name.endswith(".ko"):
        return path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    raise ValueError(f"cannot decompress kernel module {path}")


def _cpio(stage: Path) -> bytes:
    """A newc archive of the staging tree, root-owned, in sorted order."""
    names = sorted(str(path.relative_to(stage)) for path in stage.rglob("*"))
    listing = "".join(f"{name}\n" for name in names).encode()
    return run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=stage, stdin=listing)


def _make_base(qcow2: Path) -> None:
    raw = qcow2.with_suffix(".raw")
    with open(raw, "wb") as disk:
        disk.write(BASE_HEAD)
        disk.truncate(BASE_SIZE)
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
    raw.unlink()


def _prune(cache_dir: Path) -> None:
    """Keep the KEEP_ENTRIES most recently used entries; scratch dirs of killed builds go too."""
    entries = sorted(
        (path for path in cache_dir.iterdir() if path.is_dir()), key=lambda path: path.stat().st_mtime, reverse=True
    )
    for stale in [path for path in entries if path.name.startswith(".build-")]:
        shutil.rmtree(stale, ignore_errors=True)
    for old in [path for path in entries if not path.name.startswith(".")][KEEP_ENTRIES:]:
        shutil.rmtree(old, ignore_errors=True)
