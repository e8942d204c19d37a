"""The hardened parser: what it refuses, and what it reads as the text of an element."""

import pytest

from vws.errors import MalformedMessage
from vws.xmlparse import MAX_DEPTH, parse


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def test_nesting_is_bounded():
    assert parse(nested(MAX_DEPTH)).tag == "a"
    with pytest.raises(MalformedMessage, match=f"deeper than {MAX_DEPTH}"):
        parse(nested(MAX_DEPTH + 1))
    with pytest.raises(MalformedMessage, match="deeper"):  # however wide the levels above are
        parse(b"<r>" + b"<b/>" * 1000 + nested(MAX_DEPTH) + b"</r>")


def test_text_is_all_of_an_elements_character_data():
    document = parse(b"<?pi before?><!--c--><a>1<!--x-->0<?y z?><![CDATA[<]]>&#49;</a><!--after-->")
    assert document.text == "10<1" and len(document) == 0


@pytest.mark.parametrize(
    "data, problem",
    [
        (b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', "not well-formed|document type"),
        (b"<a>&undefined;</a>", "not well-formed"),
        (b"<a><b></a>", "not well-formed"),
    ],
)
def test_refusals(data, problem):
    with pytest.raises(MalformedMessage, match=problem):
        parse(data)
