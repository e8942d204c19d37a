"""The shipped sample configuration documents every key and loads as written."""

import typing
from pathlib import Path

import pytest

from vws import config

SAMPLE = Path(__file__).resolve().parents[1] / "etc" / "vws.conf"


def test_the_sample_loads_and_resolves_paths_next_to_itself():
    loaded = config.load(SAMPLE, environ={})
    assert loaded.pool.nodes_file == SAMPLE.parent / "nodes.conf"
    assert loaded.security.require_signature and not loaded.service.insecure


def test_the_sample_names_every_key_of_every_section():
    text = SAMPLE.read_text()
    for section in config.sections():
        assert f"[{section.name}]" in text
        for key in typing.get_type_hints(section.type):
            assert f"\n{key} =" in text, f"[{section.name}] {key} is not in etc/vws.conf"


def test_unknown_keys_are_refused(tmp_path):
    bad = tmp_path / "vws.conf"
    bad.write_text("[service]\nlisten = 0:0\nlisen = typo\n")
    with pytest.raises(config.ConfigError, match="lisen"):
        config.load(bad, environ={})


def test_environment_overrides_the_file():
    loaded = config.load(SAMPLE, environ={"VWS_POLICY_MAXIMUM_MEMORY_MB": "2048"})
    assert loaded.policy.maximum_memory_mb == 2048


def test_deployers_must_be_at_least_one():
    with pytest.raises(config.ConfigError, match="deployers"):
        config.Config().with_overrides("pool", deployers=0)


def test_max_group_size_is_finite_and_at_least_one():
    assert config.Config().policy.max_group_size > 0
    with pytest.raises(config.ConfigError, match="max_group_size"):
        config.Config().with_overrides("policy", max_group_size=0)
