"""Renegotiating a placed workspace's allocation: the node's books and the domain's XML.

The books (inside the caller's transaction, as ``place`` is): ``reserve`` makes the node
hold the larger of the old and new memory and CPUs, refused when it has not that room, and
records the change as ``applying`` in ``pool_resizes``; ``settle`` then holds the new
allocation (or the old one, when libvirt refused) and forgets the record, or keeps it
``deferred`` until the domain next starts. So no moment exists at which two workspaces
count on the same memory, and a crash between libvirt and the store leaves a record
that start-up finishes.

The domain (``resized_xml``): the persistent definition with the new allocation, able to
grow live up to ``[pool] live_headroom_percent`` over it; ``live_parameters`` are the
libvirt calls' arguments that apply it to a running domain.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lxml import etree
from sqlite_utils import Database

from vws.errors import BackendError, IllegalState, SchedulingFailed
from vws.pool import designer
from vws.pool.domain_xml import NicSpec
from vws.pool.driver import Driver
from vws.pool.machine import Allocation, NicBandwidth
from vws.pool.placement import NodeLoad
from vws.store.rows import one

APPLYING = "applying"
DEFERRED = "deferred"

# How a renegotiation took effect (PoolManager.resize).
LIVE = "live"  # on the running guest, and in its definition
DEFINED = "defined"  # in its definition: the domain is off, so it is what it starts with
NEXT_START = "next start"  # in its definition only, though it runs: from its next start


class LiveResizeRefused(BackendError):
    """libvirt cannot give a running domain the new allocation (beyond its maximum, or unsupported)."""


@dataclass(frozen=True)
class Resize:
    workspace_id: int
    node: str
    domain: str
    old: Allocation
    new: Allocation
    live: bool
    phase: str


# ---- the books ------------------------------------------------------------------------------


def reserve(
    db: Database,
    workspace_id: int,
    old: Allocation,
    new: Allocation,
    live: bool,
    loads: Callable[[str | None], list[NodeLoad]],
) -> Resize:
    """Hold max(old, new) on the workspace's node, or SchedulingFailed and nothing changed;
    ``loads(ends_at)``: the nodes' loads from now to the workspace's end (None: open)."""
    if one(db, "select 1 from pool_resizes where workspace_id = ?", [workspace_id]):
        raise IllegalState(f"workspace {workspace_id} has a renegotiation waiting for its next start")
    placed = one(
        db,
        "select node, memory_mb, vcpus, ends_at from pool_placements where workspace_id = ? and held",
        [workspace_id],
    )
    if placed is None:
        raise IllegalState(f"workspace {workspace_id} holds nothing on a node to renegotiate")
    node = str(placed["node"])
    memory, vcpus = max(old.memory_mb, new.memory_mb), max(old.vcpus, new.vcpus)
    load = next(load for load in loads(placed["ends_at"]) if load.name == node)  # type: ignore[arg-type]
    more_memory, more_cpus = memory - int(placed["memory_mb"]), vcpus - int(placed["vcpus"])
    if more_memory > load.free_memory_mb or more_cpus > load.free_cpus:
        raise SchedulingFailed(
            f"node {node} has {load.free_memory_mb} MB and {load.free_cpus} CPUs free; "
            f"{new.memory_mb} MB and {new.vcpus} CPUs need {max(more_memory, 0)} MB and {max(more_cpus, 0)} more"
        )
    _hold(db, workspace_id, memory, vcpus)
    domain = db.execute("select domain from pool_domains where workspace_id = ?", [workspace_id]).fetchone()
    if domain is None:
        raise IllegalState(f"workspace {workspace_id} has no domain defined yet")
    resize = Resize(workspace_id, node, domain[0], old, new, live, APPLYING)
    db["pool_resizes"].insert(
        {
            "workspace_id": workspace_id,
            "node": node,
            "domain": resize.domain,
            "old": old.to_json(),
            "new": new.to_json(),
            "live": int(live),
            "phase": APPLYING,
        }
    )
    return resize


def settle(db: Database, workspace_id: int, kept: Allocation, *, deferred: bool = False) -> None:
    """The node holds ``kept`` from now on; or, ``deferred``, max(old, new) until the next start."""
    if deferred:
        db.execute("update pool_resizes set phase = ? where workspace_id = ?", [DEFERRED, workspace_id])
        return
    _hold(db, workspace_id, kept.memory_mb, kept.vcpus)
    db.execute("delete from pool_resizes where workspace_id = ?", [workspace_id])


def started(db: Database, node: str, domain: str) -> None:
    """The domain started with its deferred allocation: the node holds just that now."""
    for row in db.execute(
        "select workspace_id, new from pool_resizes where node = ? and domain = ? and phase = ?",
        [node, domain, DEFERRED],
    ).fetchall():
        settle(db, row[0], Allocation.from_json(row[1]))


def pending(db: Database) -> list[Resize]:
    """Renegotiations a crash cut off between reserving and settling."""
    found = db.execute(
        "select workspace_id, node, domain, old, new, live, phase from pool_resizes where phase = ?", [APPLYING]
    ).fetchall()
    return [
        Resize(workspace_id, node, domain, Allocation.from_json(old), Allocation.from_json(new), bool(live), phase)
        for workspace_id, node, domain, old, new, live, phase in found
    ]


def _hold(db: Database, workspace_id: int, memory_mb: int, vcpus: int) -> None:
    db.execute(
        "update pool_placements set memory_mb = ?, vcpus = ? where workspace_id = ?", [memory_mb, vcpus, workspace_id]
    )


# ---- the domain -----------------------------------------------------------------------------


def limits(xml: str) -> tuple[int, int]:
    """(maximum memory in MiB, maximum vCPUs) a domain may grow to live."""
    domain = etree.fromstring(xml)
    memory = domain.find("memory")
    kib = int(memory.text) * _KIB_PER_UNIT[memory.get("unit", "KiB")]
    return kib // 1024, int(domain.findtext("vcpu"))


_KIB_PER_UNIT = {"KiB": 1, "k": 1, "MiB": 1024, "M": 1024, "GiB": 1024 * 1024, "G": 1024 * 1024}


def resized_xml(xml: str, new: Allocation, macs: Mapping[str, str], headroom_percent: int) -> str:
    """The persistent definition ``xml`` holding ``new``, able to grow live by the headroom."""
    domain = etree.fromstring(xml)
    most_memory, most_vcpus = limits(xml)
    memory = domain.find("memory")
    memory.set("unit", "MiB")
    memory.text = str(max(most_memory, designer.headroom(new.memory_mb, headroom_percent)))
    current = domain.find("currentMemory")
    if current is None:
        current = etree.Element("currentMemory")
        memory.addnext(current)
    current.set("unit", "MiB")
    current.text = str(new.memory_mb)
    vcpu = domain.find("vcpu")
    vcpu.text = str(max(most_vcpus, designer.headroom(new.vcpus, headroom_percent)))
    vcpu.set("current", str(new.vcpus))
    _replace_cputune(domain, new)
    shaping = {macs[item.nic].lower(): item for item in new.bandwidth if item.nic in macs}
    for interface in domain.findall("devices/interface"):
        _replace_bandwidth(interface, shaping.get(interface.find("mac").get("address", "").lower()))
    return etree.tostring(domain, encoding="unicode")


def _replace_cputune(domain: etree._Element, new: Allocation) -> None:
    old = domain.find("cputune")
    tune = designer.cputune(new.cpu_percent, new.vcpus)
    if old is not None:
        domain.remove(old)
    if tune is not None:
        domain.find("vcpu").addnext(tune.to_xml())


def _replace_bandwidth(interface: etree._Element, shaping: NicBandwidth | None) -> None:
    old = interface.find("bandwidth")
    if old is not None:
        interface.remove(old)
    if shaping is not None:
        rates = {"inbound": designer.rate(shaping.inbound), "outbound": designer.rate(shaping.outbound)}
        shaped = NicSpec(mac="", **rates).to_xml().find("bandwidth")  # rendered in one place
        if shaped is not None:
            interface.append(shaped)


def scheduler_parameters(new: Allocation) -> dict[str, int]:
    """``virDomainSetSchedulerParameters`` arguments for ``new``'s CPU share (-1: no quota)."""
    tune = designer.cputune(new.cpu_percent, new.vcpus)
    if tune is None:
        return {"vcpu_quota": -1, "cpu_shares": designer.SHARES_PER_CPU * new.vcpus}
    return {"vcpu_period": tune.period, "vcpu_quota": tune.quota, "cpu_shares": tune.shares}


def interface_parameters(shaping: NicBandwidth | None) -> dict[str, int]:
    """``virDomainSetInterfaceParameters`` arguments; an average of 0 lifts that direction's shaping."""
    parameters = {}
    for direction in ("inbound", "outbound"):
        rate = None if shaping is None else getattr(shaping, direction)
        parameters[f"{direction}.average"] = 0 if rate is None else rate.average_kbytes
        if rate is not None and rate.peak_kbytes is not None:
            parameters[f"{direction}.peak"] = rate.peak_kbytes
            parameters[f"{direction}.burst"] = rate.burst_kb or rate.peak_kbytes
    return parameters


# ---- live -----------------------------------------------------------------------------------


def apply_live(driver: Driver, resize: Resize, macs: Mapping[str, str]) -> None:
    """Each changed part on the running domain; if one fails, those done are undone and it raises."""
    most_memory, most_vcpus = limits(driver.xml(resize.domain))
    new, old = resize.new, resize.old
    if new.memory_mb > most_memory or new.vcpus > most_vcpus:
        raise LiveResizeRefused(
            f"{resize.domain} can grow live to at most {most_memory} MB and {most_vcpus} vCPUs"
            " ([pool] live_headroom_percent when it was defined)"
        )
    done: list[Callable[[Allocation], None]] = []
    try:
        for step in _live_steps(driver, resize.domain, old, new, macs):
            step(new)
            done.append(step)
    except BackendError as exc:
        for step in reversed(done):
            try:
                step(old)
            except BackendError:
                pass  # the definition still holds the old allocation: its next start restores it
        raise LiveResizeRefused(exc.description, cause=exc.cause) from None


def _live_steps(
    driver: Driver, domain: str, old: Allocation, new: Allocation, macs: Mapping[str, str]
) -> list[Callable[[Allocation], None]]:
    """The calls for what changed, those libvirt supports least first, so a refusal undoes little."""
    steps: list[Callable[[Allocation], None]] = []
    if (old.cpu_percent, old.vcpus) != (new.cpu_percent, new.vcpus) and (old.cpu_percent or new.cpu_percent):
        steps.append(lambda wanted: driver.set_scheduler(domain, scheduler_parameters(wanted)))
    if old.bandwidth != new.bandwidth:
        for nic in {item.nic for item in old.bandwidth + new.bandwidth if item.nic in macs}:
            steps.append(
                lambda wanted, nic=nic: driver.set_interface(domain, macs[nic], interface_parameters(_of(wanted, nic)))
            )
    if old.vcpus != new.vcpus:
        steps.append(lambda wanted: driver.set_vcpus(domain, wanted.vcpus))
    if old.memory_mb != new.memory_mb:
        steps.append(lambda wanted: driver.set_memory(domain, wanted.memory_mb))
    return steps


def _of(allocation: Allocation, nic: str) -> NicBandwidth | None:
    return next((item for item in allocation.bandwidth if item.nic == nic), None)
