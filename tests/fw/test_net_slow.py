"""Slow and idle clients are cut at the deadline, without holding up others
(issue 12): net's idle deadline restarts on a complete command line or a DATA
block, not on each octet, so a client that trickles a byte at a time into a
command (slowloris) is closed at `timeout_ms` like an idle one (RFC 5321
§4.5.3.2.7), while a client that keeps completing commands is not."""

import asyncio

import smtpfakes
from smtpfakes import LAN

from dialgate import compat, net


class Trickle:
    """A stream whose peer sends `chunks` one per read, `gap_ms` apart, `times`
    times over, then goes quiet (the list is not copied or repeated in memory:
    the unix port runs this at 128K)."""

    def __init__(self, chunks, gap_ms, times=1):
        self.chunks = chunks
        self.left = len(chunks) * times
        self.i = 0
        self.gap = gap_ms / 1000
        self.out = []
        self.closed = False

    async def readinto(self, buf):
        while not self.left:
            if self.closed:
                return 0
            await asyncio.sleep(0.01)
        await asyncio.sleep(self.gap)
        if self.closed:  # the test is over: the peer hangs up
            return 0
        c = self.chunks[self.i % len(self.chunks)]
        self.i += 1
        self.left -= 1
        buf[: len(c)] = c
        return len(c)

    def write(self, b):
        self.out.append(bytes(b))

    async def drain(self):
        pass

    def close(self):
        self.closed = True

    async def wait_closed(self):
        pass


def _run(streams, timeout_ms, wait_ms):
    """Drive a session per stream over one Net; the watchdog sweeps every 20 ms."""
    n = net.Net(1024, 4, 5)
    svc = smtpfakes.service(spool=smtpfakes.FakeSpool(keep=False))  # one gateway's SMTP service, a session each
    sessions = []

    async def main():
        tasks = []
        for st in streams:
            s = svc.session(LAN)
            s.timeout_ms = timeout_ms
            sessions.append(s)
            tasks.append(asyncio.create_task(n.drive(st, s, "smtp", None, False)))
        t0 = compat.ticks_ms()
        while compat.ticks_diff(compat.ticks_ms(), t0) < wait_ms:
            await asyncio.sleep(0.02)
            n.sweep(compat.ticks_ms())
        for st in streams:
            st.closed = True
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass

    asyncio.run(main())
    return sessions


def test_a_byte_at_a_time_is_cut_at_the_deadline_while_others_go_on():
    slow = Trickle([bytes([c]) for c in b"EHLO a-very-slow-client.example\r\n"], 60)  # 2 s for one line
    idle = Trickle([], 0)
    busy = Trickle([b"NOOP\r\n"], 40, 500)  # a command every 40 ms until the end: never idle for 300 ms
    s_slow, s_idle, s_busy = _run([slow, idle, busy], 300, 1500)
    text = b"".join(slow.out)
    assert b"421" in text and b"250" not in text, text  # cut before its line was complete
    assert b"421" in b"".join(idle.out)
    out = b"".join(busy.out)
    assert out.count(b"250 2.0.0 Ok") >= 10 and b"421" not in out, out
    assert s_slow.closing and s_idle.closing


def test_a_slow_data_transfer_is_not_cut_while_blocks_arrive():
    lines = [b"EHLO pc\r\n", b"MAIL FROM:<a@office.test>\r\n", b"RCPT TO:<alice@office.test>\r\n", b"DATA\r\n"]
    body = [b"Subject: slow\r\n\r\n"] + [b"line %d\r\n" % i for i in range(20)] + [b".\r\n", b"QUIT\r\n"]
    st = Trickle(lines + body, 60)  # 25 blocks 60 ms apart, the deadline 300 ms
    _run([st], 300, 2200)
    out = b"".join(st.out)
    assert b"250 2.0.0 Ok: queued as" in out and b"421" not in out, out


def test_buffer_pool_is_bounded_by_slots_and_by_octets():
    # A board's 1 KB buffers: every one of 2 x max_connections is kept for reuse
    # (no holes); a PC's 64 KiB ones: at most 1 MiB stays pooled after a burst.
    cases = ((1024, 4, 8), (65536, 64, 16))
    if compat.MICROPYTHON:  # a 64 KiB buffer is CPython's (compat.io_buffer); 128K of heap has no such hole
        cases = cases[:1]
    for size, conns, kept in cases:
        n = net.Net(buffer_size=size, max_connections=conns)
        bufs = [n._buffer() for _ in range(2 * conns + 3)]
        for b in bufs:
            n._release(b)
        assert len(n._pool) == kept, (size, len(n._pool))
        assert n._buffer() is bufs[kept - 1]  # reused, last in first out
        n._release(bytearray(size // 2))  # not this connection size: not kept
        assert len(n._pool) == kept - 1


def test_connections_waiting_to_be_admitted_count_to_the_cap():
    # app._admit_smtp holds an accepted SMTP connection up to 5 s during a call: a
    # burst in those seconds must meet the cap then, not each get a session afterwards
    n = net.Net(1024, 2, 5)
    gate = asyncio.Event()

    async def admit():
        await gate.wait()

    streams = [Trickle([], 0) for _ in range(3)]

    async def main():
        svc = smtpfakes.service(spool=smtpfakes.FakeSpool(keep=False))
        tasks = [asyncio.create_task(n.serve(st, svc.session, "smtp", admit)) for st in streams[:2]]
        await asyncio.sleep(0.05)
        assert n.admitting == 2 and not n.conns
        # refused at once, both slots being taken (not left waiting for the gate too)
        await asyncio.wait_for(n.serve(streams[2], svc.session, "smtp", admit), 2)
        assert streams[2].out == [b"421 4.7.0 Too many connections, try again later\r\n"], streams[2].out
        gate.set()
        await asyncio.sleep(0.05)
        assert n.admitting == 0 and len(n.conns) == 2
        for st in streams[:2]:
            assert st.out[0].startswith(b"220 "), st.out
            st.closed = True
        for t in tasks:
            await t
        assert not n.conns

    asyncio.run(main())
