"""``vws-admin check``: can vws-service run on this configuration, and run well?

Every file is read with the loader vws-service uses at start, so whatever stops start-up
is reported here in the same words (the file and the line). Then what start-up does not
try: the state dir's permissions, how long the host credential and the CAs stay valid,
whether each active node answers, and each upload node's storage pool. One line per
problem; when there is none, a short summary of what was found.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import libvirt
from cryptography import x509

from vws import affinity
from vws import state_dir as private
from vws.clock import Clock
from vws.config import Config, ConfigError
from vws.errors import VwsError
from vws.pool import network, nodes
from vws.pool.driver import Driver
from vws.pool.settings import check_settings, network_pools_dir
from vws.pool.storage import volumes
from vws.security import gridmap
from vws.security.trust import TrustStore, ca_files
from vws.service import CredentialFiles, gridmap_file
from vws.store.database import Store
from vws.workspace.quotas import read_rules

EXPIRY_WARNING = timedelta(days=7)  # a credential closer than this to its end is a problem already
NODE_TIMEOUT = 15.0  # seconds a node may take to open a connection


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # what is wrong, one line each
    summary: list[str] = field(default_factory=list)  # what was found, for when nothing is wrong


Part = Callable[[Config, Clock, Report], None]


def check(config: Config, clock: Clock) -> Report:
    report = Report()
    for part in PARTS:
        try:
            part(config, clock, report)
        except ConfigError as exc:  # what start-up would stop at: the rest of this part cannot be read
            report.problems.append(config.locate(exc))
    return report


def _state_dir(config: Config, clock: Clock, report: Report) -> None:
    state = config.service.state_dir
    if not state.exists():
        report.summary.append(f"state dir {state}: made at first start")
        return
    warning = private.exposure_warning(state)
    if warning:
        report.problems.append(warning)
    report.summary.append(f"state dir {state}: {'private' if not warning else 'open to others'}")


def _cpu(config: Config, clock: Clock, report: Report) -> None:
    cpu = affinity.choose(config.service.cpu)
    report.summary.append("service threads: on every CPU" if cpu is None else f"service threads: on CPU {cpu}")


def _pool_settings(config: Config, clock: Clock, report: Report) -> None:
    check_settings(config.pool)
    report.summary.append(f"placement: {config.pool.placement}, domains named {config.pool.domain_prefix}<id>")


def _network_pools(config: Config, clock: Clock, report: Report) -> None:
    directory = network_pools_dir(config.pool, config.service.state_dir)
    if config.pool.network_pools_dir is None and not directory.exists():
        report.summary.append(f"network pools: the sample pool {network.SAMPLE_POOL}, made at first start")
        return
    pools = network.read_pools(directory)
    if not pools:
        report.problems.append(f"{directory}: no network pool file: no workspace with a NIC can be placed")
    listed = ", ".join(f"{pool.name} ({len(pool.entries)} addresses)" for pool in pools)
    report.summary.append(f"network pools in {directory}: {listed or 'none'}")


def _nodes(config: Config, clock: Clock, report: Report) -> None:
    listed = nodes.read_nodes_file(config.pool.nodes_file) if config.pool.nodes_file else []
    candidates = listed + [node for node in _stored_nodes(config) if node.origin == "admin"]
    if not candidates:
        report.summary.append("nodes: the embedded test node")
        return
    active = [node for node in candidates if node.active]
    for node, problem in _ask_each(active, config, clock):
        report.problems.append(f"node {node.name} ({node.uri}): {problem}")
    inactive = len(candidates) - len(active)
    report.summary.append(f"nodes: {len(active)} active ({', '.join(n.name for n in active)}), {inactive} inactive")


def _ask_each(active: list[nodes.Node], config: Config, clock: Clock) -> list[tuple[nodes.Node, str]]:
    """The problem of each node that has one, all asked at once; one that hangs is given NODE_TIMEOUT."""
    answers: dict[str, str | None] = {}

    def ask(node: nodes.Node) -> None:
        answers[node.name] = _node_problem(node, config, clock)

    threads = [threading.Thread(target=ask, args=(node,), daemon=True) for node in active]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(NODE_TIMEOUT)  # a thread still waiting is left behind: the command is about to exit
    late = f"did not answer within {NODE_TIMEOUT:.0f} s"
    return [(node, answers.get(node.name, late)) for node in active if answers.get(node.name, late)]


def _stored_nodes(config: Config) -> list[nodes.Node]:
    """The nodes table, where ``vws-admin nodes add`` put nodes; empty before the first start."""
    database = config.service.state_dir / "vws.sqlite"
    if not database.exists():
        return []
    store = Store(database)
    try:
        with store.reading() as db:
            return nodes.list_nodes(db)
    finally:
        store.close()


def _node_problem(node: nodes.Node, config: Config, clock: Clock) -> str | None:
    """What is wrong with a node: it does not answer, or its storage pool cannot be vws's."""
    try:
        driver = Driver(node.name, node.uri, clock)
    except VwsError as exc:
        return exc.description.removeprefix(f"{node.name}: ")
    try:
        if node.image_mode == nodes.UPLOAD:
            return volumes.pool_problem(driver.connection, config.pool.storage_pool, config.pool.storage_pool_path)
        return None
    except libvirt.libvirtError as exc:
        return f"cannot read its storage pools: {exc.get_error_message()}"
    finally:
        driver.close()


def _images(config: Config, clock: Clock, report: Report) -> None:
    repository = config.pool.image_repository
    if repository is not None and not repository.is_dir():
        raise ConfigError(f"[pool] image_repository {repository} is not a directory", ("pool", "image_repository"))
    report.summary.append(f"images: {repository or config.service.state_dir / 'images'}")


def _quotas(config: Config, clock: Clock, report: Report) -> None:
    rules = read_rules(config.quotas.rules_file) if config.quotas.rules_file else {}
    report.summary.append(f"quotas: {len(rules)} rules" + (f" in {config.quotas.rules_file}" if rules else ""))


def _security(config: Config, clock: Clock, report: Report) -> None:
    mapfile = gridmap_file(config)
    gridmap.check_file(mapfile)
    if config.service.insecure:
        report.summary.append("security: none (insecure: anonymous, unsigned requests)")
        exposure = config.service.insecure_exposure()
        if exposure:
            raise ConfigError(f"[service] {exposure}", ("service", "insecure"))
        return
    files = CredentialFiles.of(config)
    _host_credential(files, clock.now(), report)
    _trust_dir(files, clock.now(), report)
    if not mapfile.exists():
        report.problems.append(f"{mapfile}: no grid-mapfile: nobody but [security] admin_dns may use the service")
    identities = len(gridmap.read(mapfile.read_text(errors="replace"), str(mapfile))[0]) if mapfile.exists() else 0
    mode = "signed messages" if config.security.require_signature else "TLS client identities"
    report.summary.append(f"security: {mode}{', over TLS' if config.security.tls else ''}; {identities} mapped")


def _host_credential(files: CredentialFiles, now: datetime, report: Report) -> None:
    certificate = files.host_credential().certificate
    if files.host_key.stat().st_mode & 0o077:
        report.problems.append(f"{files.host_key}: the host key is readable by other users: chmod 600 it")
    report.problems += _validity(f"{files.host_cert}: the host certificate", certificate, now)
    until = certificate.not_valid_after_utc
    report.summary.append(
        f"host credential {files.host_cert}: valid until {until:%Y-%m-%d} ({(until - now).days} days)"
    )


def _trust_dir(files: CredentialFiles, now: datetime, report: Report) -> None:
    if not files.trust_dir.is_dir():
        report.problems.append(f"{files.trust_dir}: the trust dir is not a directory")
        return
    anchors = TrustStore(files.trust_dir).anchors()
    read = {anchor.path for anchor in anchors}
    for path in ca_files(files.trust_dir):
        if path not in read:
            report.problems.append(f"{path}: not a PEM CA certificate")
    if not anchors:
        report.problems.append(f"{files.trust_dir}: no CA certificate (<hash>.0): no client can be trusted")
    for anchor in anchors:
        report.problems += _validity(f"{anchor.path}: the CA {anchor.dn}", anchor.certificate, now)
    report.summary.append(f"trust dir {files.trust_dir}: {len(anchors)} CAs")


def _validity(what: str, certificate: x509.Certificate, now: datetime) -> list[str]:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        return [f"{what} is not valid before {start:%Y-%m-%d %H:%M} UTC"]
    if end <= now:
        return [f"{what} expired on {end:%Y-%m-%d %H:%M} UTC"]
    if end - now < EXPIRY_WARNING:
        return [f"{what} expires on {end:%Y-%m-%d %H:%M} UTC, in {(end - now).days} days"]
    return []


PARTS: tuple[Part, ...] = (_state_dir, _cpu, _pool_settings, _network_pools, _nodes, _images, _quotas, _security)
