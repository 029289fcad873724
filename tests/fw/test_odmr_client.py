"""ODMR client (RFC 2645) transcripts, split at every byte: EHLO, AUTH CRAM-MD5,
ATRN, and on 250 the same connection, with what is already buffered behind the
250, handed to our SMTP server session; the replies that end an ask.

Runs at 160K under MicroPython: it holds the ODMR client and the SMTP server
core (the reversed session) at once, as a call that asks by ODMR does, on top
of the test's fake spool and transcripts."""

import binascii

import fwtest

BUF = bytearray(1024)  # the connection buffer, made while the 128K heap is in one piece
TBUF = bytearray(6144)  # the hostile transcripts are built here (fuzzgen.transcript's `into`)

import smtpfakes  # noqa: E402
from smtpfakes import G  # noqa: E402

from dialgate import odmr_client as O  # noqa: E402

UPY_HEAP = "160K"

CHALLENGE = b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"  # RFC 2195's example
ISP = ("192.0.2.9", 366)
EHLO = b"250-odmr.isp.test\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n"
OPEN = b"220 odmr.isp.test ODMR service ready\r\n" + EHLO + b"334 " + CHALLENGE + b"\r\n235 2.7.0 ok\r\n"


SVC = smtpfakes.service()  # one SMTP service (and its DATA scan buffer) for every test


def client(domains=("office.test",), tls="none", spool=None, user="tim", password="tanstaaftanstaaf"):
    svc = SVC
    svc.spool = spool or smtpfakes.FakeSpool()
    made = []

    def make_server(peer, tls_active):
        s = svc.session(peer)
        s.tls_active = tls_active
        made.append(s)
        return s

    c = O.OdmrClient(b"gw.office.test", user, password, list(domains), tls, lambda: "CTX", make_server, ISP)
    c.made = made
    return c


def written(c, data, piece):
    return fwtest.drive_net(c, data, piece, 1024, BUF)


def test_cram_md5_is_rfc_2195():
    r = binascii.a2b_base64(O.auth.cram_md5("tim", "tanstaaftanstaaf", CHALLENGE))
    assert r == b"tim b913a602c7eda7a495b4e6e7334d3890", r


def test_atrn_250_reverses_roles_and_our_server_takes_the_mail_split_at_every_byte():
    # Behind the 250, in the same reads, the provider's EHLO and a whole transaction:
    # the handover must pass them, unread, to the SMTP server session.
    provider = (OPEN + b"250 OK now reversing the connection\r\n"
                b"EHLO odmr.isp.test\r\nMAIL FROM:<carol@example.net>\r\nRCPT TO:<alice@office.test>\r\n"
                b"DATA\r\nSubject: held\r\n\r\nwaited at the ISP\r\n.\r\nQUIT\r\n")
    first = None
    for piece in range(1, len(provider) + 2, 1 if len(provider) < 400 else 3):
        sp = smtpfakes.FakeSpool()
        c = client(spool=sp)
        out, last = written(c, provider, piece)
        if first is None:
            first = out
            assert out.startswith(b"EHLO gw.office.test\r\nAUTH CRAM-MD5\r\n"
                                  b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\nATRN office.test\r\n" + G), out
            assert b"250 2.0.0 Ok: queued as M1\r\n" in out and out.endswith(b"221 2.0.0 gw.office.test closing connection\r\n")
        assert out == first, piece
        assert c.result[0] == O.REVERSED and c.result[1] == 250
        assert last is c.server and c.made == [c.server] and last.closing
        assert len(sp.committed) == 1 and sp.committed[0][2] == [("local", "alice@office.test", ["alice"])]


def test_bare_atrn_when_no_domains_are_configured():
    out, _ = written(client(domains=()), OPEN + b"453 You have no mail\r\n221 bye\r\n", 7)
    assert b"\r\nATRN\r\nQUIT\r\n" in out, out


def test_replies_that_end_the_ask():
    for code, how in ((453, O.NO_MAIL), (451, O.LATER), (450, O.CONFIG), (502, O.CONFIG), (530, O.CONFIG),
                      (421, O.LATER), (554, O.CONFIG)):
        c = client()
        out, last = written(c, OPEN + b"%d text\r\n221 bye\r\n" % code, 5)
        assert c.result == (how, code, b"text"), (code, c.result)
        assert last is c and c.server is None
        if code != 421:
            assert out.endswith(b"ATRN office.test\r\nQUIT\r\n"), out
        assert O.plain_words(code) or code in (421, 554)


def test_no_atrn_offered_is_a_configuration_error():
    c = client()
    written(c, b"220 x\r\n250-x\r\n250 AUTH CRAM-MD5\r\n221 bye\r\n", 3)
    assert c.result[0] == O.CONFIG and b"ATRN" in c.result[2]


def test_password_never_in_clear_without_tls():
    c = client()
    out, _ = written(c, b"220 x\r\n250-x\r\n250-AUTH PLAIN LOGIN\r\n250 ATRN\r\n221 bye\r\n", 4)
    assert c.result[0] == O.CONFIG and b"TLS" in c.result[2], c.result
    assert b"AUTH" not in out, out


def test_starttls_then_plain_inside_tls_and_tls_is_active_across_the_reversal():
    data = (b"220 x\r\n250-x\r\n250-STARTTLS\r\n250 ATRN\r\n220 go ahead\r\n"
            b"250-x\r\n250-AUTH PLAIN\r\n250 ATRN\r\n235 ok\r\n250 reversing\r\nEHLO isp\r\nQUIT\r\n")
    # Only reads that end at the 220: a real provider sends nothing more before
    # the handshake (octets in the same read are the injection tested below).
    for piece in (1, 2):
        c = client(tls="starttls")
        out, last = written(c, data, piece)
        assert out.startswith(b"EHLO gw.office.test\r\nSTARTTLS\r\nEHLO gw.office.test\r\nAUTH PLAIN "), out
        assert c.tls_active and last is c.server and last.tls_active
        assert b"STARTTLS" not in out.split(G, 1)[1], out  # the reversed server offers no second STARTTLS


def test_required_starttls_missing_ends_it():
    c = client(tls="starttls")
    written(c, b"220 x\r\n250-x\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n221 bye\r\n", 2)
    assert c.result[0] == O.CONFIG and b"STARTTLS" in c.result[2]


def test_octets_after_starttls_220_end_the_session():
    c = client(tls="starttls")
    out, _ = written(c, b"220 x\r\n250-x\r\n250-STARTTLS\r\n250 ATRN\r\n220 go\r\n250 injected\r\n", 200)
    assert c.result[0] == O.LATER and b"STARTTLS" in c.result[2] and c.closing, c.result
    assert out.count(b"EHLO") == 1


def test_wrong_password_and_a_dropped_line():
    c = client()
    written(c, OPEN.replace(b"235 2.7.0 ok", b"535 5.7.8 authentication failed") + b"221 bye\r\n", 9)
    assert c.result[0] == O.CONFIG and c.result[1] == 535
    c = client()
    written(c, OPEN, 9)
    c.on_eof()  # the carrier drops while ATRN waits
    assert c.result == (O.LATER, 0, b"connection lost")
    assert c.timeout_ms >= 600000  # RFC 2645: wait at least 10 minutes for the ATRN reply


def test_the_reversed_provider_is_never_lan_no_relay_no_auth_even_from_a_lan_address():
    # A provider inside `lan` (127.0.0.1 here: a tunnel, a provider on the LAN)
    # gets only what any Internet peer gets: local domains, no relaying, no AUTH.
    sp = smtpfakes.FakeSpool()
    c = client(spool=sp)
    c.peer = ("127.0.0.1", 366)
    assert SVC.cfg.is_lan("127.0.0.1")
    out, last = written(c, OPEN + b"250 reversing\r\nEHLO isp\r\nAUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=\r\n"
                        b"MAIL FROM:<x@example.net>\r\nRCPT TO:<far@example.org>\r\nQUIT\r\n", 11)
    rev = out.split(G, 1)[1]
    assert last is c.server and not last.lan and last.user is None
    assert b"AUTH" not in rev.split(b"\r\n250 HELP", 1)[0], rev  # not offered in the EHLO
    assert b"\r\n538 " in rev or b"\r\n502 " in rev, rev  # and refused when tried
    assert b"\r\n554 5.7.1" in rev or b"\r\n550 " in rev, rev  # no relaying for it
    assert not sp.committed and c.outcome()[0] == O.REVERSED


def test_a_reversed_session_without_the_providers_quit_fails_the_call():
    sp = smtpfakes.FakeSpool()
    c = client(spool=sp)
    provider = (OPEN + b"250 reversing\r\nEHLO isp\r\nMAIL FROM:<c@example.net>\r\nRCPT TO:<alice@office.test>\r\n"
                b"DATA\r\nSubject: held\r\n\r\nx\r\n.\r\n")
    written(c, provider, 13)
    c.server.on_eof()  # the line drops, or the provider hangs up, with no QUIT
    assert len(sp.committed) == 1  # what got our 250 is ours
    assert c.result[0] == O.REVERSED and c.outcome() == (
        O.LATER, 250, b"the reversed session ended without the provider's QUIT"), c.outcome()


HOSTILE = [b"220 odmr.isp.test ready\r\n", b"250-odmr.isp.test\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n",
                b"250-odmr.isp.test\r\n250-\xe4TRN\xff\r\n250 ATRN\r\n",
                b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n", b"235 ok\r\n", b"250 go\r\n",
                b"453 no mail\r\n", b"451 later\r\n", b"450 busy\r\n", b"530 auth\r\n", b"502 no\r\n",
                b"EHLO isp.test\r\n", b"MAIL FROM:<a@far.test>\r\n", b"RCPT TO:<bob@office.test>\r\n",
                b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n", b"QUIT\r\n"]


def test_odmr_client_against_a_hostile_provider():
    """Random hostile transcripts (test_fuzz_clients.py's generator): nothing
    raises, whole lines out, no message left half-written, heap flat."""
    from fuzzgen import batch, transcript, whole_lines

    odmr_client = O
    svc = SVC

    def one(rng):
        svc.spool = smtpfakes.FakeSpool(keep=False)

        def make_server(peer, tls_active):
            s = svc.session(peer)
            s.tls_active = tls_active
            return s

        c = odmr_client.OdmrClient(b"gw.office.test", "tim", "tanstaaf", rng.pick([["office.test"], []]),
                                   rng.pick(["none", "opportunistic"]), lambda: "CTX", make_server, ("192.0.2.9", 366))
        data = transcript(rng, HOSTILE, 16, 500, TBUF)  # shorter lines: this heap holds the SMTP core too
        out, last = fwtest.drive_net(c, data, 1 + rng.below(64), 1024, BUF)
        whole_lines(out)
        last.on_close()
        assert svc.spool.open == 0, "a half-written message was left open"

    batch("odmr client", 4242, one)
