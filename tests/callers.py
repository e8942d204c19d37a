"""Services for tests that need several callers or their own config sections.

HeaderGate is a TEST DOUBLE of the security layer: it believes an ``X-Test-Identity``
HTTP header. It exists so end-to-end tests can play two grid users against one
service without certificates; no real deployment may use it.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from lxml import etree

from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client
from vws.clock import Clock
from vws.service import Service
from vws.soap.gatekeeper import Admission, OpenGate
from vws.workspace.caller import Caller

IDENTITY_HEADER = "X-Test-Identity"
ALICE = "/O=Grid/OU=Example/CN=Alice"
BOB = "/O=Grid/OU=Example/CN=Bob"


class HeaderGate(OpenGate):
    """Test double: the caller is whoever the X-Test-Identity header says, an admin when X-Test-Admin is yes."""

    def admit(self, envelope: etree._Element, environ: Mapping[str, object]) -> Admission:
        admission = super().admit(envelope, environ)
        identity = environ.get("HTTP_X_TEST_IDENTITY")
        caller = Caller(str(identity), admin=environ.get("HTTP_X_TEST_ADMIN") == "yes")
        return admission if not identity else Admission(caller, admission.body, admission.headers)


@contextmanager
def serve(state_dir: Path, clock: Clock, **sections: Mapping[str, object]) -> Iterator[Service]:
    """A started service with HeaderGate and some config sections overridden."""
    config = make_config(state_dir)
    for section, values in sections.items():
        config = config.with_overrides(section, **values)
    service = Service(config, clock=clock, gatekeeper=HeaderGate())
    service.start()
    try:
        yield service
    finally:
        service.stop()


def client(service: Service, identity: str, admin: bool = False) -> Gt4Client:
    headers = {IDENTITY_HEADER: identity, **({"X-Test-Admin": "yes"} if admin else {})}
    return Gt4Client(service.base_url, headers=headers, settle=settler(service))
