"""SMTP limits and syntax errors (RFC 5321 §4.5.3, RFC 1870), transcripts split at every byte."""

import asyncio

import smtpfakes
from smtpfakes import LAN, OK, OUTSIDE, RCPT_OK, SENDER_OK, G, Run, ehlo_reply

import fwtest
from dialgate import limits, net, proto


def test_bogus_commands_end_in_421():
    r = Run(OUTSIDE)
    data = b"GET / HTTP/1.1\r\n" * 12 + b"NOOP\r\n"
    bad = b"500 5.5.2 Command not recognized\r\n"
    r.check(
        data,
        G + bad * 10 + b"421 4.7.0 gw.office.test Too many errors, closing connection\r\n",
        pieces=(1, 5, 17, len(data)),
    )
    assert r.s.closing


def test_command_line_limit_512():
    r = Run(LAN)
    ok = b"NOOP " + b"x" * 505 + b"\r\n"  # 512 octets with CRLF
    long = b"NOOP " + b"x" * 506 + b"\r\n"  # 513
    r.check(
        ok + long + b"NOOP\r\n", G + OK + b"500 5.5.2 Line too long\r\n" + OK, pieces=(1, 2, 100, 511, 512, 513, 600)
    )


def test_path_syntax_errors():
    r = Run(LAN)
    data = (
        b"EHLO x\r\nMAIL FROM:a@b.example\r\nMAIL FROM:<a@b.example\r\nMAIL FROM:<a@b.example> FOO=1\r\n"
        b"MAIL FROM: <a@b.example>\r\nRCPT TO:<>\r\nRCPT TO:<alice@office.test> NOTIFY=NEVER\r\n"
        b"RCPT TO:<\xc3\xa9@office.test>\r\nRCPT TO:<nodomain>\r\nRCPT TO:<a@example.net:junk>\r\n"
        b"RCPT TO:<a@-bad-.example>\r\nRCPT TO:<a@example.net.>\r\n"
    )
    r.check(
        data,
        G
        + ehlo_reply(LAN)
        + b"501 5.5.4 Syntax: FROM:<address>\r\n" * 2
        + b"555 5.5.4 Unsupported MAIL parameter\r\n"
        + SENDER_OK
        + b"501 5.1.3 Bad recipient address syntax\r\n"
        + b"555 5.5.4 Unsupported RCPT parameter\r\n"
        + b"553 5.6.7 Only ASCII addresses are accepted here\r\n"
        + b"501 5.1.3 Address needs a domain\r\n"
        + b"501 5.1.3 Bad recipient address syntax\r\n" * 2
        + RCPT_OK,  # a trailing dot (absolute domain) from the LAN is fine
        pieces=(1, 4, 9, len(data)),
    )


def test_size_parameter_over_limit_and_spool_guard():
    fwtest._buffers(1024)  # every_split's buffers before the config's, while the heap is in one piece (128K)
    r = Run(LAN, over={"smtp.max_size": 5000})
    data = b"EHLO x\r\nMAIL FROM:<a@b.example> SIZE=5001\r\nMAIL FROM:<a@b.example> SIZE=5000\r\n"
    r.check(
        data,
        G
        + ehlo_reply(LAN).replace(b"10485760", b"5000")
        + b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        + SENDER_OK,
    )
    sp = smtpfakes.FakeSpool()
    sp.room = False
    r = Run(LAN, spool=sp)
    r.check(
        b"HELO x\r\nMAIL FROM:<a@b.example>\r\n",
        G + b"250 gw.office.test\r\n" + b"452 4.3.1 Insufficient system storage\r\n",
    )


def test_recipient_and_message_limits():
    s = smtpfakes.service().session(LAN)
    fwtest.drive(s, b"HELO x\r\nMAIL FROM:<a@b.example>\r\n")
    rcpt = b"RCPT TO:<alice@office.test>\r\n"
    for _ in range(100):  # RFC 5321 §4.5.3.1.8: 100 must be accepted
        assert fwtest.drive(s, rcpt, 7).endswith(RCPT_OK)
    assert fwtest.drive(s, rcpt, 7).endswith(b"452 4.5.3 Too many recipients\r\n")


SPENT = b"421 4.7.0 Session time or size limit reached, closing connection\r\n"
ONE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\nx\r\n.\r\n"


def test_no_cap_on_messages_per_session():
    # An ISP flushing its held mail after ETRN uses one connection: no count of
    # messages ends it (only limits.SMTP_SESSION_MS and _OCTETS do).
    s = smtpfakes.service(spool=smtpfakes.FakeSpool(keep=False)).session(LAN)
    fwtest.drive(s, b"HELO x\r\n")
    for i in range(150):  # one pipelined message per read, same session
        out = fwtest.drive(s, ONE, 64)
        assert out.endswith(b"250 2.0.0 Ok: queued as M%d\r\n" % (i + 1)), (i, out)
    assert not s.closing and s.messages == 150
    assert fwtest.drive(s, b"QUIT\r\n", 64).startswith(G + b"221")


def test_session_octet_bound_ends_between_transactions():
    s = smtpfakes.service(spool=smtpfakes.FakeSpool(keep=False)).session(LAN)
    s.max_octets = 20  # "x\r\n.\r\n" is 6 octets: the 4th message passes the bound
    fwtest.drive(s, b"HELO x\r\n")
    for i in range(4):
        assert fwtest.drive(s, ONE, 64).endswith(b"250 2.0.0 Ok: queued as M%d\r\n" % (i + 1))
    assert s.octets == 24 and not s.closing
    out = fwtest.drive(s, ONE, 64)  # the message that passed it was accepted; the next MAIL is not
    assert out == G + SPENT and s.closing and s.messages == 4, out


def test_session_time_bound_lets_the_transaction_finish():
    s = smtpfakes.service(spool=smtpfakes.FakeSpool(keep=False)).session(LAN)
    assert s.lifetime_ms == limits.SMTP_SESSION_MS > 0
    fwtest.drive(s, b"HELO x\r\nMAIL FROM:<a@b.example>\r\n")
    s.expired = True  # what net's watchdog does once the session is lifetime_ms old
    out = fwtest.drive(s, b"RCPT TO:<alice@office.test>\r\nDATA\r\nx\r\n.\r\n", 64)
    assert out.endswith(b"250 2.0.0 Ok: queued as M1\r\n") and not s.closing, out
    out = fwtest.drive(s, b"NOOP\r\nMAIL FROM:<a@b.example>\r\n", 64)  # any command but QUIT
    assert out == G + SPENT and s.closing, out


def test_watchdog_marks_old_sessions_expired():
    n = net.Net()
    old = smtpfakes.service().session(LAN)
    young = proto.Session(LAN)  # lifetime_ms 0: never expires

    async def main():
        for s in (old, young):
            s.timeout_ms = 0  # the idle deadline is another check
            c = net.Conn(None, s, "smtp")
            c.last = c.start = 1000
            n.conns.append(c)
        n.sweep(1000 + old.lifetime_ms)
        assert not old.expired
        n.sweep(1001 + old.lifetime_ms)

    asyncio.run(main())
    assert old.expired and not old.closing and not young.expired
