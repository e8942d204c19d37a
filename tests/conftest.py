"""Shared fixtures: a real vws service on a free port, on the embedded default."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.deployments import settler
from tests.gt4wire import Gt4Client
from vws.clock import ManualClock
from vws.config import Config
from vws.service import Service

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_config(state_dir: Path, **policy: object) -> Config:
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir, insecure=True)
    return config.with_overrides("policy", **policy)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def service(tmp_path, clock):
    running = Service(make_config(tmp_path / "state"), clock=clock)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def gt4(service):
    client = Gt4Client(service.base_url, settle=settler(service))
    yield client
    client.close()
