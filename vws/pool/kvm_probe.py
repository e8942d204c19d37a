"""Does kvm really run guests on a node? One probe boot says, for ``[pool] virt_type = auto``.

Capabilities offering kvm are not enough: a ``/dev/kvm`` may start guests and then run them
far slower than TCG (a PVM backend, as on the machines vws is developed on, runs the early
code of a stock kernel emulated: Debian's kernel takes minutes to decompress). So the probe
boots a tiny kernel under kvm (``kvm_probe.S``, assembled into ``PROBE_KERNEL``): it enters
long mode, prints ``START`` on its serial console, writes 16 MiB a byte at a time as a
kernel decompressor does, and prints ``DONE``. Real KVM does that in milliseconds and TCG
in well under a second; kvm is used only where ``DONE`` shows within ``TIMEOUT``.
"""

import uuid
from dataclasses import dataclass
from pathlib import Path

from vws.errors import BackendError
from vws.pool.designer import KVM
from vws.pool.driver import Driver

PROBE_KERNEL = bytes.fromhex(
    "02b0ad1b00000100fe4f51e40000100000001000000000000000000020001000fabc00000800bf0000010031c0b9000c"
    "0000f3abc7050000010003100100c7050010010003200100bf00200100b8830000008907050000200083c70881ff0030"
    "010072ee0f20e083c8200f22e0b8000001000f22d8b9800000c00f320d000100000f300f20c00d010000800f22c00f01"
    "15f0001000ea9c0010000800488d3425f6001000e82800000048c7c70000000148c7c100000001880f48ffc748ffc975"
    "f6488d34250b011000e803000000f4ebfd66baf803ac84c07403eeebf8c36690000000000000000000000000009a2000"
    "0f00e00010005657532d4b564d2d50524f42452d53544152540a005657532d4b564d2d50524f42452d444f4e450a00"
)
STARTED = b"VWS-KVM-PROBE-START"
DONE = b"VWS-KVM-PROBE-DONE"
TIMEOUT = 15.0  # real KVM: well under a second, with the domain's start-up; PVM: minutes
_MEMORY_MB = 64  # the kernel at 1 MiB, its page tables below, its 16 MiB of work at 16 MiB


@dataclass(frozen=True)
class Verdict:
    kvm: bool
    reason: str  # why, for the log line


def probe(driver: Driver, kernel: Path, timeout: float = TIMEOUT) -> Verdict:
    """Whether a kvm guest runs on the driver's node; ``kernel`` is ``PROBE_KERNEL`` as the node sees it."""
    if KVM not in driver.virt_types():
        return Verdict(False, "its capabilities offer no kvm")
    try:
        console = driver.run_transient(domain_xml(KVM, kernel), DONE, timeout)
    except BackendError as exc:
        return Verdict(False, f"a kvm probe guest could not run: {exc.description}")
    if DONE in console:
        return Verdict(True, "a kvm probe guest ran")
    if STARTED in console:
        return Verdict(False, f"a kvm probe guest started but did not finish 16 MiB of work in {timeout:.0f} s")
    return Verdict(False, f"a kvm probe guest printed nothing in {timeout:.0f} s")


def domain_xml(virt_type: str, kernel: Path) -> str:
    """A transient, diskless domain booting ``kernel`` with a serial console to read."""
    return (
        f"<domain type='{virt_type}'><name>vws-kvm-probe-{uuid.uuid4().hex[:8]}</name>"
        f"<memory unit='MiB'>{_MEMORY_MB}</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64'>hvm</type><kernel>{kernel}</kernel></os>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>"
        "<devices><serial type='pty'><target port='0'/></serial>"
        "<console type='pty'><target type='serial' port='0'/></console></devices></domain>"
    )
