"""One error root: every error vws or its clients report is a VwsError that names its own faultcode."""

from datetime import UTC, datetime

import pytest

from clients import legacy
from clients.errors import ClientError
from vws import errors
from vws.config import ConfigError
from vws.security.gridmap import GridMapSyntaxError
from vws.soap.faults import ENVELOPE, fault_body
from vws.wsrf import notification
from vws.xmlns import SOAP_ENV

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# The caller's doing, per SOAP 1.1 4.4.1; every other error is the server's.
CLIENT_ERRORS = (
    errors.MalformedMessage,
    errors.InvalidMetadata,
    errors.RequestDenied,
    errors.UnknownResource,
    errors.IllegalState,
    errors.OperationDisabled,
    errors.Unsupported,
    errors.InvalidPropertyName,
    errors.InvalidQuery,
    errors.QueryEvaluationFailed,
    errors.UnknownQueryDialect,
    errors.InvalidTerminationTime,
    errors.AuthenticationFailed,
    errors.NotAuthorized,
    notification.TopicNotSupported,
    notification.UnknownTopicDialect,
    notification.InvalidTopicExpression,
    notification.NoCurrentMessage,
)
SERVER_ERRORS = (errors.SchedulingFailed, errors.BackendError, errors.Cancelled, ConfigError, errors.VwsError)


def faultcode(error: errors.VwsError) -> tuple[str, str]:
    fault = fault_body(error, ENVELOPE, NOW)
    prefix, _, local = fault.findtext("faultcode").partition(":")
    return fault.nsmap[prefix], local


@pytest.mark.parametrize("kind", CLIENT_ERRORS, ids=lambda kind: kind.__name__)
def test_the_callers_errors_are_client_faults(kind):
    assert faultcode(kind("refused")) == (SOAP_ENV, "Client")


@pytest.mark.parametrize("kind", SERVER_ERRORS, ids=lambda kind: kind.__name__)
def test_the_rest_are_server_faults(kind):
    assert faultcode(kind("failed")) == (SOAP_ENV, "Server")


def test_a_spec_gives_some_errors_a_code_of_their_own():
    assert faultcode(errors.VersionMismatch("SOAP 1.2")) == (SOAP_ENV, "VersionMismatch")
    assert faultcode(errors.WrongDestination("elsewhere")) == (
        "http://schemas.xmlsoap.org/ws/2004/03/addressing",
        "DestinationUnreachable",
    )


def test_a_new_error_states_its_faultcode_in_its_own_class_only():
    class Overbooked(errors.SchedulingFailed):
        fault_code = errors.FaultCode("vws", "urn:example", "Overbooked")

    class Subpoenaed(errors.RequestDenied):
        pass

    assert faultcode(Overbooked("no room")) == ("urn:example", "Overbooked")
    assert faultcode(Subpoenaed("no")) == (SOAP_ENV, "Client")


@pytest.mark.parametrize("kind", [ConfigError, GridMapSyntaxError, ClientError, legacy.UsageError])
def test_configuration_and_client_errors_share_the_root(kind):
    error = kind("cannot use it")
    assert isinstance(error, errors.VwsError) and error.description == str(error) == "cannot use it"
