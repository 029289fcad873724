"""Bounded line framing (proto.Framer) with sessions split at every byte."""

import fwtest
from dialgate import compat
from dialgate.proto import Framer, Session


class Echo(Session):
    max_line = 16

    def greeting(self):
        return b"+hi\r\n"

    def on_line(self, line):
        if line == b"quit":
            self.closing = True
            return b"+bye\r\n"
        return b"+" + line + b"\r\n"

    def on_overflow(self):
        return b"-long\r\n"


def test_lines_split_at_every_byte():
    data = b"a\r\nbb\r\n\r\nccc\nquit\r\nafter\r\n"
    out = fwtest.every_split(lambda: Echo(("t", 0)), data)
    assert out == b"+hi\r\n+a\r\n+bb\r\n+\r\n+ccc\r\n+bye\r\n", out


def test_max_line_boundary():
    ok = b"x" * 14 + b"\r\n"  # 16 octets with CRLF: allowed
    long = b"y" * 15 + b"\r\n"  # 17: refused once, then in sync again
    out = fwtest.every_split(lambda: Echo(("t", 0)), ok + long + b"z\r\n", pieces=range(1, 40))
    assert out == b"+hi\r\n+" + ok[:14] + b"\r\n-long\r\n+z\r\n", out


def test_endless_line_costs_no_memory_and_session_recovers():
    # 10 MB with no LF: one error, everything discarded, then back in sync.
    s = Echo(("t", 0))
    fr = Framer(s, 256)
    out = []
    chunk = b"A" * 4096
    compat.gc_collect()
    before = compat.mem_alloc()
    sent = 0
    while sent < 10 * 1024 * 1024:
        data = chunk
        while data:
            sp = fr.space()
            k = min(len(sp), len(data))
            sp[:k] = data[:k]
            fr.received(k)
            data = data[k:]
            fr.process(out.append)
        sent += 4096
    for b in (b"\r\n", b"ok\r\n"):
        sp = fr.space()
        sp[: len(b)] = b
        fr.received(len(b))
        fr.process(out.append)
    assert out == [b"-long\r\n", b"+ok\r\n"], out
    assert len(fr.buf) == 256
    compat.gc_collect()
    if compat.mem_free() >= 0:  # MicroPython: the GC heap did not grow
        assert compat.mem_alloc() - before < 8192, compat.mem_alloc() - before


class Raw(Session):
    """Switches to raw mode after DATA until a line `.` (like SMTP DATA)."""

    def __init__(self, peer):
        Session.__init__(self, peer)
        self.body = []
        self.reply = None

    def on_line(self, line):
        if line == b"DATA":
            self.raw = True
            return b"354\r\n"
        return b"250 " + line + b"\r\n"

    def on_data(self, mv):
        b = bytes(mv)
        i = b.find(b"\r\n.\r\n")
        if i < 0:
            self.body.append(b)
            return len(b)
        self.body.append(b[:i])
        self.raw = False
        self.reply = ("250 got %d\r\n" % len(b"".join(self.body))).encode()
        return i + 5

    def take_reply(self):
        r = self.reply
        self.reply = None
        return r


def test_raw_mode_hands_back_unconsumed_bytes_as_lines():
    # The end marker is found within one chunk here (pieces >= 7 keep it whole).
    data = b"DATA\r\nhello\r\n.\r\nNOOP\r\n"
    out = fwtest.every_split(lambda: Raw(("t", 0)), data, pieces=range(22, 40))
    assert out == b"354\r\n250 got 5\r\n250 NOOP\r\n", out
