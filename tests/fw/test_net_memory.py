"""A session that runs out of heap (a board's, full or in pieces) is a local
error, not a crash: net logs a WARN, tells the client to try again later (421
/ -ERR [SYS/TEMP] / ERR, RFC 5321 §3.8, RFC 3206) unless a multi-line reply is
streaming, closes the connection, and the gateway serves the next one."""

import asyncio

from test_net_slow import Trickle  # the fake stream: `data` in one read, then EOF once net closes it

from dialgate import log, net
from dialgate.proto import Session


class Hungry(Session):
    """Answers NOOP; runs out of memory on EAT (with `streaming`: as if inside a RETR)."""

    def __init__(self, streaming=False):
        Session.__init__(self, ("192.0.2.1", 1))
        self.streaming = streaming
        self.closed = False

    def greeting(self):
        return b"220 hi\r\n"

    def on_line(self, line):
        if line == b"EAT":
            if self.streaming:
                self.producer = object()  # (never reached by net: the error comes first)
            raise MemoryError("memory allocation failed, allocating 2065 bytes")
        return b"250 ok\r\n"

    def on_close(self):
        self.closed = True


def _drive(kind, session, data):
    st = Trickle([data], 0)
    warned = []
    real = log.warn

    def warn(fmt, *args):
        warned.append(fmt % args)
        real(fmt, *args)

    log.warn = warn
    try:
        asyncio.run(net.Net(1024, 4, 5).drive(st, session, kind, None, False))
    finally:
        log.warn = real
    return b"".join(st.out), st, warned


def test_out_of_memory_says_try_later_and_closes():
    for kind, reply in (("smtp", b"421 4.3.0 Local error, try again later\r\n"),
                        ("pop3", b"-ERR [SYS/TEMP] Local error, try again later\r\n"),
                        ("console", b"ERR internal error\r\n")):
        s = Hungry()
        out, st, warned = _drive(kind, s, b"NOOP\r\nEAT\r\nNOOP\r\n")
        assert out == b"220 hi\r\n250 ok\r\n" + reply, (kind, out)
        assert st.closed and s.closed
        assert warned == ["%s 192.0.2.1:1: out of memory, connection closed" % kind], warned


def test_no_reply_inside_a_streaming_reply():
    s = Hungry(streaming=True)
    out, st, warned = _drive("pop3", s, b"EAT\r\n")
    assert out == b"220 hi\r\n" and st.closed, out  # a line in the middle of a message would be its text


def test_the_idle_watchdog_outlives_a_failing_round():
    """net's idle deadlines (slow and idle clients cut, issue 12) are swept by
    one task: a MemoryError in a round (a timeout reply, its log line) ended
    it, and no session timed out again until a restart."""
    n = net.Net(1024, 4, 5)
    calls = []

    def sweep(now):
        calls.append(now)
        if len(calls) == 1:
            raise MemoryError("memory allocation failed, allocating 176 bytes")

    n.sweep = sweep

    async def go():
        t = asyncio.create_task(n._watch())
        await asyncio.sleep(2.5)
        t.cancel()

    asyncio.run(go())
    assert len(calls) >= 2, calls
