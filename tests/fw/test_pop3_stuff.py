"""Chunk-safe dot-stuffing and TOP cut-off (dotstuff.py): every read size and
every output buffer size against a line-by-line reference."""

import io

from dialgate.dotstuff import LinesProducer, MessageProducer


def lines_of(msg):
    out = []
    i = 0
    while i < len(msg):
        j = msg.find(b"\n", i)
        j = len(msg) if j < 0 else j + 1
        out.append(msg[i:j])
        i = j
    return out


def reference(msg, top=None):
    """RFC 1939 §3 and §7 the obvious way: whole message, line by line."""
    out = []
    in_header = True
    left = top
    for ln in lines_of(msg):
        if top is not None and not in_header:
            if left <= 0:
                break
            left -= 1
        out.append(b"." + ln if ln.startswith(b".") else ln)
        if in_header and ln in (b"\r\n", b"\n"):
            in_header = False
    body = b"".join(out)
    if body and not body.endswith(b"\n"):
        body += b"\r\n"
    return body + b".\r\n"


def produce(msg, rsize, osize, top=None, size=-1):
    p = MessageProducer(io.BytesIO(msg), bytearray(rsize), top, None, size)
    buf = bytearray(osize)
    out = []
    while True:
        n = p.fill(buf)
        if not n:
            break
        out.append(bytes(buf[:n]))
    assert p.fill(buf) == 0
    return b"".join(out)


SAMPLES = [
    b"Subject: s\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n\r\n.\r\n",
    b".starts with dot\r\n\r\n.",
    b"H: 1\r\nH: 2\r\n\r\nb1\r\n.b2\r\nb3\r\nb4",
    b"H: only header\r\n",
    b"H: lf\n\n.one\ntwo\n",
    b"",
    b"\r\n\r\n.\r\n",
    b"H: x\r\n\r\r\n\r\nbody\r\n",  # a line holding just CR is not the end of the header
]


def test_stuffing_every_read_and_write_size():
    for msg in SAMPLES:
        want = reference(msg)
        for rsize in range(1, len(msg) + 2):
            for osize in (2, 3, 4, 5, 7, 64):
                got = produce(msg, rsize, osize)
                assert got == want, (msg, rsize, osize, got, want)


def test_known_size_saves_the_end_of_file_read_and_never_cuts():
    """A short read that reaches the listed size is the end (one read for a
    message that fits the buffer); a listing that is off by one either way
    still streams the whole file, never a cut or a repeat."""
    for msg in SAMPLES:
        want = reference(msg)
        for rsize in range(1, len(msg) + 2):
            for size in (len(msg), len(msg) - 1, len(msg) + 1, -1):
                got = produce(msg, rsize, 7, None, size)
                assert got == want, (msg, rsize, size, got, want)

    class Counting(io.BytesIO):
        reads = 0

        def readinto(self, b):
            Counting.reads += 1
            return super().readinto(b)

    msg = SAMPLES[0]
    for size, reads in ((len(msg), 1), (len(msg) + 1, 2), (-1, 2)):
        Counting.reads = 0
        p = MessageProducer(Counting(msg), bytearray(len(msg) + 1), None, None, size)
        buf = bytearray(64)
        while p.fill(buf):
            pass
        assert Counting.reads == reads, (size, Counting.reads)
    Counting.reads = 0  # a full read at the listed size: the end is not known yet
    p = MessageProducer(Counting(msg), bytearray(len(msg)), None, None, len(msg))
    while p.fill(buf):
        pass
    assert Counting.reads == 2


def test_top_every_read_and_write_size():
    for msg in SAMPLES:
        for top in (0, 1, 2, 3, 10):
            want = reference(msg, top)
            for rsize in range(1, len(msg) + 2):
                for osize in (2, 3, 5, 64):
                    got = produce(msg, rsize, osize, top)
                    assert got == want, (msg, top, rsize, osize, got, want)


def test_dot_lines_split_across_chunks():
    # The "." that starts a line arrives alone at the start of the next read,
    # and the CRLF before it ends the previous read (Twisted #2071).
    msg = b"a\r\n" + b".\r\n" * 50 + b"..x\r\n" * 50
    want = reference(msg)
    assert want.count(b"..\r\n") == 50
    for rsize in (1, 2, 3, 4, 5):
        assert produce(msg, rsize, 3) == want


def test_top_stops_reading_after_its_lines():
    class Counting:
        reads = 0

        def __init__(self, data):
            self.f = io.BytesIO(data)

        def readinto(self, b):
            Counting.reads += 1
            return self.f.readinto(b)

        def close(self):
            self.f.close()

    body = b"H: 1\r\n\r\n" + b"line\r\n" * 1000
    f = Counting(body)
    p = MessageProducer(f, bytearray(64), 2)
    buf = bytearray(256)
    out = []
    n = p.fill(buf)
    while n:
        out.append(bytes(buf[:n]))
        n = p.fill(buf)
    assert b"".join(out) == b"H: 1\r\n\r\nline\r\nline\r\n.\r\n"
    assert Counting.reads == 1 and p.f is None  # file closed, the rest never read


def test_listing_producer_skips_and_splits():
    lines = [b"1 10\r\n", None, b"3 300\r\n"]
    for osize in (1, 2, 3, 50):
        p = LinesProducer(lambda i: lines[i], 3)
        buf = bytearray(osize)
        out = []
        n = p.fill(buf)
        while n:
            out.append(bytes(buf[:n]))
            n = p.fill(buf)
        assert b"".join(out) == b"1 10\r\n3 300\r\n.\r\n", out


def test_done_is_set_with_the_last_octets_and_not_before():
    # net stops asking a producer once it says done (one fill per small RETR); a
    # producer that said done too early would cut the message, one that never
    # did would only cost a call. Checked at every buffer size, both producers.
    body = b"Subject: x\r\n\r\n.dot\r\nend"  # a stuffed dot, and no final CRLF
    want = b"+OK\r\nSubject: x\r\n\r\n..dot\r\nend\r\n.\r\n"
    lines = [b"1 10\r\n", b"2 20\r\n"]
    for osize in range(2, len(want) + 8):  # (a stuffed dot needs 2 octets of room at once)
        for make, whole in ((lambda: MessageProducer(io.BytesIO(body), bytearray(8), None, b"+OK\r\n", len(body)), want),
                            (lambda: LinesProducer(lambda i: lines[i], 2), b"1 10\r\n2 20\r\n.\r\n")):
            p = make()
            buf = bytearray(osize)
            out = b""
            while not p.done:
                n = p.fill(buf)
                assert n, (osize, out)  # never 0 before done
                out += bytes(buf[:n])
            assert out == whole, (osize, out)
            assert p.fill(buf) == 0
