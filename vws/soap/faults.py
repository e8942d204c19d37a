"""Which SOAP fault each operation answers for each kind of VwsError.

The WSDL declares a fixed set of faults per operation; this table is where a domain
error meets that declaration. Anything unexpected is logged with an incident key
and reported, as GT4 did, as the operation's general fault naming that key.
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from vws import errors
from vws.wsrf import notification
from vws.wsrf.basefaults import base_fault
from vws.xmlns import CTX, ENSEMBLE, SOAP_ENV, STATUS, TYPES, WSNT, WSRL, WSRP, qname

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultTable:
    """Fault element QNames by error class; ``general`` covers the rest (or a plain fault)."""

    general: str | None
    specific: dict[type[errors.VwsError], str] = field(default_factory=dict)

    def element_for(self, error: errors.VwsError) -> str | None:
        for kind in type(error).__mro__:
            if kind in self.specific:
                return self.specific[kind]
        return self.general


def _types(local: str) -> str:
    return qname(TYPES, local)


_UNKNOWN_WORKSPACE = {errors.UnknownResource: _types("WorkspaceUnknownFault")}
_DISABLED = {errors.OperationDisabled: _types("OperationDisabledFault")}

CREATE = FaultTable(
    _types("WorkspaceCreationFault"),
    {
        errors.InvalidMetadata: _types("WorkspaceMetadataFault"),
        errors.MalformedMessage: _types("WorkspaceMetadataFault"),
        errors.RequestDenied: _types("WorkspaceResourceRequestDeniedFault"),
        errors.NotAuthorized: _types("WorkspaceResourceRequestDeniedFault"),
        errors.SchedulingFailed: _types("WorkspaceSchedulingFault"),
    },
)
AVAILABILITY = FaultTable(
    _types("WorkspaceSchedulingFault"),
    {
        errors.InvalidMetadata: _types("WorkspaceMetadataFault"),
        errors.MalformedMessage: _types("WorkspaceMetadataFault"),
    },
)
START = FaultTable(_types("WorkspaceStartFault"), {**_UNKNOWN_WORKSPACE, **_DISABLED})
SHUTDOWN = FaultTable(_types("WorkspaceShutdownFault"), {**_UNKNOWN_WORKSPACE, **_DISABLED})
PROPERTIES = FaultTable(
    None,
    {
        errors.UnknownResource: qname(WSRP, "ResourceUnknownFault"),
        errors.InvalidPropertyName: qname(WSRP, "InvalidResourcePropertyQNameFault"),
    },
)
_UNMODIFIABLE = qname(WSRP, "UnableToModifyResourcePropertyFault")
_INVALID_CONTENT = qname(WSRP, "InvalidSetResourcePropertiesRequestContentFault")
SET_PROPERTIES = FaultTable(
    qname(WSRP, "SetResourcePropertyRequestFailedFault"),
    {
        **PROPERTIES.specific,
        errors.MalformedMessage: _INVALID_CONTENT,
        errors.InvalidMetadata: _INVALID_CONTENT,
        errors.RequestDenied: _UNMODIFIABLE,
        errors.SchedulingFailed: _UNMODIFIABLE,
        errors.IllegalState: _UNMODIFIABLE,
        errors.BackendError: _UNMODIFIABLE,
    },
)
QUERY = FaultTable(
    None,
    {
        **PROPERTIES.specific,
        errors.UnknownQueryDialect: qname(WSRP, "UnknownQueryExpressionDialectFault"),
        errors.InvalidQuery: qname(WSRP, "InvalidQueryExpressionFault"),
        errors.QueryEvaluationFailed: qname(WSRP, "QueryEvaluationErrorFault"),
    },
)
DESTROY = FaultTable(
    qname(WSRL, "ResourceNotDestroyedFault"), {errors.UnknownResource: qname(WSRL, "ResourceUnknownFault")}
)
SET_TERMINATION_TIME = FaultTable(
    qname(WSRL, "UnableToSetTerminationTimeFault"),
    {
        errors.UnknownResource: qname(WSRL, "ResourceUnknownFault"),
        errors.InvalidTerminationTime: qname(WSRL, "TerminationTimeChangeRejectedFault"),
    },
)
_UNKNOWN_RESOURCE = {errors.UnknownResource: qname(WSNT, "ResourceUnknownFault")}  # WSN declares its own
_TOPIC_FAULTS = {
    notification.UnknownTopicDialect: qname(WSNT, "TopicPathDialectUnknownFault"),
    notification.InvalidTopicExpression: qname(WSNT, "InvalidTopicExpressionFault"),
    notification.TopicNotSupported: qname(WSNT, "TopicNotSupportedFault"),
}
SUBSCRIBE = FaultTable(qname(WSNT, "SubscribeCreationFailedFault"), {**_UNKNOWN_RESOURCE, **_TOPIC_FAULTS})
GET_CURRENT_MESSAGE = FaultTable(
    None,
    {
        **_UNKNOWN_RESOURCE,
        **_TOPIC_FAULTS,
        notification.NoCurrentMessage: qname(WSNT, "NoCurrentMessageOnTopicFault"),
    },
)
PAUSE_SUBSCRIPTION = FaultTable(qname(WSNT, "PauseFailedFault"), _UNKNOWN_RESOURCE)
RESUME_SUBSCRIPTION = FaultTable(qname(WSNT, "ResumeFailedFault"), _UNKNOWN_RESOURCE)
ENSEMBLE_OPERATION = FaultTable(qname(ENSEMBLE, "WorkspaceEnsembleFault"), _UNKNOWN_WORKSPACE)
STATUS_QUERY = FaultTable(qname(STATUS, "WorkspaceStatusFault"))
CONTEXT = FaultTable(qname(CTX, "NimbusContextualizationFault"))  # the one fault the broker declares
# Before an operation is known (unreadable envelope, failed signature): a plain fault.
ENVELOPE = FaultTable(None)


def fault_body(error: BaseException, table: FaultTable, now: datetime) -> etree._Element:
    """The soapenv:Fault for ``error``, with a WS-BaseFaults detail where one is declared."""
    if not isinstance(error, errors.VwsError):
        incident = uuid.uuid4()
        log.error("unexpected internal problem, incident %s", incident, exc_info=error)
        error = errors.VwsError(f"Unexpected internal service problem; incident key: {incident}")
    prefix, namespace, code = error.fault_code
    fault = etree.Element(qname(SOAP_ENV, "Fault"), nsmap={"soapenv": SOAP_ENV, prefix: namespace})
    etree.SubElement(fault, "faultcode").text = f"{prefix}:{code}"
    etree.SubElement(fault, "faultstring").text = error.description
    detail_tag = table.element_for(error)
    if detail_tag is not None:
        detail = etree.SubElement(fault, "detail")
        detail.append(base_fault(detail_tag, error.description, now, cause=error.cause))
    return fault
