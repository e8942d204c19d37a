"""What stock GT4/Nimbus clients do, over the wire.

``workspace --rpquery`` and ``--factoryrp``, ``cloud-client --status`` and ``--networks``
send the XPath ``/`` and read the first element of the answer as the whole
resource-property document, which an Axis bean generated from Nimbus's schema then
deserializes: the document must be there and follow that schema.
"""

import pytest

from tests.gt4wire import Gt4Client, created_eprs
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import STATUS, TYPES, WORKSPACE, WSNT, WSRL, qname

RP_DOCUMENTS = {
    "WorkspaceFactoryService": qname(WORKSPACE, "FactoryRPSet"),
    "WorkspaceService": qname(WORKSPACE, "ServiceRPSet"),
    "WorkspaceStatusService": qname(STATUS, "StatusRPSet"),
}


def resources(gt4: Gt4Client) -> dict[str, EndpointReference]:
    """A resource of each service that has a resource-property document."""
    (workspace,) = created_eprs(gt4.create())
    return {
        "WorkspaceFactoryService": gt4.factory(),
        "WorkspaceService": workspace,
        "WorkspaceStatusService": EndpointReference(gt4.base_url + "WorkspaceStatusService"),
    }


@pytest.mark.parametrize("target", RP_DOCUMENTS)
def test_slash_answers_the_whole_document_and_other_expressions_still_work(gt4, target):
    epr = resources(gt4)[target]
    (document,) = gt4.query(epr, "/")
    assert document.tag == RP_DOCUMENTS[target]
    assert len(document) > 0
    (same,) = gt4.query(epr, "/*")
    assert [child.tag for child in same] == [child.tag for child in document]
    assert gt4.query(epr, "count(/*/*)").text == str(len(document))
    assert gt4.query(epr, "/..").text is None and not len(gt4.query(epr, "/.."))


def test_a_path_below_the_root_still_selects_properties(gt4):
    epr = resources(gt4)["WorkspaceService"]
    (state,) = gt4.query(epr, "/*/t:currentState/t:state", {"t": TYPES})
    assert state.text == "Running"
    (termination,) = gt4.query(epr, "/*/wsrl:TerminationTime", {"wsrl": WSRL})
    assert termination.tag == qname(WSRL, "TerminationTime")


def test_topics_name_the_topics_published_wherever_they_are_read(gt4):
    """wsnt:Topic holds a QName: in the whole document and read by name, it resolves to each topic."""
    epr = resources(gt4)["WorkspaceService"]
    (document,) = gt4.query(epr, "/")
    by_name = gt4.get_property(epr, qname(WSNT, "Topic"))
    published = {qname(TYPES, "currentState"), qname(WSRL, "ResourceTermination")}
    for topics in (document.findall(qname(WSNT, "Topic")), list(by_name)):
        assert {_resolved(topic) for topic in topics} == published


def _resolved(element) -> str:  # type: ignore[no-untyped-def]
    prefix, _, local = element.text.strip().rpartition(":")
    return qname(element.nsmap[prefix or None], local)
