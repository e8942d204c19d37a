"""The few DER shapes GSI needs that ``cryptography`` does not build for us.

ProxyCertInfo (RFC 3820 section 3.8) and PkiPath (a SEQUENCE OF Certificate) are
small enough to encode and split by hand; anything unexpected raises ValueError.
"""

SEQUENCE = 0x30
INTEGER = 0x02
OCTET_STRING = 0x04
OID = 0x06


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def integer(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative integers are not used here")
    return tlv(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2:
        raise ValueError(f"bad OID {dotted!r}")
    body = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def read(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, offset after) of the element at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[offset]
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def elements(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split concatenated DER elements into (tag, value, whole encoding)."""
    out = []
    offset = 0
    while offset < len(data):
        tag, value, end = read(data, offset)
        out.append((tag, value, data[offset:end]))
        offset = end
    return out


def decode_oid(value: bytes) -> str:
    if not value:
        raise ValueError("empty OID")
    arcs = [value[0] // 40, value[0] % 40] if value[0] < 80 else [2, value[0] - 80]
    arc = 0
    for byte in value[1:]:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
    if value[-1] & 0x80:
        raise ValueError("truncated OID")
    return ".".join(str(a) for a in arcs)


def decode_integer(value: bytes) -> int:
    if not value:
        raise ValueError("empty INTEGER")
    return int.from_bytes(value, "big", signed=True)


def sequence_of(data: bytes) -> list[bytes]:
    """The whole encodings of the members of one DER SEQUENCE that fills ``data``."""
    tag, value, end = read(data)
    if tag != SEQUENCE or end != len(data):
        raise ValueError("not a single DER SEQUENCE")
    return [whole for _, _, whole in elements(value)]
