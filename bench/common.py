"""Helpers the benchmarks share: a service in a temp dir, timing, percentiles."""

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vws.config import Config  # noqa: E402
from vws.service import Service  # noqa: E402


@contextmanager
def running_service(pool: dict[str, object] | None = None, **policy: object):
    """A started service in a temp dir; ``pool`` overrides keys of the [pool] section."""
    with tempfile.TemporaryDirectory() as state:
        config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=Path(state), insecure=True)
        config = config.with_overrides("pool", **(pool or {}))
        service = Service(config.with_overrides("policy", **policy))
        service.start()
        try:
            yield service
        finally:
            service.stop()


def timed(
    call: Callable[[], object], count: int, warmup: int = 50, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Latencies in seconds of ``count`` calls, after ``warmup`` untimed ones.

    ``clock=time.process_time`` gives the CPU seconds the whole process (client and service
    threads) spends per call instead: a figure other load on a shared machine disturbs less.
    """
    for _ in range(warmup):
        call()
    latencies = []
    for _ in range(count):
        started = clock()
        call()
        latencies.append(clock() - started)
    return latencies


def report(name: str, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    figures = {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1e3,
        "per_s": len(ordered) / sum(ordered),
    }
    print(f"{name:<44} p50 {figures['p50_ms']:7.3f} ms  p99 {figures['p99_ms']:7.3f} ms  {figures['per_s']:8.0f}/s")
    return figures
