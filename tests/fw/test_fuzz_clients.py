"""A hostile or broken peer on the other side of each client (issue 12, "bad
input everywhere input enters"): the SMTP client against an ISP, the POP3
collector against an ISP mailbox, the ODMR client against a provider, the
modem driver against a modem. Each gets a few hundred random transcripts,
built from the replies it expects (to reach every state) mixed with wrong
codes, EHLO keyword garbage, multi-line replies without end, random octets
and endless lines, fed in random pieces, on both runtimes.

Checked for every transcript: nothing raises out of the session; what the
client writes is whole CRLF lines (or, for the modem, commands ending in CR);
the client either closes or waits for more, never writes after closing; and
on MicroPython, at the board budget, the heap after the batch is where it was
before it (a client that kept what a peer sent would grow it). A seeded
generator of our own keeps both runtimes on the same transcripts; the
hypothesis tests in tests/host/test_fuzz_sessions.py go wider on CPython."""

import fwtest

BUF = bytearray(1024)  # connection buffer and scratch, made while the heap is in one piece
SCRATCH = bytearray(1024)

import fuzzgen  # noqa: E402
from fuzzgen import batch, transcript, whole_lines  # noqa: E402

# Each test imports its client itself: one process per test under MicroPython,
# so each holds only its own client at the board budget.



SMTP_REPLIES = [b"220 isp.test ESMTP\r\n", b"250 ok\r\n", b"250-isp.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
                b"250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n", b"250-isp\r\n250-\xff\xfe g\xe4rbage\r\n250 ETRN\r\n",
                b"354 go\r\n", b"421 bye\r\n", b"450 later\r\n", b"550 no\r\n", b"334 VXNlcm5hbWU6\r\n",
                b"235 ok\r\n", b"220 ready for TLS\r\n", b"221 bye\r\n", b"252 x\r\n", b"250-a\r\n250-b\r\n"]


def test_smtp_client_against_a_hostile_isp():
    from smtpfake import Source, envelope

    from dialgate.smtp_client import SmtpClient

    def one(rng):
        src = Source([envelope("m1", b"Subject: x\r\n\r\nhi\r\n", ["bob@example.com", "carol@example.com"])])
        c = SmtpClient(src, b"gw.office.test", rng.pick(["none", "opportunistic", "starttls"]), "gw", "secret",
                       rng.below(2) == 0, rng.pick([None, ["office.test"]]), BUF, lambda: object())
        out = fwtest.drive(c, transcript(rng, SMTP_REPLIES), 1 + rng.below(64))
        whole_lines(out)
        if not c.closing:
            c.on_eof()  # the ISP went away: the client must account for every envelope
        assert c.closing

    batch("smtp client", 12345, one)


POP3_REPLIES = [b"+OK ready <1.2@isp.test>\r\n", b"+OK\r\n", b"-ERR no\r\n", b"+OK 2 320\r\n",
                b"+OK\r\n1 a\r\n2 b\r\n.\r\n", b"+OK\r\n1 120\r\n2 200\r\n.\r\n", b"+OK\r\nSTLS\r\nUIDL\r\nUSER\r\n.\r\n", b"+OK\r\nSASL PL\xc4IN\r\n\xff\r\n.\r\n",
                b"+OK message\r\nSubject: s\r\n\r\n..dot\r\n.\r\n", b"-ERR [IN-USE] locked\r\n", b"-ERR [AUTH] bad\r\n",
                b"+OK\r\n1 a\r\n1 a\r\n999999 z\r\n.\r\n", b"+OK\r\n" + b"1 " + b"u" * 80 + b"\r\n.\r\n"]


def test_pop3_collector_against_a_hostile_mailbox():
    from test_pop3_client import Box

    from dialgate import pop3_client

    def one(rng):
        box = Box(delete=rng.below(2) == 0)
        c = pop3_client.Pop3Client("office", "secret", box, rng.pick(["none", "stls"]), lambda: object(),
                                   rng.below(2) == 0, ("192.0.2.10", 110), SCRATCH)
        out, _ = fwtest.drive_net(c, transcript(rng, POP3_REPLIES), 1 + rng.below(64), 1024, BUF)
        whole_lines(out)
        c.on_close()
        # a message counts as retrieved only when its terminating dot arrived
        for i, data, err in box.got:
            assert err is not None or data is not None

    batch("pop3 client", 777, one)


MODEM_OUTPUT = [b"\r\nOK\r\n", b"OK\r", b"\r\nCONNECT 33600/ARQ\r\n", b"\r\nBUSY\r\n", b"\r\nNO CARRIER\r\n",
                b"\r\nERROR\r\n", b"\r\nRING\r\n", b"0\r", b"3\r", b"AT\r", b"\r\nNO DIALTONE\r\n", b"\r\nCONNECT\r\n"]


def test_modem_driver_against_a_broken_modem():
    from dialgate import modem

    def one(rng):
        call = modem.Call(["AT&F", "ATE0V1&C1&D2"], "ATDT5551234", 1000, 30000)
        sent = [call.start()]
        data = transcript(rng, MODEM_OUTPUT, 30)
        i = 0
        while call.outcome is None and i < len(data):
            if call.want_reset:
                sent.append(call.reset_done())
            k = 1 + rng.below(16)
            r = call.receive(data[i : i + k])
            i += k
            if r is not None:
                sent.append(r)
            if rng.below(8) == 0:  # the command timer runs out now and then: silence
                sent.append(call.expired())
        for s in sent:
            assert s is None or (s.startswith(b"AT") and s.endswith(b"\r") and len(s) < 64), s
        if call.outcome is None:
            call.abort(modem.ERROR, "test over")
        assert call.outcome is not None

    batch("modem", 99, one)


def test_endless_replies_are_cut_without_growing_the_heap():
    """One reply line of 1 MB, and a multi-line reply with 20,000 continuation
    lines: each client ends the session (or keeps only a bounded prefix)."""
    from smtpfake import Source, envelope

    from dialgate.proto import Framer
    from dialgate.smtp_client import SmtpClient

    def stream(first, chunk, n):
        """Feed `first`, then `chunk` n times, 512 octets a read at most; -> (client, what it wrote)."""
        src = Source([envelope("m1", b"Subject: x\r\n\r\nhi\r\n")])
        c = SmtpClient(src, b"gw.office.test", "none", "", "", True, None, BUF, lambda: None)
        fr = Framer(c, 1024, SCRATCH)
        out = []
        for i in range(n + 1):
            piece = first if i == 0 else chunk
            while piece and not c.closing:
                sp = fr.space()
                k = min(len(sp), len(piece))
                sp[:k] = piece[:k]
                fr.received(k)
                piece = piece[k:]
                fr.process(out.append)
            if c.closing:
                break
        return c, b"".join(out)

    before = fuzzgen.heap()
    c, out = stream(b"220 isp.test\r\n250-", b"k" * 512, 2048)  # 1 MB of one reply line
    assert c.closing and c.failed is not None, c.failed
    c, out = stream(b"220 isp.test\r\n", b"250-KEYWORD\r\n" * 32, 625)  # 20,000 continuation lines
    whole_lines(out)
    after = fuzzgen.heap()
    print("# endless replies: heap before %d, after %d" % (before, after))
    if before >= 0:
        assert after - before < 4096, (before, after)
