"""http(s) images against a real local HTTP server: hosts, the size cap, the sha256 pin, progress."""

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_pool_helpers import cancel, open_pool, raised_within, reserve
from vws.config import PoolConfig
from vws.errors import BackendError, Cancelled, InvalidMetadata, RequestDenied
from vws.pool import downloads
from vws.pool.machine import DiskRequest, KernelRequest, MachineRequest
from vws.pool.storage.repository import Repository, checksum
from vws.store.database import Store

MIB = 1 << 20


class ImageServer:
    """Serves ``files`` by name under five behaviours, chosen by the first path segment:
    ``/files/`` (with Content-Length), ``/stream/`` (none: read until close), ``/short/``
    (announces twice the size it sends), ``/gated/`` (as ``/files/``, but the second half
    only once ``gate`` is set) and ``/redirect/<url>``. Records each request line."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gate = threading.Event()
        self.requests: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self._server.server_address[1]}{path}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.requestline)
                kind, _, name = self.path.lstrip("/").partition("/")
                if kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", name)
                    self.end_headers()
                    return
                body = server.files[name]
                self.send_response(200)
                if kind != "stream":
                    self.send_header("Content-Length", str(len(body) * (2 if kind == "short" else 1)))
                self.end_headers()
                if kind == "gated":
                    self.wfile.write(body[: len(body) // 2])
                    server.gate.wait()
                    body = body[len(body) // 2 :]
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with ImageServer() as running:
        yield running


def repository(tmp_path: Path, max_mb: int = 1) -> Repository:
    store = Store(tmp_path / "vws.sqlite")
    return Repository(tmp_path / "repo", store, allowed_hosts=["127.0.0.1"], max_download_mb=max_mb)


def left_in_downloads(repo: Repository) -> list[str]:
    directory = repo.root / ".downloads"
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def pinned(url: str, body: bytes) -> str:
    return f"{url}#sha256={hashlib.sha256(body).hexdigest()}"


def test_http_images_only_from_allowed_hosts_streamed_once(tmp_path, server):
    server.files["disk.img"] = b"x" * 100_000
    url = server.url("/files/disk.img")
    repo = repository(tmp_path)
    first = repo.resolve(url)
    assert first.read_bytes() == b"x" * 100_000
    assert repo.resolve(url) == first and len(server.requests) == 1
    with pytest.raises(RequestDenied, match="allowed_image_hosts"):
        Repository(tmp_path / "repo", repo.store).resolve(url)


def test_a_redirect_must_stay_on_allowed_hosts(tmp_path, server):
    server.files["disk.img"] = b"r" * 1000
    repo = repository(tmp_path)
    inside = repo.resolve(server.url("/redirect/" + server.url("/files/disk.img")))
    assert inside.read_bytes() == b"r" * 1000
    with pytest.raises(RequestDenied, match="localhost"):
        repo.resolve(server.url("/redirect/" + server.url("/files/other.img", host="localhost")))
    assert len(server.requests) == 3  # the refused redirect was not followed


def test_an_announced_size_over_the_cap_is_refused_before_reading(tmp_path, server):
    server.files["big.img"] = b"b" * (MIB + 1)
    repo = repository(tmp_path, max_mb=1)
    with pytest.raises(downloads.ImageTooLarge, match=r"max_image_download_mb allows 1 MB") as refused:
        repo.resolve(server.url("/files/big.img"))
    assert isinstance(refused.value, RequestDenied)
    assert left_in_downloads(repo) == []


def test_a_body_over_the_cap_is_refused_as_it_arrives(tmp_path, server):
    server.files["big.img"] = b"b" * (2 * MIB)
    server.files["exact.img"] = b"e" * MIB
    repo = repository(tmp_path, max_mb=1)
    with pytest.raises(downloads.ImageTooLarge, match="sent more than the cap"):
        repo.resolve(server.url("/stream/big.img"))
    assert left_in_downloads(repo) == []
    assert repo.resolve(server.url("/stream/exact.img")).stat().st_size == MIB  # at the cap is fine


def test_a_body_shorter_than_announced_fails_and_leaves_nothing(tmp_path, server):
    server.files["cut.img"] = b"c" * 5000
    repo = repository(tmp_path)
    with pytest.raises(BackendError, match="cannot download"):
        repo.resolve(server.url("/short/cut.img"))
    assert left_in_downloads(repo) == []


def test_a_pin_is_checked_never_sent_and_shares_the_download_only_when_it_matches(tmp_path, server):
    body = b"p" * 70_000
    server.files["disk.img"] = body
    url = server.url("/files/disk.img")
    repo = repository(tmp_path)
    path = repo.resolve(pinned(url, body))
    assert path.read_bytes() == body
    assert server.requests == ["GET /files/disk.img HTTP/1.1"]  # no fragment on the wire
    assert repo.resolve(url) == path
    assert repo.resolve(f"{url}#sha256={hashlib.sha256(body).hexdigest().upper()}") == path
    assert len(server.requests) == 1  # one download for every location of the URL
    assert repo.key(pinned(url, body)) == repo.key(url) == url
    with pytest.raises(downloads.DigestMismatch, match="pins " + "0" * 64):
        repo.resolve(f"{url}#sha256={'0' * 64}")
    assert len(server.requests) == 2  # a mismatching pin fetched afresh, then refused
    assert path.read_bytes() == body  # the download the others share stays
    assert left_in_downloads(repo) == [path.name]


def test_a_mismatching_pin_leaves_no_file(tmp_path, server):
    server.files["disk.img"] = b"m" * 1000
    repo = repository(tmp_path)
    with pytest.raises(downloads.DigestMismatch):
        repo.resolve(pinned(server.url("/files/disk.img"), b"something else"))
    assert left_in_downloads(repo) == []


@pytest.mark.parametrize("fragment", ["#md5=abc", "#sha256=1234", "#section"])
def test_other_fragments_are_refused(tmp_path, fragment):
    with pytest.raises(InvalidMetadata, match="sha256"):
        repository(tmp_path).resolve("http://127.0.0.1/disk.img" + fragment)


def test_a_download_reports_progress_and_stops_when_the_callback_raises(tmp_path, server):
    server.files["disk.img"] = b"d" * (3 * MIB)
    repo = repository(tmp_path, max_mb=0)
    seen: list[tuple[int, int]] = []
    repo.resolve(server.url("/files/disk.img"), lambda done, total: seen.append((done, total)))
    assert seen[:3] == [(MIB, 3 * MIB), (2 * MIB, 3 * MIB), (3 * MIB, 3 * MIB)]
    assert seen[-1] == (3 * MIB, 3 * MIB)

    def cancel(done: int, total: int) -> None:
        raise Cancelled("workspace 7 is being destroyed")

    with pytest.raises(Cancelled):
        repo.resolve(server.url("/stream/disk.img"), cancel)
    assert [name for name in left_in_downloads(repo) if "partial" in name] == []


def test_waiting_for_another_download_of_the_same_image_can_be_cancelled(tmp_path, server):
    server.files["disk.img"] = b"w" * (2 * MIB)
    url = server.url("/gated/disk.img")
    repo = repository(tmp_path, max_mb=0)
    downloading = threading.Event()
    first = threading.Thread(target=repo.resolve, args=(url, lambda done, total: downloading.set()))
    first.start()
    try:
        assert downloading.wait(10)  # the first download holds the file's lock, half done
        assert isinstance(raised_within(lambda: repo.resolve(url, cancel)), Cancelled)
    finally:
        server.gate.set()
        first.join()
    assert repo.resolve(url).read_bytes() == b"w" * (2 * MIB) and len(server.requests) == 1


def test_a_define_reports_its_kernel_and_initrd_downloads_and_stops_when_the_callback_raises(tmp_path, server):
    server.files["vmlinuz"] = b"k" * (2 * MIB)
    server.files["initrd.gz"] = b"i" * MIB
    store, pool = open_pool(tmp_path / "state", PoolConfig(allowed_image_hosts=("127.0.0.1",)))
    kernel = KernelRequest(server.url("/files/vmlinuz"), server.url("/files/initrd.gz"), "console=ttyS0")
    machine = MachineRequest(memory_mb=64, kernel=kernel)
    placed = reserve(store, pool, machine)[0]
    with pytest.raises(Cancelled):
        pool.define(placed, machine, cancel)
    assert server.requests == ["GET /files/vmlinuz HTTP/1.1"] and pool.domain_states() == {}
    seen: list[tuple[int, int]] = []
    pool.define(placed, machine, lambda done, total: seen.append((done, total)))
    assert seen == [(MIB, 2 * MIB), (2 * MIB, 2 * MIB), (2 * MIB, 2 * MIB), (MIB, MIB), (MIB, MIB)]
    assert pool.domain_states() == {(placed.node, placed.domain): "shutoff"}


def test_a_download_is_hashed_as_it_streams_in_and_never_again(tmp_path, server, monkeypatch):
    body = b"h" * MIB
    server.files["root.img"] = body
    hashed: list[Path] = []
    real = downloads.sha256_file
    monkeypatch.setattr(downloads, "sha256_file", lambda path: hashed.append(path) or real(path))
    store, pool = open_pool(tmp_path / "state", PoolConfig(allowed_image_hosts=("127.0.0.1",)))
    url = server.url("/files/root.img")
    machine = MachineRequest(memory_mb=64, root=DiskRequest(pinned(url, body), "sda1"))
    pool.define(reserve(store, pool, machine)[0], machine)  # the download's digest names the cached base
    download = pool.repository.resolve(pinned(url, body))  # the pin checked against the recorded digest
    assert checksum(store, download) == hashlib.sha256(body).hexdigest()
    assert hashed == [] and len(server.requests) == 1
    assert left_in_downloads(pool.repository) == [download.name]


def test_define_reports_the_download_then_the_copy(tmp_path, server):
    server.files["root.img"] = b"r" * (3 * MIB)
    store, pool = open_pool(tmp_path / "state", PoolConfig(allowed_image_hosts=("127.0.0.1",)))
    machine = MachineRequest(memory_mb=64, root=DiskRequest(server.url("/files/root.img"), "sda1"))
    placed = reserve(store, pool, machine)[0]
    seen: list[tuple[int, int]] = []
    pool.define(placed, machine, lambda done, total: seen.append((done, total)))
    assert seen[0] == (MIB, 3 * MIB)  # only the download reports a MiB in: the copy steps by 64 MiB
    assert seen[-1] == (3 * MIB, 3 * MIB)
    assert pool.domain_states() == {(placed.node, placed.domain): "shutoff"}
