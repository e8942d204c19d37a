"""Every QName-valued text and attribute in a message must resolve in the message as sent.

Which elements and attributes hold QNames is read from the schemas in wsdl/ (type
xsd:QName, a type derived from it, or a list of them), plus what those schemas do not
type as QName: ``xsi:type``, the SOAP 1.1 ``faultcode``, and a WS-BaseNotification topic
expression in the Simple or Concrete dialect (its schema type is mixed content).
conftest.py runs ``assert_resolved`` on every SOAP answer and Notify the test suite gets.
"""

from collections.abc import Iterator
from functools import cache
from pathlib import Path

from lxml import etree

from vws.xmlns import SOAP_ENV, TOPIC_CONCRETE, TOPIC_SIMPLE, WSNT, XSD, XSI, qname

WSDL_DIR = Path(__file__).resolve().parents[1] / "wsdl"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_TOPIC_ELEMENTS = frozenset({qname(WSNT, "Topic"), qname(WSNT, "TopicExpression")})


class QNames:
    """The elements and attributes whose value is a QName (or a list of QNames), by Clark name."""

    def __init__(self, schemas: list[etree._Element]) -> None:
        single, lists = _qname_types(schemas)
        self.elements, _ = _declared(schemas, "element", single, lists)
        attributes, self.list_attributes = _declared(schemas, "attribute", single, lists)
        self.attributes = {*attributes, qname(XSI, "type")}

    def unresolved(self, root: etree._Element) -> list[str]:
        """Each QName value under ``root`` whose prefix is not bound where it stands."""
        problems = []
        for element in root.iter(etree.Element):
            if self._holds_qname(element):
                problems += _check(element, element.text or "", f"<{element.tag}> text")
            for name, value in element.attrib.items():
                if name in self.attributes:
                    problems += _check(element, value, f"{name} of <{element.tag}>")
                elif name in self.list_attributes:
                    for item in value.split():
                        problems += _check(element, item, f"{name} of <{element.tag}>")
        return problems

    def _holds_qname(self, element: etree._Element) -> bool:
        if element.tag in _TOPIC_ELEMENTS:
            return element.get("Dialect") in (TOPIC_SIMPLE, TOPIC_CONCRETE)
        if element.tag == "faultcode":
            parent = element.getparent()
            return parent is not None and parent.tag == qname(SOAP_ENV, "Fault")
        return element.tag in self.elements


def _check(element: etree._Element, value: str, where: str) -> list[str]:
    text = value.strip()
    prefix, _, local = text.partition("/")[0].rpartition(":")
    if not local:
        return [f"{where}: {text!r} is not a QName"]
    if prefix and prefix not in element.nsmap:
        return [f"{where}: prefix {prefix!r} of {text!r} is not declared in scope"]
    return []


@cache
def known() -> QNames:
    return QNames(list(_schemas()))


def assert_resolved(message: etree._Element) -> None:
    problems = known().unresolved(message)
    assert not problems, "QName values that do not resolve in the message as sent:\n" + "\n".join(problems)


def _schemas() -> Iterator[etree._Element]:
    for path in sorted(WSDL_DIR.rglob("*.xsd")):
        yield etree.parse(str(path)).getroot()
    for path in sorted(WSDL_DIR.rglob("*.wsdl")):
        yield from etree.parse(str(path)).getroot().iterfind(f"{{{_WSDL}}}types/{{{XSD}}}schema")


def _resolve(node: etree._Element, value: str) -> str:
    prefix, _, local = value.rpartition(":")
    return qname(node.nsmap.get(prefix or None) or "", local)


def _qname_types(schemas: list[etree._Element]) -> tuple[set[str], set[str]]:
    """Named types whose values are one QName, and those that are a list of them."""
    single, lists = {qname(XSD, "QName")}, set()
    grew = True
    while grew:
        before = len(single) + len(lists)
        for schema in schemas:
            namespace = schema.get("targetNamespace") or ""
            for kind in ("simpleType", "complexType"):
                for declared in schema.iterfind(f"{{{XSD}}}{kind}[@name]"):
                    name = qname(namespace, declared.get("name"))
                    for derivation in declared.iter(f"{{{XSD}}}extension", f"{{{XSD}}}restriction"):
                        if _resolve(derivation, derivation.get("base", "")) in single:
                            single.add(name)
                    for listed in declared.iter(f"{{{XSD}}}list"):
                        if _resolve(listed, listed.get("itemType", "")) in single:
                            lists.add(name)
        grew = len(single) + len(lists) > before
    return single, lists


def _declared(schemas: list[etree._Element], kind: str, single: set[str], lists: set[str]) -> tuple[set, set]:
    """Names of the elements or attributes declared with a QName type, and with a list of QNames."""
    one, many = set(), set()
    for schema in schemas:
        namespace = schema.get("targetNamespace") or ""
        default_form = schema.get(f"{kind}FormDefault", "unqualified")
        for declared in schema.iter(f"{{{XSD}}}{kind}"):
            if declared.get("name") is None:
                continue
            qualified = declared.getparent() is schema or declared.get("form", default_form) == "qualified"
            name = qname(namespace, declared.get("name")) if qualified else declared.get("name")
            inline_list = declared.find(f"{{{XSD}}}simpleType/{{{XSD}}}list")
            typed = _resolve(declared, declared.get("type")) if declared.get("type") else None
            if typed in single:
                one.add(name)
            elif typed in lists or (
                inline_list is not None and _resolve(inline_list, inline_list.get("itemType", "")) in single
            ):
                many.add(name)
    return one, many
