"""The ApplianceCatalogService port type: the appliances a user may deploy, as resource properties.

One singleton resource whose document holds an ``app:appliance`` per appliance a trusted
producer signed (the descriptor, its signature left out), each with the ``location`` a
rootVBD names it by; QueryResourceProperties with XPath finds them by attribute.
"""

from collections.abc import Callable, Sequence

from lxml import etree

from vws.security.appliances import to_xml
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import CATALOG_SERVICE, property_operations
from vws.workspace.appliances import Entry
from vws.wsrf import properties
from vws.xmlns import APPLIANCES, qname


class CatalogPortType:
    service = CATALOG_SERVICE

    def __init__(self, catalogue: Callable[[], list[Entry]]) -> None:
        self._catalogue = catalogue

    def operations(self) -> Sequence[Operation]:
        return list(property_operations(self._document))

    def _document(self, call: Call) -> properties.PropertyDocument:
        return properties.PropertyDocument(
            qname(APPLIANCES, "CatalogRPSet"), {qname(APPLIANCES, "appliance"): self._appliances}, {"app": APPLIANCES}
        )

    def _appliances(self) -> list[etree._Element]:
        return appliance_elements(self._catalogue())


def appliance_elements(entries: list[Entry]) -> list[etree._Element]:
    """Each catalogue entry as its ``app:appliance``, with the location a rootVBD names it by."""
    elements = []
    for entry in entries:
        element = to_xml(entry.appliance)
        element.set("location", entry.address)
        elements.append(element)
    return elements
