"""The [pool] settings read once at start, each checked: a bad one stops start-up with the
setting named, and ``vws-admin check`` runs these same functions."""

from collections.abc import Sequence
from pathlib import Path

from vws.config import ConfigError, PoolConfig
from vws.matching import Vmm, parse_vmm
from vws.pool import designer, network, placement


def network_pools_dir(config: PoolConfig, state_dir: Path) -> Path:
    """``[pool] network_pools_dir``, else the state dir's (with the sample pool, made at first start)."""
    return config.network_pools_dir or state_dir / "network-pools"


def check_settings(config: PoolConfig) -> tuple[placement.Policy, dict[str, str], str, tuple[Vmm, ...]]:
    """The [pool] values read once at start (placement policy, bridges, domain prefix, legacy VMMs), each checked,
    as the other values the pool uses later are: a bad one stops start-up, and ``vws-admin check``
    runs this same function."""
    network.check_mac_prefix(config.mac_prefix)
    designer.wanted_virt_type(config.virt_type)
    return (
        placement.policy(config.placement),
        _bridges(config.bridges),
        designer.domain_prefix(config.domain_prefix),
        tuple(parse_vmm(text) for text in config.legacy_vmm),
    )


def _bridges(pairs: Sequence[str]) -> dict[str, str]:
    """``pool=bridge`` pairs from the config."""
    bridges = {}
    for pair in pairs:
        pool, separator, bridge = pair.partition("=")
        if not separator or not pool.strip() or not bridge.strip():
            raise ConfigError(f"[pool] bridges: {pair!r} is not pool=bridge", ("pool", "bridges"))
        bridges[pool.strip()] = bridge.strip()
    return bridges
