"""STARTTLS (RFC 3207): the state it resets, and its context, the gateway's to
make when a client asks for it (app._tls_offer): offered on the word of a
certificate, made at the command."""

import smtpfakes
from smtpfakes import GO, LAN, OUTSIDE, RCPT_OK, SENDER_OK, G, Run, ehlo_reply

import fwtest
from dialgate import auth
from dialgate.smtp_server import S_GREET

PLAIN = auth.b64encode(b"\x00alice\x00wonderland")


def test_starttls_makes_the_context_on_demand_and_454_when_it_cannot():
    # the gateway's offer: a function giving the context, called at STARTTLS only
    made = []
    svc = smtpfakes.service(tls=lambda: made.append(1))  # a certificate that no longer loads: no context
    out = fwtest.drive(svc.session(OUTSIDE), b"EHLO x\r\nNOOP\r\n")
    assert b"250-STARTTLS\r\n" in out and made == [], out  # offered, nothing made for the EHLO
    s = svc.session(OUTSIDE)
    out = fwtest.drive(s, b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\n")
    assert out.endswith(b"454 4.7.0 TLS not available now\r\n" + SENDER_OK), out  # RFC 3207 §4
    assert made == [1] and s.tls is None and not s.tls_active


def test_starttls_discards_early_input_and_forgets_state():
    ctx = object()
    r = Run(OUTSIDE, tls=lambda: ctx)  # the gateway's offer: the context, made at STARTTLS
    data = b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.net>\r\n" + b"x" * 600 + b"\r\n"
    r.check(data, G + ehlo_reply(OUTSIDE, False, True) + b"220 2.0.0 Ready to start TLS\r\n")
    s = r.s
    assert s.tls is ctx
    s.on_tls()  # net did the handshake
    assert s.tls is None and s.state == S_GREET and s.tls_active
    out = fwtest.drive(
        s,
        b"MAIL FROM:<a@b.example>\r\nEHLO y\r\nSTARTTLS\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<a@b.example>\r\n"
        b"RCPT TO:<x@example.net>\r\nDATA\r\nhi\r\n.\r\n",
    )
    assert out == (
        G
        + b"503 5.5.1 Send HELO or EHLO first\r\n"
        + ehlo_reply(OUTSIDE, True, name="y")
        + b"503 5.5.1 TLS already active\r\n"
        + b"235 2.7.0 Authentication successful\r\n"
        + SENDER_OK
        + RCPT_OK
        + GO
        + b"250 2.0.0 Ok: queued as M1\r\n"
    ), out
    assert b" with ESMTPSA\r\n\tfor <x@example.net>;" in r.svc.spool.committed[0][3]
    r = Run(LAN)
    r.check(b"EHLO x\r\nSTARTTLS\r\n", G + ehlo_reply(LAN) + b"502 5.5.1 STARTTLS not offered\r\n")
