"""mxlookup: the board's DNS MX query and answer parser (RFC 1035 §4), incl. name compression."""

from dialgate import mxlookup


def answer(qid, rcode=0, records=()):
    """A reply datagram for example.com MX with the given (preference, host) records,
    each host name ending in a pointer to the question's example.com."""
    q = mxlookup.query("example.com", qid)
    out = bytearray(q)
    out[2] = 0x81
    out[3] = 0x80 | rcode
    out[7] = len(records)
    for pref, label in records:
        rdata = bytearray([pref >> 8, pref & 255])
        rdata.append(len(label))
        rdata.extend(label.encode())
        rdata.extend(b"\xc0\x0c")  # pointer to "example.com" at offset 12
        out.extend(b"\xc0\x0c\x00\x0f\x00\x01\x00\x00\x0e\x10")
        out.extend(bytes([0, len(rdata)]))
        out.extend(rdata)
    return bytes(out)


def test_query_layout():
    q = mxlookup.query("example.com", 0x1234)
    assert q[:4] == b"\x12\x34\x01\x00" and q[4:6] == b"\x00\x01"
    assert q[12:] == b"\x07example\x03com\x00\x00\x0f\x00\x01"


def test_parse_sorted_by_preference():
    rcode, mx = mxlookup.parse(answer(7, 0, [(20, "mx2"), (10, "mx1")]), 7)
    assert rcode == 0 and mx == [(10, "mx1.example.com"), (20, "mx2.example.com")]


def test_nxdomain_wrong_id_and_loops():
    assert mxlookup.parse(answer(9, 3), 9) == (3, [])
    for bad in (answer(9, 0, [(10, "mx")]), b"\x00" * 5):
        try:
            mxlookup.parse(bad, 10)
            raise AssertionError("accepted")
        except ValueError:
            pass
    loop = bytearray(answer(5, 0, [(10, "mx")]))
    loop[-2:] = b"\xc0" + bytes([len(loop) - 2])  # a pointer to itself
    try:
        mxlookup.parse(bytes(loop), 5)
        raise AssertionError("followed a pointer loop")
    except ValueError:
        pass
