"""The domain types a node's guests may run under.

With ``[pool] virt_type = auto``, kvm counts only where the node offers it and a probe
guest really ran under it (``kvm_probe``): probed once per node and URI, concurrent
defines waiting for the one verdict.
"""

import logging
from pathlib import Path

from vws.pool import designer, kvm_probe
from vws.pool.driver import Driver
from vws.pool.progress import Progress, ignore
from vws.pool.storage.files import DomainFiles
from vws.pool.storage.locks import acquire, keyed_lock

log = logging.getLogger(__name__)


class VirtTypes:
    def __init__(self, wanted: str, state_dir: Path) -> None:
        self._wanted = wanted
        self._probe_file = state_dir / "kvm-probe.bin"
        self.verdicts: dict[tuple[str, str], bool] = {}  # (node, uri): does kvm really run there?

    def of(self, node: str, driver: Driver, files: DomainFiles, progress: Progress) -> frozenset[str]:
        """The node's domain types; with ``virt_type = auto``, kvm only where a probe guest ran."""
        offered = driver.virt_types()
        if self._wanted != designer.AUTO or designer.KVM not in offered:
            return offered
        return offered if self._kvm_runs(node, driver, files, progress) else offered - {designer.KVM}

    def _kvm_runs(self, node: str, driver: Driver, files: DomainFiles, progress: Progress) -> bool:
        key = (node, driver.uri)
        with acquire(keyed_lock(("kvm probe", *key)), progress):
            if key not in self.verdicts:
                verdict = kvm_probe.probe(driver, files.boot_file(self._probe_kernel(), ignore))
                kind = "kvm" if verdict.kvm else "qemu (TCG)"
                log.info("node %s runs its guests under %s: %s", node, kind, verdict.reason)
                self.verdicts[key] = verdict.kvm
            return self.verdicts[key]

    def _probe_kernel(self) -> Path:
        path = self._probe_file
        with keyed_lock(path):  # nodes probed at once share the file
            if not path.exists() or path.read_bytes() != kvm_probe.PROBE_KERNEL:
                partial = path.with_name(path.name + ".partial")
                partial.write_bytes(kvm_probe.PROBE_KERNEL)
                partial.replace(path)
        return path
