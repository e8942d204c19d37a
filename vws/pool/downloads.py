"""http(s) images: fetched into the repository under a size cap, optionally pinned by digest.

- **Hosts**: the URL, and every redirect it takes, must name a host of
  ``allowed_image_hosts`` (a redirect must not lead the service anywhere else).
- **Size cap** (``max_image_download_mb``): refused before a byte is read when the server
  announces more in Content-Length, and as soon as it sends more otherwise.
- **Pin**: a location ending in ``#sha256=<64 hex digits>`` is checked after download.
  The fragment is never sent (it is not part of the request), and it does not name the
  download: every location of one URL shares one file, used for a pinned location only
  while its digest matches the pin.
- Whatever fails, no partial file is left and the previous download stays as it was.
  ``fetch`` returns the sha256 it computed as the bytes streamed in; the repository records
  it with every other image's (``repository.checksum``), so neither a pin checked against a file
  already there nor the define that copies it reads the file again to hash it.
"""

import hashlib
import http.client
import os
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vws.errors import BackendError, InvalidMetadata, RequestDenied
from vws.pool.progress import Progress

SCHEMES = ("http", "https")
_PIN = re.compile(r"sha256=([0-9a-fA-F]{64})")
_CHUNK = 1 << 20  # also the progress step: a download is slow enough to report each MiB
_TIMEOUT = 60


class ImageTooLarge(RequestDenied):
    """The server announced or sent more than ``max_image_download_mb``."""


class DigestMismatch(BackendError):
    """What was downloaded is not what the location's ``#sha256=`` pinned."""


@dataclass(frozen=True)
class Remote:
    url: str  # without the fragment: what is fetched, and what names the download
    sha256: str | None = None  # the pinned digest, lower case


def is_remote(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme.lower() in SCHEMES


def parse(location: str) -> Remote:
    url, fragment = urllib.parse.urldefrag(location)
    if not fragment:
        return Remote(url)
    pin = _PIN.fullmatch(fragment)
    if pin is None:
        raise InvalidMetadata(f"image {location}: the only fragment understood is #sha256=<64 hex digits>")
    return Remote(url, pin.group(1).lower())


def check_host(url: str, allowed_hosts: Iterable[str]) -> None:
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in SCHEMES or host not in allowed_hosts:
        raise RequestDenied(f"image host {host or '(none)'} of {url} is not in allowed_image_hosts")


def fetch(remote: Remote, target: Path, *, allowed_hosts: frozenset[str], limit_bytes: int, progress: Progress) -> str:
    """Download ``remote`` into ``target``, replacing it only once the whole file checked out; its sha256."""
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            digest = _receive(remote.url, out, allowed_hosts, limit_bytes, progress)
        if remote.sha256 is not None and digest != remote.sha256:
            raise DigestMismatch(f"image {remote.url} has sha256 {digest}; the location pins {remote.sha256}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return digest


def _receive(url: str, out: BinaryIO, allowed_hosts: frozenset[str], limit_bytes: int, progress: Progress) -> str:
    """Stream the body into ``out`` under the cap, reporting progress; its sha256."""
    opener = urllib.request.build_opener(_AllowedRedirects(allowed_hosts))
    try:
        with opener.open(url, timeout=_TIMEOUT) as response:
            announced = _content_length(response)
            if limit_bytes and announced is not None and announced > limit_bytes:
                raise ImageTooLarge(f"image {url} announces {announced} bytes; {_cap(limit_bytes)}")
            digest, done = hashlib.sha256(), 0
            while chunk := response.read(_CHUNK):
                done += len(chunk)
                if limit_bytes and done > limit_bytes:
                    raise ImageTooLarge(f"image {url} sent more than the cap; {_cap(limit_bytes)}")
                digest.update(chunk)
                out.write(chunk)
                progress(done, announced or 0)
    except (OSError, http.client.HTTPException) as exc:
        raise BackendError(f"cannot download image {url}: {exc}") from None
    if announced is not None and done < announced:  # http.client reads a cut body as a short one
        raise BackendError(f"cannot download image {url}: the connection closed after {done} of {announced} bytes")
    progress(done, done)
    return digest.hexdigest()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    text = response.headers.get("Content-Length")
    return int(text) if text and text.strip().isdigit() else None


def _cap(limit_bytes: int) -> str:
    return f"[pool] max_image_download_mb allows {limit_bytes >> 20} MB"


class _AllowedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self._allowed = allowed_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        try:
            check_host(urllib.parse.urljoin(req.full_url, newurl), self._allowed)
        except RequestDenied:
            fp.close()
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
