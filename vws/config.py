"""One typed, frozen configuration, read once from ``vws.conf`` (INI) plus overrides.

Every component receives the section it needs in its constructor; nothing reads a
global. Environment variables ``VWS_<SECTION>_<KEY>`` override the file, and the
command line overrides both (``vws-service --listen/--state-dir/--insecure``).
"""

import configparser
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceConfig:
    listen: str = "127.0.0.1:8443"
    state_dir: Path = Path("/var/lib/vws")
    # Public base URL put into EPRs; empty means http(s)://<listen>/wsrf/services/.
    base_url: str = ""
    insecure: bool = False
    threads: int = 16


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

    def __post_init__(self) -> None:
        if self.deployers < 1:
            raise ConfigError("[pool] deployers must be at least 1")


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


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    notification: NotificationConfig = field(default_factory=NotificationConfig)
    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    accounting: AccountingConfig = field(default_factory=AccountingConfig)

    def with_overrides(self, section: str, **values: object) -> "Config":
        """A copy with some keys of one section replaced (None values are ignored)."""
        changes = {k: v for k, v in values.items() if v is not None}
        if not changes:
            return self
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


class ConfigError(ValueError):
    pass


def load(path: Path | None = None, environ: typing.Mapping[str, str] = os.environ) -> Config:
    """Read ``path`` (if given), then ``VWS_<SECTION>_<KEY>`` variables, into a Config."""
    parser = configparser.ConfigParser(interpolation=None)
    if path is not None:
        if not parser.read(path):
            raise ConfigError(f"cannot read config file {path}")
    base = path.parent if path is not None else Path.cwd()
    sections = {}
    for spec in dataclasses.fields(Config):
        raw = dict(parser[spec.name]) if parser.has_section(spec.name) else {}
        prefix = f"VWS_{spec.name.upper()}_"
        raw.update({k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)})
        sections[spec.name] = _section(spec.type, raw, base, spec.name)
    unknown = set(parser.sections()) - set(sections)
    if unknown:
        raise ConfigError(f"unknown config sections: {', '.join(sorted(unknown))}")
    return Config(**sections)


def _section(cls: type, raw: dict[str, str], base: Path, name: str) -> object:
    hints = typing.get_type_hints(cls)
    unknown = set(raw) - set(hints)
    if unknown:
        raise ConfigError(f"[{name}]: unknown keys {', '.join(sorted(unknown))}")
    try:
        return cls(**{key: _convert(hints[key], text, base) for key, text in raw.items()})
    except ValueError as exc:
        raise ConfigError(f"[{name}]: {exc}") from None


def _convert(hint: object, text: str, base: Path) -> object:
    text = text.strip()
    if isinstance(hint, types.UnionType):  # `X | None`: empty text means None
        if not text:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bool:
        return _boolean(text)
    if hint is int:
        return int(text)
    if hint is Path:
        return base / Path(text).expanduser()
    if typing.get_origin(hint) is tuple:
        return tuple(item.strip() for item in text.replace("\n", ",").split(",") if item.strip())
    return text


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")
