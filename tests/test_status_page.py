"""The admin status page, as an administrator's headless Chromium sees it, and refused to everyone else."""

import http.client
import subprocess
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import html

from clients import monitor
from tests.browser import Browser
from tests.callers import ALICE, client, serve
from tests.deployments import Gt4Remote, wait_options
from tests.gt4wire import SAMPLES, created_eprs
from vws.cli.admin import main as admin_main
from vws.clock import SystemClock
from vws.config import Config
from vws.security import tls
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.service import Service
from vws.soap import status_page
from vws.soap.status_links import StatusLinks, link_key
from vws.soap.wsgi import SERVICES_PATH
from vws.xmlns import WORKSPACE, qname

ADMIN = "/O=Grid/OU=Example/CN=Operator"
ADMIN_TOOL = Path(sys.executable).parent / "vws-admin"
USER = "/O=Grid/OU=vws/OU=local/CN=vws user"  # the development CA's user (vws-admin ca init)


def root(service: Service) -> str:
    return service.base_url.split(SERVICES_PATH)[0]


def status_url(tmp_path: Path, service: Service) -> str:
    """A link minted by the operator's tool, as the README tells an admin to get one."""
    config = tmp_path / "vws.conf"
    config.write_text(f"[security]\nadmin_dns = {ADMIN}\n")
    state_dir = service.config.service.state_dir
    command = [ADMIN_TOOL, "--config", config, "--state-dir", state_dir, "status-url", "--url", root(service)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def get(url: str) -> tuple[int, dict[str, str], str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def admin_service(tmp_path):
    # The signed link carries real time: the service reads the same clock as the tool.
    pool = {"allowed_image_hosts": ("127.0.0.1",)}  # an image there that cannot be fetched makes a failure
    with serve(tmp_path / "state", SystemClock(), security={"admin_dns": (ADMIN,)}, pool=pool) as running:
        yield running


def deploy(
    service: Service, tmp_path: Path, image: str = "file://ttylinux-xen", target: str = "Running", owner: str = ALICE
) -> str:
    metadata = tmp_path / "workspace.xml"
    metadata.write_text((SAMPLES / "workspace.xml").read_text().replace("file://ttylinux-xen", image))
    with closing(client(service, owner)) as user:
        (epr,) = created_eprs(user.create(metadata))
        assert monitor.wait_for([epr], target, Gt4Remote(user), wait_options(timeout=60), service.base_url) == 0
    return epr.key(qname(WORKSPACE, "WorkspaceKey"))


UNFETCHABLE = "http://127.0.0.1:9/disk.img"  # the discard port: nothing answers


def test_an_admin_sees_nodes_workspaces_leases_and_failures_in_chromium(admin_service, tmp_path):
    running = deploy(admin_service, tmp_path)
    failed = deploy(admin_service, tmp_path, image=UNFETCHABLE, target="Corrupted")
    url = status_url(tmp_path, admin_service)
    browser = Browser(tmp_path / "chromium")

    page = html.fromstring(browser.dom(url))
    assert page.findtext(".//h1") == "vws status"
    assert f"signed in as {ADMIN}" in page.find(".//p").text_content()
    tables = {
        table.getprevious().text_content(): table for table in page.iter("table") if table.getprevious() is not None
    }
    rows = lambda title: [[cell.text_content() for cell in row.iter("td")] for row in tables[title].iter("tr")][1:]  # noqa: E731
    (node,) = rows("Nodes")
    assert node[:4] == ["node1", "yes", "256", str(16384 - 256)]  # the Corrupted one gave its share back
    workspaces = {row[0]: row for row in rows("Workspaces (2 live)")}
    assert workspaces[running][1:3] == [ALICE, "running"]
    assert workspaces[failed][2] == "corrupted" and UNFETCHABLE in workspaces[failed][6]
    assert [row[:2] for row in rows("Leases")] == [["public", "1"]]
    (failure,) = rows("Recent failures")
    assert failure[1:3] == [failed, ALICE] and UNFETCHABLE in failure[3]

    shot = browser.screenshot(url, "status-page.png")
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_chromium_without_a_link_is_refused(admin_service, tmp_path):
    text = html.fromstring(Browser(tmp_path / "chromium").dom(root(admin_service) + "/status")).text_content()
    assert "403 Forbidden: the status page is for administrators (no signed link)" in text


def test_the_page_forbids_scripts_framing_caching_and_referrers(admin_service, tmp_path):
    status, headers, body = get(status_url(tmp_path, admin_service))
    assert status == 200 and "<script" not in body
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert (headers["Cache-Control"], headers["Referrer-Policy"], headers["X-Frame-Options"]) == (
        "no-store",
        "no-referrer",
        "DENY",
    )


def test_a_value_from_a_user_is_escaped_not_markup(admin_service, tmp_path):
    deploy(admin_service, tmp_path, owner="/O=Grid/CN=<b>bold</b>")
    _, _, body = get(status_url(tmp_path, admin_service))
    assert "/O=Grid/CN=&lt;b&gt;bold&lt;/b&gt;" in body and "<b>" not in body


def test_a_big_pool_shows_its_oldest_workspaces_and_counts_the_rest(admin_service, tmp_path, monkeypatch):
    monkeypatch.setattr(status_page, "MAX_ROWS", 1)  # the page reads only so many, however many live
    first, _ = deploy(admin_service, tmp_path), deploy(admin_service, tmp_path)
    _, _, body = get(status_url(tmp_path, admin_service))
    page = html.fromstring(body)
    (table,) = [h2.getnext() for h2 in page.iter("h2") if h2.text == "Workspaces (2 live)"]
    assert [row.findtext("td") for row in table.iter("tr")][1:] == [first]
    assert "1 more not shown." in body


def link(service: Service, clock, dn: str = ADMIN, minutes: int = 10) -> str:  # type: ignore[no-untyped-def]
    links = StatusLinks(link_key(service.config.service.state_dir), clock, frozenset({dn}))
    return f"{root(service)}/status?{links.mint(dn, timedelta(minutes=minutes))}"


@pytest.fixture
def manual_admin_service(tmp_path, clock):
    with serve(tmp_path / "state", clock, security={"admin_dns": (ADMIN,)}) as running:
        yield running


def test_an_expired_link_is_refused(manual_admin_service, clock):
    url = link(manual_admin_service, clock)
    assert get(url)[0] == 200
    clock.advance(timedelta(minutes=10))
    status, _, body = get(url)
    assert (status, body) == (403, "403 Forbidden: the status page is for administrators (the link has expired).\n")


def test_a_link_for_someone_not_an_admin_is_refused(manual_admin_service, clock):
    status, _, body = get(link(manual_admin_service, clock, dn=ALICE))
    assert status == 403 and "is no longer an admin" in body


def test_a_tampered_link_is_refused(manual_admin_service, clock):
    url = link(manual_admin_service, clock).replace("until=", "until=1")  # a later expiry, same signature
    status, _, body = get(url)
    assert status == 403 and "signature does not hold" in body


def test_a_link_from_another_service_key_is_refused(manual_admin_service, clock, tmp_path):
    other = StatusLinks(link_key(tmp_path), clock, frozenset({ADMIN}))
    status, _, _ = get(f"{root(manual_admin_service)}/status?{other.mint(ADMIN, timedelta(minutes=5))}")
    assert status == 403


def test_the_link_key_is_readable_by_the_service_user_only(manual_admin_service):
    key = manual_admin_service.config.service.state_dir / "status-link.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_the_tool_refuses_a_dn_that_is_not_an_admin(admin_service, tmp_path):
    config = tmp_path / "vws.conf"
    config.write_text(f"[security]\nadmin_dns = {ADMIN}\n")
    state_dir = admin_service.config.service.state_dir
    command = [ADMIN_TOOL, "--config", config, "--state-dir", state_dir, "status-url", "--dn", ALICE]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and f"{ALICE} is not in [security] admin_dns" in done.stderr


@pytest.mark.parametrize("admin", [True, False])
def test_over_gsi_transport_the_admin_certificate_is_enough(tmp_path, admin):
    state_dir = tmp_path / "tls"
    assert admin_main(["--state-dir", str(state_dir), "ca", "init", "--hostname", "localhost"]) == 0
    dev = DevCA(state_dir / "security")
    config = Config().with_overrides("service", listen="127.0.0.1:0", agent_listen="127.0.0.1:0", state_dir=state_dir)
    config = config.with_overrides("security", tls=True, require_signature=False, admin_dns=(USER,) if admin else ())
    service = Service(config)
    service.start()
    try:
        context = tls.client_context(
            create_proxy(dev.user(), SystemClock()).write(tmp_path / "proxy.pem"), dev.trust_dir
        )
        parts = urlsplit(service.base_url)
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
        connection.request("GET", "/status")
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
    finally:
        service.stop()
    if admin:
        assert response.status == 200 and f"signed in as {USER}" in body
    else:
        assert response.status == 403 and "no signed link" in body
