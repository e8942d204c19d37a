"""Every XML namespace URI vws speaks, in one place.

GT4.0 generation: WS-Addressing 2004/03, WSRF/WSN 2004/06 "1.2-draft-01", and the
Virtual Workspace 2008/06 namespaces. Names follow the prefixes GT4 documents use.
"""

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

WSA = "http://schemas.xmlsoap.org/ws/2004/03/addressing"
WSA_ANONYMOUS = WSA + "/role/anonymous"

_OASIS_WSRF = "http://docs.oasis-open.org/wsrf/2004/06/"
WSRP = _OASIS_WSRF + "wsrf-WS-ResourceProperties-1.2-draft-01.xsd"
WSRL = _OASIS_WSRF + "wsrf-WS-ResourceLifetime-1.2-draft-01.xsd"
WSBF = _OASIS_WSRF + "wsrf-WS-BaseFaults-1.2-draft-01.xsd"
WSNT = "http://docs.oasis-open.org/wsn/2004/06/wsn-WS-BaseNotification-1.2-draft-01.xsd"
WSTOP = "http://docs.oasis-open.org/wsn/2004/06/wsn-WS-Topics-1.2-draft-01.xsd"

# Actions of the WSRF operations (responses append "Response").
WSRP_ACTION = "http://docs.oasis-open.org/wsrf/2004/06/wsrf-WS-ResourceProperties/"
WSRL_ACTION = "http://docs.oasis-open.org/wsrf/2004/06/wsrf-WS-ResourceLifetime/"
WSNT_ACTION = "http://docs.oasis-open.org/wsn/2004/06/wsn-WS-BaseNotification/"

XPATH_DIALECT = "http://www.w3.org/TR/1999/REC-xpath-19991116"
TOPIC_SIMPLE = "http://docs.oasis-open.org/wsn/2004/06/TopicExpression/Simple"
TOPIC_CONCRETE = "http://docs.oasis-open.org/wsn/2004/06/TopicExpression/Concrete"
TOPIC_FULL = "http://docs.oasis-open.org/wsn/2004/06/TopicExpression/Full"
# GT4 Java WS Core's own notification types (the xsi:type of a state change's wsnt:Message).
GT4_NOTIFICATION = "http://wsrf.globus.org/core/notification"

WORKSPACE = "http://www.globus.org/2008/06/workspace"
TYPES = WORKSPACE + "/types"
METADATA = WORKSPACE + "/metadata"
DEFINITION = METADATA + "/definition"
LOGISTICS = METADATA + "/logistics"
NEGOTIABLE = WORKSPACE + "/negotiable"
GROUP = WORKSPACE + "/group"
ENSEMBLE = WORKSPACE + "/ensemble"
STATUS = WORKSPACE + "/status"
JSDL = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
PROPAGATION = "http://vws.invalid/2026/11/propagation"  # vws's own extension property
APPLIANCES = "http://vws.invalid/2026/12/appliances"  # vws's own: what a factory's pool can host
RESOURCES = "http://vws.invalid/2026/12/resources"  # vws's own extensions: renegotiation, reservation
GT4_CORE = "http://www.globus.org/namespaces/2004/06/core"  # ws-core's own elements (the SubscriptionKey)

# The Nimbus context broker (2008/12): its port type, its types, and the agents' descriptions.
CTX = "http://www.globus.org/2008/12/nimbus/contextualization"
CTX_TYPES = "http://www.globus.org/2008/12/nimbus/ctxtypes"
CTX_DESCRIPTION = "http://www.globus.org/2008/12/nimbus/ctxdescription"

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
X509_TOKEN_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0"
X509V3 = X509_TOKEN_PROFILE + "#X509v3"
X509_PKIPATH = X509_TOKEN_PROFILE + "#X509PKIPathv1"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"

PREFIXES = {
    "soapenv": SOAP_ENV,
    "xsd": XSD,
    "wsa": WSA,
    "wsrp": WSRP,
    "wsrl": WSRL,
    "wsbf": WSBF,
    "wsnt": WSNT,
    "wsse": WSSE,
    "wsu": WSU,
    "ds": DS,
    "work": WORKSPACE,
    "work-types": TYPES,
    "vwmeta": METADATA,
    "def": DEFINITION,
    "log": LOGISTICS,
    "neg": NEGOTIABLE,
    "group": GROUP,
    "ens": ENSEMBLE,
    "status": STATUS,
    "jsdl": JSDL,
    "ctx": CTX,
    "ctx-types": CTX_TYPES,
    "ctxdesc": CTX_DESCRIPTION,
}


def qname(namespace: str, local: str) -> str:
    """Clark notation, the form lxml uses: ``{namespace}local``."""
    return f"{{{namespace}}}{local}"
