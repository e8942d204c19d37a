"""The HTTP face of vws: routes /wsrf/services/* to port types, WSDL and schemas.

``POST /wsrf/services/<Service>`` is a SOAP call; ``GET /wsrf/services/<Service>?wsdl``
returns the hand-written WSDL in ``wsdl/`` with its soap:address pointing here, and
``GET /wsrf/services/<path>.xsd|.wsdl`` serves the files it imports. Outside
/wsrf/services/, plain GET pages for operators (``/health``, ``/metrics``) are served as given,
and ``mounts`` take every request under their path prefix (the context agents' door, ``/ctx/``).
"""

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from lxml import etree

WSDL_DIR = Path(__file__).resolve().parents[2] / "wsdl"
SERVICES_PATH = "/wsrf/services/"
_SOAP_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap/}address"

StartResponse = Callable[[str, list[tuple[str, str]]], object]
WsgiApp = Callable[[dict, StartResponse], Iterable[bytes]]


class Router:
    def __init__(
        self,
        services: Mapping[str, WsgiApp],
        base_url: str,
        wsdl_dir: Path = WSDL_DIR,
        pages: Mapping[str, WsgiApp] | None = None,
        mounts: Mapping[str, WsgiApp] | None = None,
    ) -> None:
        self._services = dict(services)
        self._pages = dict(pages or {})
        self._mounts = dict(mounts or {})
        self._wsdl_dir = wsdl_dir.resolve()
        self._wsdl = {name: self._service_wsdl(name, base_url) for name in self._services}

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in self._pages:
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                return _plain(start_response, "405 Method Not Allowed", "only GET\n")
            return self._pages[path](environ, start_response)
        for prefix, app in self._mounts.items():
            if path.startswith(prefix):
                return app(environ, start_response)
        if not path.startswith(SERVICES_PATH):
            return _plain(start_response, "404 Not Found", "no such service\n")
        name = path[len(SERVICES_PATH) :]
        method = environ.get("REQUEST_METHOD")
        if name in self._services and method == "POST":
            return self._services[name](environ, start_response)
        if method != "GET":
            return _plain(start_response, "405 Method Not Allowed", "SOAP calls are POSTed\n")
        if name in self._wsdl and environ.get("QUERY_STRING", "").lower() == "wsdl":
            return _xml(start_response, self._wsdl[name])
        return self._schema_file(name, start_response)

    def _service_wsdl(self, name: str, base_url: str) -> bytes:
        document = etree.parse(str(self._wsdl_dir / f"{name}.wsdl"))
        for address in document.iter(_SOAP_ADDRESS):
            address.set("location", base_url + name)
        return etree.tostring(document, xml_declaration=True, encoding="UTF-8")

    def _schema_file(self, relative: str, start_response: StartResponse) -> Iterable[bytes]:
        candidate = (self._wsdl_dir / relative).resolve()
        if (
            candidate.suffix not in (".wsdl", ".xsd")
            or not candidate.is_relative_to(self._wsdl_dir)
            or not candidate.is_file()
        ):
            return _plain(start_response, "404 Not Found", "no such document\n")
        return _xml(start_response, candidate.read_bytes())


def _xml(start_response: StartResponse, body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def health_page(problem: Callable[[], str | None]) -> WsgiApp:
    """``/health`` for a load balancer: 200 while ``problem`` finds none, else 503 saying what it is."""

    def page(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        reason = problem()
        if reason is None:
            return _plain(start_response, "200 OK", "ok\n")
        return _plain(start_response, "503 Service Unavailable", f"unhealthy: {reason}\n")

    return page


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
