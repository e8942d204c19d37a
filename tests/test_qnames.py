"""The suite-wide QName check (tests/qnames.py) and vws.xmlparse.adopt, which keeps QNames resolving."""

from lxml import etree

from tests.qnames import known
from vws.xmlns import SOAP_ENV, TOPIC_SIMPLE, TYPES, WSNT, XSI, qname
from vws.xmlparse import adopt

GT4_NOTIFICATION = "http://wsrf.globus.org/core/notification"


def _qname_bearers() -> list[etree._Element]:
    """A topic expression, a faultcode and an xsi:type, each declaring the prefix it uses."""
    topic = etree.Element(qname(WSNT, "Topic"), Dialect=TOPIC_SIMPLE, nsmap={"tns": TYPES})
    topic.text = "tns:currentState"
    fault = etree.Element(qname(SOAP_ENV, "Fault"), nsmap={"env": SOAP_ENV})
    etree.SubElement(fault, "faultcode").text = "env:Server"
    message = etree.Element(qname(WSNT, "Message"), nsmap={"xsi": XSI, "n": GT4_NOTIFICATION})
    message.set(qname(XSI, "type"), "n:ResourcePropertyValueChangeNotificationElementType")
    return [topic, fault, message]


def _under_conflicting_bindings() -> etree._Element:
    """A parent binding each of those namespaces to another prefix, as a document root does."""
    return etree.Element("holder", nsmap={"types": TYPES, "soapenv": SOAP_ENV, "notification": GT4_NOTIFICATION})


def test_the_check_finds_each_kind_of_qname_that_lost_its_prefix():
    holder = _under_conflicting_bindings()
    holder.extend(_qname_bearers())  # lxml drops the elements' own declarations
    assert len(known().unresolved(holder)) == 3


def test_adopt_keeps_each_qname_meaning_what_it_meant():
    holder = _under_conflicting_bindings()
    for element in _qname_bearers():
        adopt(holder, element)
    assert known().unresolved(holder) == []
    topic, fault, message = holder
    assert topic.text == "types:currentState"
    assert fault.findtext("faultcode") == "soapenv:Server"
    assert message.get(qname(XSI, "type")) == "notification:ResourcePropertyValueChangeNotificationElementType"
