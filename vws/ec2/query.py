"""The EC2 Query protocol: the form a request is, and the XML an answer or an error is.

botocore flattens a request's structures into form fields: a list is ``Name.1``,
``Name.2``..., a member of a structure ``Name.1.Field`` (``Filter.1.Value.2``). ``Params``
reads them back. An answer is ``<{Action}Response>`` in the namespace of the API version
the client named, holding its ``requestId`` and the action's fields, rendered from plain
data: a dict is an element's children, a list is ``<item>`` elements, None is left out.
"""

import re
import urllib.parse
from collections.abc import Mapping, Sequence

from lxml import etree

from vws.ec2.errors import Ec2Error, invalid_parameter, missing_parameter

API_VERSION = "2016-11-15"  # the one botocore's ec2 client speaks
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")

Data = Mapping[str, object]


class Params:
    """The form fields under one prefix (all of them, at the top)."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._fields = fields

    @classmethod
    def parse(cls, body: bytes) -> "Params":
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise Ec2Error("InvalidRequest", "the body must be a form (application/x-www-form-urlencoded)") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:
                raise invalid_parameter(f"parameter {name} is given twice")
            fields[name] = value
        return cls(fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name, default)

    def required(self, name: str) -> str:
        value = self._fields.get(name)
        if value is None or value == "":
            raise missing_parameter(name)
        return value

    def integer(self, name: str, default: int) -> int:
        value = self._fields.get(name)
        if value is None:
            return default
        if not re.fullmatch(r"[0-9]{1,9}", value):
            raise invalid_parameter(f"{name} must be a whole number, not {value!r}")
        return int(value)

    def boolean(self, name: str) -> bool:
        return self._fields.get(name, "false").lower() == "true"

    def each(self, name: str) -> list[str]:
        """The values of ``name.1``, ``name.2``... in order."""
        return [value for _, value in sorted(self._indexed(name).items())]

    def members(self, name: str) -> list["Params"]:
        """The structures ``name.N.*``, each as its own Params, in order of N."""
        grouped: dict[int, dict[str, str]] = {}
        prefix = name + "."
        for field, value in self._fields.items():
            index, dot, rest = field.removeprefix(prefix).partition(".")
            if field.startswith(prefix) and dot and index.isdigit():
                grouped.setdefault(int(index), {})[rest] = value
        return [Params(fields) for _, fields in sorted(grouped.items())]

    def _indexed(self, name: str) -> dict[int, str]:
        prefix = name + "."
        return {
            int(field[len(prefix) :]): value
            for field, value in self._fields.items()
            if field.startswith(prefix) and field[len(prefix) :].isdigit()
        }


def namespace(version: str | None) -> str:
    return f"http://ec2.amazonaws.com/doc/{version if version and _VERSION.fullmatch(version) else API_VERSION}/"


def response(action: str, version: str | None, request_id: str, data: Data) -> bytes:
    ns = namespace(version)
    root = etree.Element(f"{{{ns}}}{action}Response", nsmap={None: ns})
    _fill(root, {"requestId": request_id, **data}, ns)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def error(failure: Ec2Error, request_id: str) -> bytes:
    root = etree.Element("Response")
    item = etree.SubElement(etree.SubElement(root, "Errors"), "Error")
    etree.SubElement(item, "Code").text = failure.code
    etree.SubElement(item, "Message").text = failure.description
    etree.SubElement(root, "RequestID").text = request_id
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _fill(parent: etree._Element, data: Data, ns: str) -> None:
    for name, value in data.items():
        if value is not None:
            _value(etree.SubElement(parent, f"{{{ns}}}{name}"), value, ns)


def _value(element: etree._Element, value: object, ns: str) -> None:
    if isinstance(value, Mapping):
        _fill(element, value, ns)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            _value(etree.SubElement(element, f"{{{ns}}}item"), item, ns)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)
