"""WS-ResourceProperties 2004/06 (draft 01): Get, GetMultiple and Query over a document.

A resource publishes one resource-property document; a property is every child of
its root with a given QName. Names the resource does not declare are a fault;
declared but absent (minOccurs=0) properties answer with nothing.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from lxml import etree

from vws.errors import InvalidPropertyName, MalformedMessage, UnknownQueryDialect
from vws.wsrf import xpath
from vws.xmlns import WSRP, XPATH_DIALECT, qname
from vws.xmlparse import adopt, detached

MAX_NAMES = 64  # properties one GetMultipleResourceProperties may name

Renderer = Callable[[], list[etree._Element]]


@dataclass(frozen=True)
class PropertyDocument:
    """A resource's properties, each rendered only when asked for.

    ``renderers`` maps every declared property QName, in document order, to a
    function giving its current values; Get and GetMultiple render just the names
    requested, and only a Query builds the whole document. ``by_name`` are extension
    properties outside the document: Get and GetMultiple answer them, a Query never
    sees them, so the document stays what readers of its schema expect.
    """

    tag: str
    renderers: Mapping[str, Renderer]
    nsmap: Mapping[str, str] = field(default_factory=dict)
    by_name: Mapping[str, Renderer] = field(default_factory=dict)

    def values(self, name: str) -> list[etree._Element]:
        render = self.renderers.get(name) or self.by_name.get(name)
        if render is None:
            raise InvalidPropertyName(f"the resource has no property {name}")
        return render()

    def root(self) -> etree._Element:
        document = etree.Element(self.tag, nsmap=dict(self.nsmap))
        for render in self.renderers.values():
            _adopt_all(document, render())
        return document


def get_property(document: PropertyDocument, request: etree._Element) -> etree._Element:
    """GetResourceProperty: the body's text is one QName."""
    response = etree.Element(qname(WSRP, "GetResourcePropertyResponse"), nsmap={"wsrp": WSRP})
    _adopt_all(response, document.values(_resolve_qname(request)))
    return response


def get_multiple(document: PropertyDocument, request: etree._Element) -> etree._Element:
    """GetMultipleResourceProperties: one ResourceProperty QName per child, in order.

    A request names at most MAX_NAMES properties and its answer stays under
    xpath.MAX_ANSWER_BYTES: naming one property thousands of times must not make a
    reply of megabytes (nor the memory to build it).
    """
    asked = list(request.iterchildren(qname(WSRP, "ResourceProperty")))
    if not asked:
        raise MalformedMessage("GetMultipleResourceProperties names no ResourceProperty")
    if len(asked) > MAX_NAMES:
        raise InvalidPropertyName(f"a request may name at most {MAX_NAMES} properties, not {len(asked)}")
    response = etree.Element(qname(WSRP, "GetMultipleResourcePropertiesResponse"), nsmap={"wsrp": WSRP})
    size = 0
    for name in [_resolve_qname(child) for child in asked]:
        values = document.values(name)
        size += sum(len(etree.tostring(value)) for value in values)
        if size > xpath.MAX_ANSWER_BYTES:
            raise InvalidPropertyName(
                f"the answer would exceed {xpath.MAX_ANSWER_BYTES} bytes: ask for fewer properties"
            )
        _adopt_all(response, values)
    return response


def query(document: PropertyDocument, request: etree._Element) -> etree._Element:
    """QueryResourceProperties with the XPath 1.0 dialect, evaluated on the document root."""
    expression = request.find(qname(WSRP, "QueryExpression"))
    if expression is None:
        raise MalformedMessage("QueryResourceProperties has no QueryExpression")
    dialect = (expression.get("Dialect") or "").strip()
    if dialect != XPATH_DIALECT:
        raise UnknownQueryDialect(f"unsupported query dialect {dialect!r}; use {XPATH_DIALECT}")
    text, root = (expression.text or "").strip(), document.root()
    result = [root] if _selects_document(text) else _evaluate(root, text, expression.nsmap)
    response = etree.Element(qname(WSRP, "QueryResourcePropertiesResponse"), nsmap={"wsrp": WSRP})
    _append_result(response, result)
    return response


def _selects_document(text: str) -> bool:
    """``/`` selects the root node, which lxml leaves out of every node-set it returns.

    GT4 answered it with the document element, and stock clients (``workspace --rpquery``
    and ``--factoryrp``, ``cloud-client --status``) send exactly ``/`` and read the first
    element of the answer as the whole resource-property document.
    """
    return text == "/"


def _evaluate(root: etree._Element, text: str, nsmap: dict) -> object:
    return xpath.evaluate(root, text, {prefix: uri for prefix, uri in nsmap.items() if prefix})


def _append_result(response: etree._Element, result: object) -> None:
    if isinstance(result, bool):
        response.text = "true" if result else "false"
    elif isinstance(result, (float, str)):
        response.text = _number(result) if isinstance(result, float) else str(result)
    else:
        _append_nodes(response, result)  # type: ignore[arg-type]


def _append_nodes(response: etree._Element, nodes: Iterable[object]) -> None:
    texts = []
    for node in nodes:
        if isinstance(node, etree._Element):
            adopt(response, detached(node))
        else:  # attribute values and text nodes
            texts.append(str(node))
    if texts:
        response.text = " ".join(texts)


def _adopt_all(parent: etree._Element, values: Iterable[etree._Element]) -> None:
    for value in values:
        adopt(parent, value)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _resolve_qname(element: etree._Element) -> str:
    """An xsd:QName in element text, resolved with the namespaces in scope there."""
    text = (element.text or "").strip()
    prefix, _, local = text.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    if not local or namespace is None:
        raise InvalidPropertyName(f"{text!r} is not a resolvable QName")
    return qname(namespace, local)
