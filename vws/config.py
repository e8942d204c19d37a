"""One typed, frozen configuration, read once from ``vws.conf`` (INI) plus overrides.

Every component receives the section it needs in its constructor; nothing reads a
global. Environment variables ``VWS_<SECTION>_<KEY>`` override the file, and the
command line overrides both (``vws-service --listen/--state-dir/--insecure``).

A ConfigError's message names the file and line it is about (``vws.conf:12: ...``). A
setting checked later, by the component that uses it, is located through
``Config.locate``: the config remembers where each of its settings was read.
"""

import configparser
import dataclasses
import ipaddress
import os
import re
import socket
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from logging.handlers import SysLogHandler
from pathlib import Path

from vws.errors import VwsError
from vws.xmlparse import MAX_DOCUMENT_BYTES


class ConfigError(VwsError, ValueError):
    """A configuration or data file the service cannot use.

    ``setting`` ("section", "key") names the vws.conf setting at fault, when the message
    does not already say where it is. A ValueError too, so that dataclass field checks
    and argparse types raising it keep the meaning a ValueError has there.
    """

    def __init__(self, message: str, setting: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class ServiceConfig:
    listen: str = "127.0.0.1:8443"
    state_dir: Path = Path("/var/lib/vws")
    # Public base URL put into EPRs; empty means http(s)://<listen>/wsrf/services/.
    base_url: str = ""
    # Where members' context agents report (the broker's /ctx/ door), as their guests reach
    # this service; empty means beside base_url, or on agent_listen when that is set.
    agent_url: str = ""
    # host:port of the agents' door's own plain-HTTP listener (vws.soap.ctxagent); empty: the door
    # is on `listen`, which tls = yes closes to agents (they have no client certificate).
    agent_listen: str = ""
    insecure: bool = False
    threads: int = 16
    # The HTTP front (vws/soap/server.py): it reads a whole request within these limits before
    # one of the `threads` workers sees it. A request's head must arrive within
    # request_header_timeout_ms of its first byte, its body within request_body_timeout_ms of the
    # head (a reply must be taken as fast); a kept-alive connection may idle keepalive_timeout_ms.
    max_header_kb: int = 32
    max_body_kb: int = 4096  # at most the XML parser's own bound (vws.xmlparse.MAX_DOCUMENT_BYTES)
    request_header_timeout_ms: int = 10000
    request_body_timeout_ms: int = 60000
    keepalive_timeout_ms: int = 15000
    backlog: int = 1024  # the kernel caps it at net.core.somaxconn
    max_connections: int = 4096
    # A stop (SIGTERM) waits this long for work in flight, then exits anyway: every state
    # change is a transaction, so what was cut off is simply not done.
    stop_seconds: int = 30
    # Who may GET /metrics: open (anyone who reaches the port) or off; unset, open only with insecure.
    metrics: str | None = None
    # The CPU vws-service runs its threads on (vws/affinity.py): auto (the last it may use), all
    # (no pinning), or a CPU's number.
    cpu: str = "auto"

    def __post_init__(self) -> None:
        if self.metrics not in (None, "open", "off"):
            raise ConfigError(f"[service] metrics must be open or off, not {self.metrics!r}")
        if self.cpu not in ("auto", "all") and not self.cpu.isdigit():
            raise ConfigError(f"[service] cpu must be auto, all or a CPU's number, not {self.cpu!r}")
        if not 0 < self.max_body_kb * 1024 <= MAX_DOCUMENT_BYTES:
            raise ConfigError(f"[service] max_body_kb must be between 1 and {MAX_DOCUMENT_BYTES // 1024}")
        front = ("threads", "max_header_kb", "request_header_timeout_ms", "request_body_timeout_ms")
        front += ("keepalive_timeout_ms", "backlog", "max_connections")
        for key in front:
            if getattr(self, key) < 1:
                raise ConfigError(f"[service] {key} must be at least 1")

    @property
    def metrics_open(self) -> bool:
        return self.metrics == "open" if self.metrics else self.insecure

    def insecure_exposure(self) -> str | None:
        """What to warn about when an insecure service listens beyond loopback; None when it does not."""
        if not (self.insecure and self.listens_beyond_loopback()):
            return None
        return (
            f"insecure accepts anonymous, unsigned requests from anyone who reaches {self.listen}: "
            "listen on 127.0.0.1 unless this network is yours alone"
        )

    def listens_beyond_loopback(self) -> bool:
        """Whether ``listen`` reaches past this host: any address it names that is not a loopback one."""
        host = self.listen.rpartition(":")[0].strip("[]")
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host or None, None, proto=socket.IPPROTO_TCP)}
        except socket.gaierror:
            return True  # cannot tell: assume the worst
        return not host or any(not ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


@dataclass(frozen=True)
class PolicyConfig:
    default_running_seconds: int = 86400
    maximum_running_seconds: int = 1209600
    maximum_memory_mb: int = 0  # 0: only the node sizes limit it
    # May a NIC ask for a particular address (AcceptAndConfigure) or MAC (nic/MAC)?
    allow_static_addresses: bool = False
    limited_proxy_may_create: bool = False
    # Lease sweeper period; it also wakes at the next known termination time.
    sweep_seconds: int = 5
    # The largest group (NodeNumber) anyone may ask for, whatever the quotas say: placing
    # a group holds the store for about a millisecond per member.
    max_group_size: int = 256
    # queryCurrentWorkspaces lists at most this many workspaces, the oldest first (0: all), so
    # one answer's memory is bounded; GT4 had no limit, and no user holding fewer sees a change.
    max_listed_workspaces: int = 1000
    # Enforcement (issue #14): the most of one host CPU a vCPU may be granted (CPUPercentage),
    # and the most NIC bandwidth one direction may be granted, in megabits/s (0: no limit).
    maximum_cpu_percentage: int = 100
    maximum_bandwidth_mbps: int = 0
    # An advance reservation's bring-up (image copy, define, start) begins this long before its start.
    reservation_lead_seconds: int = 600

    def __post_init__(self) -> None:
        if self.max_group_size < 1:
            raise ConfigError("[policy] max_group_size must be at least 1")
        if self.max_listed_workspaces < 0:
            raise ConfigError("[policy] max_listed_workspaces must be 0 (no limit) or more")
        if not 1 <= self.maximum_cpu_percentage <= 100:
            raise ConfigError("[policy] maximum_cpu_percentage must be from 1 to 100")


@dataclass(frozen=True)
class PoolConfig:
    # Empty: the embedded default, one libvirt test-driver node made in the state dir.
    nodes_file: Path | None = None
    placement: str = "round-robin"  # or "greedy"
    network_pools_dir: Path | None = None
    image_repository: Path | None = None
    mac_prefix: str = "A2:AA:BB"
    allowed_image_hosts: tuple[str, ...] = ()
    # An http(s) image larger than this (announced or sent) is refused; 0: no limit.
    max_image_download_mb: int = 10240
    reconcile_seconds: int = 30
    # A domain marked as this service's that no live workspace claims is reported; with
    # this set it is also destroyed and undefined (its files and volumes deleted).
    remove_unclaimed_domains: bool = False
    # A graceful shutdown waits this long for the guest to power off, then destroys it.
    shutdown_wait_seconds: int = 30
    # Domain type on qemu nodes: "auto": kvm where the node's capabilities offer it and a probe
    # guest really runs under it (checked once per node; a PVM-backed /dev/kvm offers kvm and
    # crawls), else qemu; or always "qemu" (TCG) or "kvm". Test nodes ignore it.
    virt_type: str = "auto"
    # "pool=bridge" pairs: NICs of that network pool join that host bridge; other pools get
    # QEMU user networking (the leased MAC still applies). Test nodes ignore this.
    bridges: tuple[str, ...] = ()
    # Domains are named <prefix><workspace id>; services sharing a libvirtd need different ones.
    domain_prefix: str = "wrksp-"
    # Per-node image cache limit in MB (0: unlimited). Room is made before a new image is copied
    # in (least recently used images no workspace uses go first); one that cannot fit is refused.
    image_cache_mb: int = 0
    # The libvirt dir storage pool that holds vws's volumes on upload nodes (nodes.py
    # image_mode), and its directory on the node: created and started where missing.
    storage_pool: str = "vws"
    storage_pool_path: str = "/var/lib/libvirt/images/vws"
    # Build the contextualization ISO on test-driver nodes too (costs ~5 ms of genisoimage).
    test_node_context_iso: bool = False
    # Deployments brought up at once (each copies its images, defines and starts domains).
    deployers: int = 2
    # VMM requirements every node meets ("TYPE [VERSION...]", comma-separated): GT4 metadata
    # (Nimbus's own sample) asks for Xen, whose images vws runs under QEMU. Empty: none.
    legacy_vmm: tuple[str, ...] = ("Xen",)
    # Domains are defined able to grow live by this much over what they were granted (maximum
    # memory to balloon into, vCPUs to hot-plug), for renegotiation (issue #14); 0: no live growth.
    live_headroom_percent: int = 0

    def __post_init__(self) -> None:
        if self.deployers < 1:
            raise ConfigError("[pool] deployers must be at least 1", ("pool", "deployers"))


@dataclass(frozen=True)
class SecurityConfig:
    trust_dir: Path | None = None
    host_cert: Path | None = None
    host_key: Path | None = None
    gridmap: Path | None = None
    admin_dns: tuple[str, ...] = ()
    require_signature: bool = True
    tls: bool = False
    clock_skew_seconds: int = 300
    # Hashes a signature may use (its RSA signature and its digests): sha256, sha384, sha512;
    # add sha1 only for old clients that cannot do better (GT4's own signed with RSA-SHA1).
    signature_hashes: tuple[str, ...] = ("sha256", "sha384", "sha512")


@dataclass(frozen=True)
class NotificationConfig:
    # Delivery threads: a consumer that hangs holds one of them for at most timeout_ms.
    workers: int = 8
    timeout_ms: int = 5000
    attempts: int = 5  # per message; the waits between them double from retry_ms
    retry_ms: int = 200
    # A subscription whose consumer loses this many messages in a row is destroyed.
    drop_after: int = 3


@dataclass(frozen=True)
class QuotaConfig:
    """Per-user limits (0: none); ``rules_file`` overrides them per DN or grid-mapfile account."""

    max_workspaces: int = 0  # simultaneous
    max_group_size: int = 0
    max_reserved_minutes: int = 0  # held by live workspaces
    max_elapsed_reserved_minutes: int = 0  # used by ended ones plus held by live ones
    rules_file: Path | None = None


@dataclass(frozen=True)
class AccountingConfig:
    charge_granularity_minutes: int = 1


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_DESTINATIONS = ("stderr", "file", "syslog")


@dataclass(frozen=True)
class LoggingConfig:
    """Where the service's log goes (vws/log_output.py). INFO adds one line per SOAP request
    (vws.requests), per state change (vws.states) and per libvirt action (vws.libvirt)."""

    level: str = "WARNING"  # DEBUG, INFO, WARNING, ERROR; vws-service --log-level overrides it
    destination: str = "stderr"  # stderr, file or syslog
    file: Path | None = None  # with destination = file; reopened when logrotate moves it
    syslog_address: str = "/dev/log"  # with destination = syslog: a socket path, or host:port (UDP)
    syslog_facility: str = "daemon"

    def __post_init__(self) -> None:
        if self.level.upper() not in _LEVELS:
            raise ConfigError(f"[logging] level must be one of {', '.join(_LEVELS)}", ("logging", "level"))
        if self.destination not in _DESTINATIONS:
            raise ConfigError(
                f"[logging] destination must be one of {', '.join(_DESTINATIONS)}", ("logging", "destination")
            )
        if self.destination == "file" and self.file is None:
            raise ConfigError("[logging] destination = file needs file = <path>", ("logging", "file"))
        if not (self.syslog_address.startswith("/") or re.fullmatch(r".+:[0-9]{1,5}", self.syslog_address)):
            raise ConfigError(
                "[logging] syslog_address must be a socket path or host:port", ("logging", "syslog_address")
            )
        if self.syslog_facility not in SysLogHandler.facility_names:
            raise ConfigError(
                f"[logging] syslog_facility {self.syslog_facility!r} is not a syslog facility",
                ("logging", "syslog_facility"),
            )


@dataclass(frozen=True)
class AppliancesConfig:
    # Deploy only appliances named by a descriptor that a trusted producer signed.
    require_signed: bool = False
    # The trusted producers' certificates (PEM files); empty: <state_dir>/producers.
    producers_dir: Path | None = None


@dataclass(frozen=True)
class Ec2Config:
    """The EC2 Query API door (vws/ec2): off unless ``listen`` is set."""

    listen: str = ""  # host:port; empty: no EC2 door
    # The region clients name in their credential scope (aws --region, boto3 region_name);
    # its single availability zone is "<region>a".
    region: str = "vws"
    # How far a request's X-Amz-Date may be from the service's clock; an identical signed
    # request is refused while it is within it (a replay).
    clock_skew_seconds: int = 300
    # name:vcpus:memory_mb, the InstanceType table; the first is the default.
    instance_types: tuple[str, ...] = ("m1.small:1:256", "m1.medium:1:512", "m1.large:2:1024", "m1.xlarge:4:2048")
    # The network pool each instance's one NIC takes its address from; empty: no NIC.
    network: str = "public"
    # How long a terminated instance stays visible to DescribeInstances.
    terminated_visible_seconds: int = 3600
    # The key (32 random bytes) that encrypts access keys' secrets at rest; empty:
    # <state_dir>/ec2-secrets.key, made by the first `vws-admin ec2-keys create`.
    secrets_key: Path | None = None

    def __post_init__(self) -> None:
        if self.clock_skew_seconds < 1:
            raise ConfigError("[ec2] clock_skew_seconds must be at least 1", ("ec2", "clock_skew_seconds"))
        if not self.instance_types:
            raise ConfigError("[ec2] instance_types needs at least one name:vcpus:memory_mb", ("ec2", "instance_types"))
        for entry in self.instance_types:
            name, vcpus, memory = (entry.split(":") + ["", ""])[:3]
            if not (name and vcpus.isdigit() and memory.isdigit() and int(vcpus) and int(memory)):
                raise ConfigError(
                    f"[ec2] instance_types: {entry!r} is not name:vcpus:memory_mb", ("ec2", "instance_types")
                )

    def instance_type_table(self) -> dict[str, tuple[int, int]]:
        """Name -> (vcpus, memory_mb), in the configured order."""
        table = {}
        for entry in self.instance_types:
            name, vcpus, memory = entry.split(":")
            table[name] = (int(vcpus), int(memory))
        return table


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    notification: NotificationConfig = field(default_factory=NotificationConfig)
    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    accounting: AccountingConfig = field(default_factory=AccountingConfig)
    appliances: AppliancesConfig = field(default_factory=AppliancesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ec2: Ec2Config = field(default_factory=Ec2Config)
    # (section, key) -> where its value was read: "path:line" or "$VWS_SECTION_KEY".
    origins: Mapping[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.service.insecure and self.security.tls:
            raise ConfigError(
                "[security] tls = yes cannot be combined with insecure (anonymous, unsigned plain HTTP): "
                "drop --insecure (or [service] insecure), or set tls = no",
                ("security", "tls"),
            )
        if not self.service.insecure and not self.security.require_signature and not self.security.tls:
            raise ConfigError(
                "[security] require_signature = no needs tls = yes (or --insecure)", ("security", "require_signature")
            )

    def with_overrides(self, section: str, **values: object) -> "Config":
        """A copy with some keys of one section replaced (None values are ignored)."""
        changes = {k: v for k, v in values.items() if v is not None}
        if not changes:
            return self
        origins = {
            setting: where for setting, where in self.origins.items() if setting not in {(section, k) for k in changes}
        }
        try:
            updated = dataclasses.replace(getattr(self, section), **changes)
            return dataclasses.replace(self, **{section: updated, "origins": origins})
        except ConfigError as exc:
            raise ConfigError(_located(exc, origins)) from None

    def locate(self, error: VwsError) -> str:
        """The error's message, preceded by where its setting was read when it does not say so itself."""
        return _located(error, self.origins)


def _located(error: VwsError, origins: Mapping[tuple[str, str], str]) -> str:
    setting = error.setting if isinstance(error, ConfigError) else None
    where = origins.get(setting) if setting else None
    return f"{where}: {error}" if where else str(error)


def sections() -> list[dataclasses.Field]:
    """The fields of Config that are sections of vws.conf."""
    return [spec for spec in dataclasses.fields(Config) if spec.name != "origins"]


def load(path: Path | None = None, environ: typing.Mapping[str, str] = os.environ) -> Config:
    """Read ``path`` (if given), then ``VWS_<SECTION>_<KEY>`` variables, into a Config."""
    parser = configparser.ConfigParser(interpolation=None)
    origins: dict[tuple[str, str], str] = {}
    if path is not None:
        origins.update({setting: f"{path}:{line}" for setting, line in read_ini(path, parser).items()})
    base = path.parent if path is not None else Path.cwd()
    known = {spec.name for spec in sections()}
    for name in parser.sections():
        if name not in known:
            raise ConfigError(f"{origins[(name, '')]}: unknown section [{name}]")
    values = {}
    for spec in sections():
        raw = dict(parser[spec.name]) if parser.has_section(spec.name) else {}
        prefix = f"VWS_{spec.name.upper()}_"
        for variable, value in environ.items():
            if variable.startswith(prefix):
                key = variable[len(prefix) :].lower()
                raw[key], origins[(spec.name, key)] = value, f"${variable}"
        values[spec.name] = _section(spec.type, raw, base, spec.name, origins)
    try:
        return Config(**values, origins=origins)
    except ConfigError as exc:
        raise ConfigError(_located(exc, origins)) from None


def read_ini(path: Path, parser: configparser.ConfigParser) -> dict[tuple[str, str], int]:
    """Read the INI file ``path`` into ``parser``; returns the line of each (section, key) (see ini_lines).

    A file that cannot be read or parsed is a ConfigError naming its line.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        parser.read_string(text, str(path))
    except configparser.Error as exc:
        raise ConfigError(_parse_error(path, text, exc)) from None
    return ini_lines(text)


def ini_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, key) -> the line that sets it, and (section, "") -> the line of its header, in INI text."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\[([^]]+)\]", line)
        if header:
            section = header.group(1).strip()
            lines.setdefault((section, ""), number)
        elif (key := re.match(r"([^\s#;=:][^=:]*?)\s*[=:]", line)) and section:
            lines.setdefault((section, key.group(1).strip().lower()), number)
    return lines


def _parse_error(path: Path, text: str, exc: configparser.Error) -> str:
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{path}:{exc.lineno}: a setting before any [section]: {exc.line.strip()!r}"
    if isinstance(exc, configparser.ParsingError):
        line = exc.errors[0][0]
        return f"{path}:{line}: not an INI line (key = value, or [section]): {text.splitlines()[line - 1].strip()!r}"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"{path}:{exc.lineno}: [{exc.section}] {exc.option} is set twice"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"{path}:{exc.lineno}: [{exc.section}] appears twice"
    return f"{path}: {exc.message}"


def _section(cls: type, raw: dict[str, str], base: Path, name: str, origins: Mapping[tuple[str, str], str]) -> object:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"{origins.get((name, unknown[0]), f'[{name}]')}: unknown key {unknown[0]} in [{name}]")
    values = {}
    for key, text in raw.items():
        try:
            values[key] = _convert(hints[key], text, base)
        except ValueError as exc:
            raise ConfigError(f"{origins.get((name, key), f'[{name}]')}: [{name}] {key}: {exc}") from None
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(_located(exc, origins)) from None


def _convert(hint: object, text: str, base: Path) -> object:
    text = text.strip()
    if isinstance(hint, types.UnionType):  # `X | None`: empty text means None
        if not text:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bool:
        return parse_boolean(text)
    if hint is int:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError(f"not a whole number: {text!r}")
        return int(text)
    if hint is Path:
        return base / Path(text).expanduser()
    if typing.get_origin(hint) is tuple:
        return tuple(item.strip() for item in text.replace("\n", ",").split(",") if item.strip())
    return text


def parse_boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")
