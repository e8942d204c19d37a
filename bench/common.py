"""Helpers the benchmarks share: a service in a temp dir, timing, percentiles."""

import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree  # noqa: E402

from vws.config import Config, ServiceConfig  # noqa: E402
from vws.pool import testnode  # noqa: E402
from vws.service import Service, service_limits  # noqa: E402
from vws.soap.server import HttpServer  # noqa: E402


@contextmanager
def running_service(pool: dict[str, object] | None = None, ec2: dict[str, object] | None = None, **policy: object):
    """A started service in a temp dir; ``pool`` and ``ec2`` override keys of those sections."""
    with tempfile.TemporaryDirectory() as state:
        config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=Path(state), insecure=True)
        config = config.with_overrides("pool", **(pool or {})).with_overrides("ec2", **(ec2 or {}))
        service = Service(config.with_overrides("policy", **policy))
        service.start()
        try:
            yield service
        finally:
            service.stop()


def big_pool(root: Path, addresses: int) -> dict[str, Path]:
    """[pool] settings for load and scale runs: one test-driver node that never runs out of CPUs or
    memory, and a network pool ``public`` (the samples' NICs ask for it) of ``addresses`` addresses."""
    pools = root / "network-pools"
    pools.mkdir(parents=True)
    lines = (f"h{n:05d} 10.{n // 65536}.{n // 256 % 256}.{n % 256} none none none" for n in range(1, addresses + 1))
    (pools / "public").write_text("none\n" + "\n".join(lines) + "\n")
    memory_mb, cpus = 1 << 26, 1 << 14
    uri = testnode.write_node(root / "big-node.xml", memory_mb, cpus)
    (root / "nodes.conf").write_text(f"[big]\nuri = {uri}\nmemory = {memory_mb}\ncpus = {cpus}\n")
    return {"nodes_file": root / "nodes.conf", "network_pools_dir": pools}


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


def exchange(connection: socket.socket, request: bytes, buffer: bytearray) -> int:
    """Send one request on a kept-alive connection and read its reply (Content-Length framed); its status."""
    connection.sendall(request)
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        buffer += _received(connection)
    status, *fields = bytes(buffer[:end]).split(b"\r\n")
    length = next(int(field[15:]) for field in fields if field[:15].lower() == b"content-length:")
    while len(buffer) < end + 4 + length:
        buffer += _received(connection)
    del buffer[: end + 4 + length]
    return int(status[9:12])


def _received(connection: socket.socket) -> bytes:
    data = connection.recv(262144)
    if not data:
        raise ConnectionError("the server closed the connection")
    return data


@dataclass
class Load:
    latencies: list[float]
    seconds: float
    closed: int  # kept-alive connections the server closed under its clients (each reconnected)


def _clients(address: tuple[str, int], request: bytes, clients: int, until: float) -> tuple[list[float], int]:
    """In a load process: ``clients`` threads, each on its own keep-alive connection, until ``until``."""
    latencies: list[float] = []
    closed = []

    def client() -> None:
        buffer = bytearray()
        connection = socket.create_connection(address)
        while (started := time.perf_counter()) < until:
            try:
                status = exchange(connection, request, buffer)
            except ConnectionError:  # not a reset: a close between replies, as a server may; counted
                closed.append(1)
                connection.close()
                connection, buffer = socket.create_connection(address), bytearray()
                continue
            latencies.append(time.perf_counter() - started)
            assert status == 200, status
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(closed)


def load(address: tuple[str, int], request: bytes, clients: int = 20, seconds: float = 5) -> Load:
    """``clients`` concurrent keep-alive clients in 4 processes (the server's GIL is its own) for ``seconds``."""
    processes = 4
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(abs, range(processes))  # started before the clock runs
        until = time.perf_counter() + seconds
        shares = [clients // processes + (n < clients % processes) for n in range(processes)]
        results = pool.starmap(_clients, [(address, request, share, until) for share in shares])
    return Load([latency for latencies, _ in results for latency in latencies], seconds, sum(c for _, c in results))


def load_report(name: str, run: Load) -> dict[str, float]:
    ordered = sorted(run.latencies)
    figures = {
        "per_s": len(ordered) / run.seconds,
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1e3,
    }
    closed = f"  ({run.closed} connections closed by the server)" if run.closed else ""
    print(
        f"{name:<44} {figures['per_s']:7.0f}/s  p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms"
        + closed
    )
    return figures


def echo_app(environ: dict, start_response: Callable) -> list[bytes]:
    """A bare lxml echo: parse the request's envelope and send it back."""
    request = etree.fromstring(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
    body = etree.tostring(request)
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


@contextmanager
def front(app: Callable, threads: int = 16):
    """``app`` served by vws's HTTP front with the default limits; yields its address."""
    service = ServiceConfig(threads=threads)
    server = HttpServer(service_limits(service))
    address = server.bind("127.0.0.1", 0)
    server.start(app)
    try:
        yield address
    finally:
        server.stop()
