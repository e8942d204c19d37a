"""What ``/metrics`` tells an operator, in Prometheus text format.

Requests are counted as they are answered, by port type, operation and outcome ("ok"
or the fault's name), with their latency. What is state (workspaces by state, node
room, leases, the deployer's queue, the notification outbox) is read from its layer at
scrape time, so it is never out of step with the store. Each Service has its own
registry: several run in one test process.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from vws.soap.application import Answer

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class NodeRoom(Protocol):
    """One node's memory and CPUs, given out and free (the pool's NodeLoad)."""

    name: str
    used_memory_mb: int
    used_cpus: int

    @property
    def free_memory_mb(self) -> int: ...

    @property
    def free_cpus(self) -> int: ...


@dataclass(frozen=True)
class Readings:
    """Where the state metrics come from: each a cheap read, made at scrape time."""

    workspaces: Callable[[], Mapping[str, int]]  # live workspaces by state
    nodes: Callable[[], Iterable[NodeRoom]]
    leases: Callable[[], Mapping[str, tuple[int, int]]]  # per network pool: leased, free
    deployer: Callable[[], Mapping[str, int]]  # what the workspace layer keeps per workspace in progress
    outbox: Callable[[], int]  # notifications still owed to consumers


class _State(Collector):
    def __init__(self, readings: Readings) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        readings = self._readings
        workspaces = GaugeMetricFamily("vws_workspaces", "Live workspaces by state", labels=["state"])
        for state, count in readings.workspaces().items():
            workspaces.add_metric([state], count)
        memory = GaugeMetricFamily("vws_node_memory_mb", "Node memory given out and free", labels=["node", "use"])
        cpus = GaugeMetricFamily("vws_node_cpus", "Node CPUs given out and free", labels=["node", "use"])
        for node in readings.nodes():
            memory.add_metric([node.name, "used"], node.used_memory_mb)
            memory.add_metric([node.name, "free"], node.free_memory_mb)
            cpus.add_metric([node.name, "used"], node.used_cpus)
            cpus.add_metric([node.name, "free"], node.free_cpus)
        leases = GaugeMetricFamily("vws_leases", "Network addresses leased and free", labels=["pool", "use"])
        for pool, (used, free) in readings.leases().items():
            leases.add_metric([pool, "used"], used)
            leases.add_metric([pool, "free"], free)
        deployer = GaugeMetricFamily("vws_deployer", "Workspaces the deployer is working on", labels=["kind"])
        for kind, count in readings.deployer().items():
            deployer.add_metric([kind.replace(" ", "_")], count)
        outbox = GaugeMetricFamily("vws_notification_outbox", "Notifications still owed to consumers")
        outbox.add_metric([], readings.outbox())
        yield from (workspaces, memory, cpus, leases, deployer, outbox)


class Metrics:
    """One service's registry: request counters and latencies, and the state read at scrape time."""

    def __init__(self, readings: Readings) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "vws_requests",
            "SOAP requests answered, by operation and outcome (ok, or the fault's name)",
            ["service", "operation", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "vws_request_duration_seconds",
            "Time from a whole request to its reply",
            ["service", "operation"],
            registry=self.registry,
        )
        self.registry.register(_State(readings))

    def answered(self, answer: Answer) -> None:
        self._requests.labels(answer.service, answer.operation, answer.outcome).inc()
        self._latency.labels(answer.service, answer.operation).observe(answer.seconds)

    def page(self, environ: dict, start_response: StartResponse) -> list[bytes]:
        """The WSGI page ``/metrics``."""
        body = generate_latest(self.registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]
