"""Property tests: whatever bytes a client sends, in whatever pieces, the SMTP,
POP3 and console sessions answer with well-formed replies and never raise.

The byte streams mix real commands (to reach every state: DATA, AUTH,
transaction) with random octets, endless lines and bare CR/LF."""

import re

import pop3fake
import smtpfakes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fwtest
from dialgate.app import Gateway
from dialgate.console import ConsoleSession

SMTP_WORDS = [b"EHLO pc.office.test\r\n", b"HELO x\r\n", b"MAIL FROM:<a@office.test>\r\n",
              b"MAIL FROM:<> SIZE=99999999999\r\n", b"RCPT TO:<bob@office.test>\r\n",
              b"RCPT TO:<x@far.test>\r\n", b"DATA\r\n", b".\r\n", b"\r\n.\r\n", b"RSET\r\n", b"NOOP\r\n",
              b"VRFY bob\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"*\r\n", b"STARTTLS\r\n", b"HELP\r\n",
              b"\n.\n", b"\r.\r", b"x" * 1100 + b"\r\n"]
POP_WORDS = [b"USER alice\r\n", b"PASS wonder land\r\n", b"APOP alice 0123\r\n", b"STAT\r\n", b"LIST\r\n",
             b"RETR 1\r\n", b"TOP 2 0\r\n", b"DELE 1\r\n", b"RSET\r\n", b"UIDL\r\n", b"UIDL 9\r\n", b"CAPA\r\n",
             b"AUTH\r\n", b"AUTH PLAIN\r\n", b"NOOP\r\n", b"STLS\r\n", b"LIST -1\r\n", b"x" * 300 + b"\r\n"]
CONSOLE_WORDS = [b"help\r\n", b"status\r\n", b"log 3\r\n", b"config get lan\r\n", b"config get\r\n",
                 b"\xff\xfe\r\n", b"x" * 700 + b"\r\n"]


def streams(words):
    chunk = st.one_of(st.sampled_from(words), st.binary(max_size=200),
                      st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b"."]))
    return st.lists(chunk, max_size=40).map(b"".join)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMTP_LINE = re.compile(rb"^[2-5]\d\d[ -]")


def lines(out):
    assert out == b"" or out.endswith(b"\r\n"), out[-80:]
    return out.split(b"\r\n")[:-1]


@FUZZ
@given(streams(SMTP_WORDS), st.integers(1, 64), st.sampled_from([smtpfakes.LAN, smtpfakes.OUTSIDE]))
def test_smtp_replies_are_always_well_formed(data, piece, peer):
    spool = smtpfakes.FakeSpool(keep=False)
    session = smtpfakes.service(spool=spool).session(peer)
    out = fwtest.drive(session, data + b"QUIT\r\n", piece)
    session.on_close()
    for ln in lines(out):
        # every line is a reply (SMTP never echoes client data) or a 334 SASL challenge
        assert SMTP_LINE.match(ln), ln
    assert spool.open == 0, "a half-written message was left open"


@FUZZ
@given(streams(POP_WORDS), st.integers(1, 64), st.sampled_from([pop3fake.LAN, pop3fake.WAN]))
def test_pop3_never_raises_and_status_lines_are_well_formed(data, piece, peer):
    drops = pop3fake.FakeMaildrops(pop3fake.boxes())
    session = pop3fake.service(drops=drops).session(peer)
    out = fwtest.drive(session, data, piece)
    session.on_close()
    assert out.startswith(b"+OK ")
    lines(out)
    # nothing is deleted without a QUIT in the TRANSACTION state (RFC 1939 §6)
    if b"QUIT" not in data:
        assert len(drops.boxes["alice"]) == 3


@FUZZ
@given(streams(CONSOLE_WORDS), st.integers(1, 64))
def test_console_every_reply_ends_ok_or_err(data, piece):
    gw = Gateway(fwtest.host_config())
    out = fwtest.drive(ConsoleSession(("127.0.0.1", 1), gw, gw.commands), data + b"\r\nquit\r\n", piece)
    ls = lines(out)
    assert ls[-1] == b"OK" and ls[-2] == b"bye"


@FUZZ
@given(st.data(), st.integers(1, 64), st.sampled_from(["none", "opportunistic", "starttls"]), st.booleans())
def test_smtp_client_against_any_isp_reply_stream(data, piece, tls, pipelining):
    """The SMTP client (our side of a queue run) against whatever an ISP sends:
    whole CRLF lines out, no exception, every envelope accounted for at EOF."""
    from smtpfake import Source, envelope
    from test_fuzz_clients import BUF, SMTP_REPLIES

    from dialgate.smtp_client import SmtpClient

    replies = data.draw(streams(SMTP_REPLIES))
    src = Source([envelope("m1", b"Subject: x\r\n\r\nhi\r\n", ["bob@example.com", "carol@example.com"])])
    c = SmtpClient(src, b"gw.office.test", tls, "gw", "secret", pipelining, None, BUF, lambda: object())
    out = fwtest.drive(c, replies, piece)
    assert out == b"" or out.endswith(b"\r\n")
    if not c.closing:
        c.on_eof()
    assert c.closing


@FUZZ
@given(st.data(), st.integers(1, 64), st.booleans())
def test_pop3_collector_against_any_mailbox_reply_stream(data, piece, delete):
    """The POP3 collector against whatever an ISP mailbox sends: whole lines
    out, no exception, a message counts only with its terminating dot."""
    from test_fuzz_clients import BUF, POP3_REPLIES, SCRATCH
    from test_pop3_client import Box

    from dialgate import pop3_client

    replies = data.draw(streams(POP3_REPLIES))
    box = Box(delete=delete)
    c = pop3_client.Pop3Client("office", "secret", box, "none", lambda: object(), True, ("192.0.2.10", 110), SCRATCH)
    out, _ = fwtest.drive_net(c, replies, piece, 1024, BUF)
    assert out == b"" or out.endswith(b"\r\n")
    c.on_close()
    for _i, body, err in box.got:
        assert err is not None or body is not None
