"""One libvirt connection to one node, behind a small contract every URI satisfies.

The same class serves ``test:///path/node.xml`` (unit tests, the embedded default),
``qemu:///system``, ``qemu+ssh://host/system`` and ``qemu+tls://host/system``.

- ``libvirt.libvirtError`` becomes ``BackendError`` (``DomainMissing`` when the domain is
  not there) in one place, ``translated``, carrying libvirt's own message (``volumes.py``
  uses it too, over ``connection``, for the storage API).
- Lifecycle events run on one process-wide event-loop thread (libvirt wants its event
  implementation registered before any connection opens) and are handed upward as
  ``on_event(node, domain, event)`` with plain strings, so this module never imports
  the layers above it.
- Every action that changes a domain is one line on the logger ``vws.libvirt`` (node,
  domain, action, outcome, duration): INFO when it worked or found no such domain
  (outcome=missing), WARNING when it failed.
- ``shutdown`` asks the guest to power off, waits at most ``wait`` seconds (woken by the
  STOPPED event, polling as a fallback), then destroys it: a caller never blocks longer.
"""

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import libvirt
from lxml import etree

from vws.clock import Clock
from vws.errors import BackendError
from vws.pool import testnode
from vws.pool.domain_xml import VWS_NS, owner_of

log = logging.getLogger(__name__)
actions_log = logging.getLogger("vws.libvirt")

EventCallback = Callable[[str, str, str], None]

# Domain states as the pool reports them upward.
RUNNING = "running"
PAUSED = "paused"
SHUTOFF = "shutoff"
CRASHED = "crashed"
MISSING = "missing"

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: RUNNING,
    libvirt.VIR_DOMAIN_RUNNING: RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: RUNNING,  # Xen: running with idle vCPUs
    libvirt.VIR_DOMAIN_SHUTDOWN: RUNNING,  # shutting down, still running
    libvirt.VIR_DOMAIN_PAUSED: PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: CRASHED,
}

_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
# STOPPED details that mean the guest died rather than was stopped.
_DIED = {libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED}


class DomainMissing(BackendError):
    """The node has no domain by that name."""


@dataclass(frozen=True)
class Capacity:
    memory_mb: int
    cpus: int


@dataclass(frozen=True)
class OwnedDomain:
    workspace_id: int
    state: str


@contextmanager
def translated(node: str, action: str, name: str | None = None) -> Iterator[None]:
    """The one place libvirtError becomes a vws error, with libvirt's message."""
    try:
        yield
    except libvirt.libvirtError as exc:
        subject = f" {name}" if name else ""
        message = f"{node}: {action}{subject} failed: {exc.get_error_message() or exc}"
        kind = DomainMissing if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN else BackendError
        raise kind(message, cause=str(exc)) from None


@contextmanager
def logged(node: str, action: str, name: str, clock: Clock) -> Iterator[None]:
    """``translated``, and the action's log line; its fields ride on the record for a structured handler."""
    started = clock.monotonic()
    outcome, level, error = "ok", logging.INFO, ""
    try:
        with translated(node, action, name):
            yield
    except DomainMissing:  # often what the caller wanted (a remove of what is gone): it decides
        outcome = "missing"
        raise
    except BackendError as exc:
        outcome, level, error = "failed", logging.WARNING, f' error="{exc.description}"'
        raise
    finally:
        ms = (clock.monotonic() - started) * 1000
        fields = {"node": node, "domain": name, "action": action, "outcome": outcome, "ms": ms}
        actions_log.log(
            level,
            'node=%s domain=%s action="%s" outcome=%s ms=%.1f%s',
            node,
            name,
            action,
            outcome,
            ms,
            error,
            extra={"libvirt_action": fields},
        )


_loop_guard = threading.Lock()
_loop_thread: threading.Thread | None = None


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it on one daemon thread, once."""
    global _loop_thread
    with _loop_guard:
        if _loop_thread is not None:
            return
        libvirt.registerErrorHandler(lambda *_: None, None)  # errors arrive as exceptions instead
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True)
        _loop_thread.start()


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


class _Console:
    """A console stream's output, collected on the event-loop thread until a marker shows."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.output = b""
        self.ended = threading.Event()

    def read(self, stream: libvirt.virStream, _events: int, _opaque: object) -> None:
        try:
            data = stream.recv(4096)
        except libvirt.libvirtError:
            data = b""  # the domain went away: the console ended
        if data == -2:  # nothing to read after all
            return
        self.output += data
        if not data or self.marker in self.output:
            self.ended.set()


def _quietly(call: Callable[[], object]) -> None:
    """Tear-down of what may already be gone."""
    try:
        call()
    except libvirt.libvirtError:
        pass


class Driver:
    def __init__(self, node: str, uri: str, clock: Clock, on_event: EventCallback | None = None) -> None:
        ensure_event_loop()
        self.node = node
        self.uri = uri
        self._clock = clock  # times the grace a guest is given to shut down
        self._on_event = on_event
        self._stopped = threading.Condition()  # notified on every STOPPED event
        self._virt_types: frozenset[str] | None = None
        with self._translated("open connection"):
            self._conn = libvirt.open(uri)
        if not uri.startswith("test:"):
            self._keep_alive()
        with self._translated("register lifecycle events"):
            self._callback = self._conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
            )

    # ---- domains ----------------------------------------------------------------------

    def define(self, xml: str) -> None:
        named = re.search(r"<name>\s*([^<]+?)\s*</name>", xml)  # the domain's own name comes first
        with self._logged("define", named.group(1) if named else "-"):
            self._conn.defineXML(xml)

    def start(self, name: str) -> None:
        with self._logged("start", name):
            self._lookup(name).create()

    def shutdown(self, name: str, wait: float) -> None:
        """Ask the guest to power off; destroy it if it is still up after ``wait`` seconds."""
        with self._logged("shut down", name):
            domain = self._lookup(name)
            if not domain.isActive():
                return
            domain.shutdown()
            if self._wait_until_off(domain, wait):
                return
            log.warning("%s on %s ignored shutdown for %.0f s; destroying it", name, self.node, wait)
            if domain.isActive():
                domain.destroy()

    def destroy(self, name: str) -> None:
        """Power off at once; a domain that is already off is left as it is."""
        with self._logged("destroy", name):
            domain = self._lookup(name)
            if domain.isActive():
                domain.destroy()

    def suspend(self, name: str) -> None:
        with self._logged("suspend", name):
            self._lookup(name).suspend()

    def resume(self, name: str) -> None:
        with self._logged("resume", name):
            self._lookup(name).resume()

    def reboot(self, name: str) -> None:
        with self._logged("reboot", name):
            self._lookup(name).reboot(0)

    def undefine(self, name: str) -> None:
        with self._logged("undefine", name):
            self._lookup(name).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)

    def state(self, name: str) -> str:
        """running, paused, shutoff, crashed, or missing."""
        try:
            with self._translated("read state of", name):
                return _STATES.get(self._lookup(name).state()[0], RUNNING)
        except DomainMissing:
            return MISSING

    def run_transient(self, xml: str, marker: bytes, timeout: float) -> bytes:
        """Run a transient domain until its serial console shows ``marker``, ends, or ``timeout``
        passes, then destroy it; what the console showed. It starts paused and runs once the
        console is open, so no early output is lost."""
        console = _Console(marker)
        with self._translated("start transient domain"):
            domain = self._conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        stream = None
        try:
            with self._translated("read the console of", domain.name()):
                stream = self._conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
                domain.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
                stream.eventAddCallback(libvirt.VIR_STREAM_EVENT_READABLE, console.read, None)
                domain.resume()
            console.ended.wait(timeout)
        finally:
            if stream is not None:
                _quietly(stream.eventRemoveCallback)
                _quietly(stream.abort)
            _quietly(domain.destroy)
        return console.output

    def xml(self, name: str) -> str:
        with self._translated("read XML of", name):
            return self._lookup(name).XMLDesc(0)

    def persistent_xml(self, name: str) -> str:
        """The definition the domain starts from next time (live changes aside)."""
        with self._translated("read XML of", name):
            return self._lookup(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    # Live changes to a running domain (renegotiation): each affects the running guest only;
    # the persistent definition is redefined with the same values (``define``).

    def set_memory(self, name: str, memory_mb: int) -> None:
        with self._translated("balloon the memory of", name):
            self._lookup(name).setMemoryFlags(memory_mb * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def set_vcpus(self, name: str, vcpus: int) -> None:
        with self._translated("hot-plug the vCPUs of", name):
            self._lookup(name).setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def set_scheduler(self, name: str, parameters: dict[str, int]) -> None:
        with self._translated("set the CPU share of", name):
            self._lookup(name).setSchedulerParametersFlags(parameters, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def set_interface(self, name: str, mac: str, parameters: dict[str, int]) -> None:
        with self._translated("set the bandwidth of", name):
            self._lookup(name).setInterfaceParameters(mac, parameters, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def owned(self) -> dict[str, OwnedDomain]:
        """Domains carrying the vws ``<metadata>`` element, by name."""
        owned = {}
        with self._translated("list domains"):
            domains = self._conn.listAllDomains()
        for domain in domains:
            try:
                with self._translated("read metadata of", domain.name()):
                    workspace_id = owner_of(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VWS_NS))
                    state = _STATES.get(domain.state()[0], RUNNING)
            except BackendError:
                continue  # no vws metadata (not ours), or undefined while we looked
            if workspace_id is not None:
                owned[domain.name()] = OwnedDomain(workspace_id, state)
        return owned

    # ---- the node ---------------------------------------------------------------------

    def capacity(self) -> Capacity:
        with self._translated("read node info"):
            info = self._conn.getInfo()
        return Capacity(memory_mb=info[1], cpus=info[2])

    def virt_types(self) -> frozenset[str]:
        """Domain types the node offers for hvm guests (test, qemu, kvm), from its capabilities."""
        if self._virt_types is None:
            with self._translated("read capabilities"):
                caps = etree.fromstring(self._conn.getCapabilities())
            self._virt_types = frozenset(caps.xpath("guest[os_type='hvm']/arch/domain/@type"))
        return self._virt_types

    def architectures(self) -> tuple[str, ...]:
        """Guest architectures the node runs, its own first.

        From the capabilities' hvm guests; a test node says i686 there whatever it stands for,
        so there the CPU model its node file names is its architecture (``testnode.architecture``).
        """
        if self.uri.startswith("test:"):
            native = testnode.architecture(self.uri)
            return (native, "i686") if native == "x86_64" else (native,)
        with self._translated("read capabilities"):
            caps = etree.fromstring(self._conn.getCapabilities())
        native = caps.findtext("host/cpu/arch")
        guests = caps.xpath("guest[os_type='hvm']/arch/@name")
        return tuple(dict.fromkeys(arch for arch in [native, *guests] if arch in guests))

    def hypervisor_version(self) -> str:
        """The hypervisor's version as libvirt reports it, ``major.minor.release``."""
        with self._translated("read hypervisor version"):
            number = self._conn.getVersion()
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    @property
    def connection(self) -> libvirt.virConnect:
        """The open connection, for the storage API (``volumes.py``)."""
        return self._conn

    def alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        try:
            self._conn.domainEventDeregisterAny(self._callback)
        except libvirt.libvirtError:
            pass  # the connection is already gone
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass

    # ---- internals --------------------------------------------------------------------

    def _translated(self, action: str, name: str | None = None) -> AbstractContextManager[None]:
        return translated(self.node, action, name)

    def _logged(self, action: str, name: str) -> AbstractContextManager[None]:
        return logged(self.node, action, name, self._clock)

    def _lookup(self, name: str) -> libvirt.virDomain:
        return self._conn.lookupByName(name)

    def _keep_alive(self) -> None:
        """Probe remote connections so a dead node fails calls instead of hanging them."""
        try:
            self._conn.setKeepAlive(5, 3)
        except libvirt.libvirtError:
            log.debug("keepalive not supported on %s", self.uri)

    def _wait_until_off(self, domain: libvirt.virDomain, wait: float) -> bool:
        deadline = self._clock.monotonic() + wait
        with self._stopped:
            while domain.isActive():
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return False
                # Woken by the STOPPED event; the timeout is a fallback if none comes.
                self._stopped.wait(min(remaining, 0.5))
        return True

    def _lifecycle(
        self, _conn: libvirt.virConnect, domain: libvirt.virDomain, event: int, detail: int, _: object
    ) -> None:
        """Runs on the event-loop thread: never raise into libvirt, never block."""
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            with self._stopped:
                self._stopped.notify_all()
        name = "crashed" if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and detail in _DIED else _EVENTS.get(event)
        if name is None or self._on_event is None:
            return
        try:
            self._on_event(self.node, domain.name(), name)
        except Exception:
            log.exception("lifecycle event handler failed for %s on %s", domain.name(), self.node)
