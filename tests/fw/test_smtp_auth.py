"""SMTP AUTH PLAIN/LOGIN and failed-login throttling (STARTTLS: test_smtp_starttls)."""

import smtpfakes
from smtpfakes import LAN, OK, OUTSIDE, G, Run, ehlo_reply

import fwtest
from dialgate import auth

PLAIN = auth.b64encode(b"\x00alice\x00wonderland")


def test_auth_plain_and_login_every_form():
    r = Run(LAN)
    ok = b"235 2.7.0 Authentication successful\r\n"
    r.check(
        b"EHLO x\r\nAUTH PLAIN " + PLAIN + b"\r\nAUTH PLAIN\r\n",
        G + ehlo_reply(LAN) + ok + b"503 5.5.1 Already authenticated\r\n",
    )
    assert r.s.user == "alice"
    r.check(b"EHLO x\r\nAUTH PLAIN\r\n" + PLAIN + b"\r\n", G + ehlo_reply(LAN) + b"334 \r\n" + ok)
    r.check(
        b"EHLO x\r\nAUTH LOGIN\r\n" + auth.b64encode(b"bob") + b"\r\n" + auth.b64encode(b"builder") + b"\r\n",
        G + ehlo_reply(LAN) + b"334 VXNlcm5hbWU6\r\n" + b"334 UGFzc3dvcmQ6\r\n" + ok,
    )
    assert r.s.user == "bob"
    r.check(
        b"EHLO x\r\nauth login " + auth.b64encode(b"bob") + b"\r\n" + auth.b64encode(b"builder") + b"\r\n",
        G + ehlo_reply(LAN) + b"334 UGFzc3dvcmQ6\r\n" + ok,
    )
    r.check(
        b"EHLO x\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n!!!\r\nAUTH CRAM-MD5\r\nAUTH PLAIN "
        + auth.b64encode(b"bob\x00alice\x00wonderland")
        + b"\r\n",
        G
        + ehlo_reply(LAN)
        + b"334 VXNlcm5hbWU6\r\n"
        + b"501 5.0.0 Authentication cancelled\r\n"
        + b"334 \r\n"
        + b"501 5.5.2 Cannot decode response\r\n"
        + b"504 5.5.4 Unrecognized authentication type\r\n"
        + b"501 5.5.2 Cannot decode response\r\n",
    )


def test_auth_user_names_are_folded_to_lower_case_as_user_add_stores_them():
    r = Run(LAN)
    r.check(b"EHLO x\r\nAUTH PLAIN " + auth.b64encode(b"\x00Alice\x00wonderland") + b"\r\n",
            G + ehlo_reply(LAN) + b"235 2.7.0 Authentication successful\r\n")
    assert r.s.user == "alice"


def test_auth_failures_slow_down_then_lock_out():
    svc = smtpfakes.service()
    bad = b"AUTH PLAIN " + auth.b64encode(b"\x00alice\x00wrong")
    pauses = []
    for _ in range(5):
        s = svc.session(LAN)
        s.on_line(b"EHLO x")
        out = s.on_line(bad)  # not through drive(): it clears pause_ms as net would
        assert out == b"535 5.7.8 Authentication credentials invalid\r\n", out
        pauses.append(s.pause_ms)
    assert pauses == [1000, 2000, 4000, 8000, 8000], pauses
    s = svc.session(LAN)
    out = fwtest.drive(s, b"EHLO x\r\nAUTH PLAIN " + PLAIN + b"\r\n")
    assert out.endswith(b"454 4.7.0 Too many failed logins, try again later\r\n"), out
    assert s.user is None
    out = fwtest.drive(svc.session(("127.0.0.9", 1)), b"EHLO x\r\nAUTH PLAIN " + PLAIN + b"\r\n")
    assert b"235 2.7.0" not in out  # 127.0.0.9 is outside the LAN: no plaintext AUTH
    assert out.endswith(b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"), out


# Three tests, not one: each builds its own config, and under MicroPython each
# test runs in a fresh 128K heap (one that built three was at the edge in CI).
def test_auth_over_plaintext_refused_outside_the_lan():
    r = Run(OUTSIDE)
    r.check(
        b"EHLO x\r\nAUTH PLAIN " + PLAIN + b"\r\n",
        G + ehlo_reply(OUTSIDE, False) + b"538 5.7.11 Encryption required for requested authentication mechanism\r\n",
    )


def test_auth_over_plaintext_never_when_configured():
    r = Run(LAN, over={"smtp.auth_plaintext": "never"})
    r.check(b"EHLO x\r\n", G + ehlo_reply(LAN, False))


def test_auth_not_offered_without_users():
    r = Run(LAN, users=False)
    r.check(b"EHLO x\r\nAUTH PLAIN\r\n", G + ehlo_reply(LAN, False) + b"502 5.5.1 AUTH not offered\r\n")


def test_overlong_sasl_response_ends_the_exchange():
    r = Run(LAN)
    r.check(
        b"EHLO x\r\nAUTH PLAIN\r\n" + b"A" * 600 + b"\r\nNOOP\r\n",
        G + ehlo_reply(LAN) + b"334 \r\n" + b"500 5.5.6 Authentication exchange line is too long\r\n" + OK,
        pieces=(1, 3, 512, 700),
    )
    assert r.s.sasl is None and r.s.user is None
