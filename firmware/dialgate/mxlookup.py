"""DNS MX lookups for boards (sans-IO): build one query, parse its answer (RFC 1035 §4).

compat_relay.resolve_mx sends the query over UDP to `relay.resolver` on MicroPython;
CPython uses dnspython instead.
"""

from .compat import const

_MX = const(15)
IN = 1
_MAX_POINTERS = const(16)  # compression pointers followed per name (RFC 1035 §4.1.4), against loops


def query(domain, qid):
    """The query datagram for `domain` MX with id `qid` (0..65535), recursion desired."""
    out = bytearray(12)
    out[0] = qid >> 8
    out[1] = qid & 255
    out[2] = 1  # RD
    out[5] = 1  # QDCOUNT
    for label in domain.rstrip(".").split("."):
        b = label.encode()
        if not 0 < len(b) < 64:
            raise ValueError("bad domain %s" % domain)
        out.append(len(b))
        out.extend(b)
    out.extend(b"\x00\x00\x0f\x00\x01")  # root, QTYPE MX, QCLASS IN
    return bytes(out)


def _name(buf, i):
    """(name, index after the name in place) reading labels and pointers."""
    parts = []
    end = -1
    jumps = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated name")
        n = buf[i]
        if n & 0xC0 == 0xC0:
            if i + 1 >= len(buf) or jumps >= _MAX_POINTERS:
                raise ValueError("bad pointer")
            if end < 0:
                end = i + 2
            i = ((n & 0x3F) << 8) | buf[i + 1]
            jumps += 1
            continue
        if n == 0:
            return ".".join(parts), (i + 1 if end < 0 else end)
        parts.append(bytes(buf[i + 1 : i + 1 + n]).decode())
        i += 1 + n


def _u16(buf, i):
    return (buf[i] << 8) | buf[i + 1]


def parse(buf, qid):
    """(rcode, [(preference, host)] sorted) from a reply datagram; ValueError if malformed
    or not the answer to `qid`. rcode 3 = NXDOMAIN."""
    if len(buf) < 12 or _u16(buf, 0) != qid or not buf[2] & 0x80:
        raise ValueError("not our answer")
    rcode = buf[3] & 15
    qd = _u16(buf, 4)
    an = _u16(buf, 6)
    i = 12
    for _ in range(qd):
        _n, i = _name(buf, i)
        i += 4
    out = []
    for _ in range(an):
        _n, i = _name(buf, i)
        if i + 10 > len(buf):
            raise ValueError("truncated record")
        rtype = _u16(buf, i)
        rdlen = _u16(buf, i + 8)
        i += 10
        if rtype == _MX and rdlen >= 3:
            host, _j = _name(buf, i + 2)
            out.append((_u16(buf, i), host))
        i += rdlen
    out.sort()
    return rcode, out
