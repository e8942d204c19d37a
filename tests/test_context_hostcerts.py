"""Host certificates through the context: issued by the service's CA for a member that asks, revoked on destroy.

A member requiring the data ``vws-hostcert`` gets, in its complete answer, a certificate and
key for its leased hostname signed by the development CA; ``openssl verify`` accepts it
against the trust directory with the CA's CRL, and refuses it once the workspace is destroyed.
"""

import base64
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests import contexts
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.security import ca
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.xmlns import TYPES, qname

HOSTCERT = "vws-hostcert"


@pytest.fixture
def service(tmp_path, clock):
    ca.init(tmp_path / "state" / "security", clock, hostname="vws.test")
    running = Service(make_config(tmp_path / "state"), clock=clock)
    running.start()
    yield running
    running.stop()


def verify(trust_dir: Path, cert: Path, when) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """openssl verify at ``when`` (the service runs on a manual clock), with the CA's CRL."""
    command = ["openssl", "verify", "-attime", str(int(when.timestamp())), "-crl_check", "-CApath", str(trust_dir)]
    return subprocess.run([*command, str(cert)], capture_output=True, text=True)


def certificate_of(answer: str) -> str:
    (encoded,) = [line.split()[2] for line in answer.splitlines() if line.startswith(f"data {HOSTCERT} ")]
    return base64.b64decode(encoded).decode()


def test_a_member_gets_a_host_certificate_the_crl_revokes_on_destroy(gt4, service, tmp_path, clock):
    context = contexts.create_context(gt4)
    created = contexts.join(gt4, context.epr, requires_data=(HOSTCERT,), lock=True)
    ((ip, hostname),) = contexts.addresses(created)
    status, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(ip, hostname))
    assert contexts.state_of(answer) == "complete", answer
    pem = certificate_of(answer)
    cert = x509.load_pem_x509_certificate(pem.encode())
    key = load_pem_private_key(pem.encode(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert cert.subject.rfc4514_string().startswith(f"CN=host/{hostname},")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [hostname]
    lease_ends = clock.now() + timedelta(minutes=30)  # the sample's minDuration
    assert abs(cert.not_valid_after_utc - lease_ends) < timedelta(seconds=2)
    # Asked again, the same certificate.
    assert certificate_of(contexts.agent_post(context, "retrieve", contexts.identity_line(ip, hostname))[1]) == pem

    path = tmp_path / "hostcert.pem"
    path.write_text(pem)
    trust = tmp_path / "state" / "security" / "certificates"
    accepted = verify(trust, path, clock.now())
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    gt4.destroy(created_eprs(created)[0])
    refused = verify(trust, path, clock.now())
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr


def test_without_a_ca_a_member_asking_for_a_certificate_is_refused(tmp_path, clock):
    running = Service(make_config(tmp_path / "state"), clock=clock)
    running.start()
    try:
        gt4 = Gt4Client(running.base_url, settle=settler(running))
        context = contexts.create_context(gt4)
        with pytest.raises(SoapFault) as refused:
            contexts.join(gt4, context.epr, requires_data=(HOSTCERT,))
        assert refused.value.element == qname(TYPES, "WorkspaceResourceRequestDeniedFault")
        assert "no CA to issue host certificates" in refused.value.description
        assert running.manager.workspaces(SERVICE) == []
        gt4.close()
    finally:
        running.stop()
