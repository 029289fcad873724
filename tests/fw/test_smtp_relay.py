"""Relay policy at RCPT: local from anyone, elsewhere only from the LAN or after AUTH."""

import smtpfakes
from smtpfakes import LAN, OUTSIDE, RCPT_OK, RELAY, SENDER_OK, G, Run, ehlo_reply

import fwtest
from dialgate import auth


def test_relay_policy_at_rcpt():
    base = b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n"
    r = Run(OUTSIDE)
    r.check(
        base + b"RCPT TO:<friend@example.net>\r\nRCPT TO:<Alice@OFFICE.TEST>\r\nRCPT TO:<ghost@office.test>\r\n"
        b"RCPT TO:<postmaster>\r\n",
        G + ehlo_reply(OUTSIDE, False) + SENDER_OK + RELAY + RCPT_OK + b"550 5.1.1 No such user here\r\n" + RCPT_OK,
    )
    r = Run(LAN)
    r.check(base + b"RCPT TO:<friend@example.net>\r\n", G + ehlo_reply(LAN) + SENDER_OK + RCPT_OK)


# The classic relay tricks; office.test is local, example.net is not. Every one
# must be refused from outside with 554 5.7.1 and accepted from the LAN.


RELAY_TRICKS = [
    b"<friend@example.net>",  # plain relay
    b"<friend%example.net@office.test>",  # %-hack
    b"<@office.test:friend@example.net>",  # source route
    b"<@office.test,@gw.office.test:friend@example.net>",  # multi-hop source route
    b"<example.net!friend@office.test>",  # bang path
    b'<"friend@example.net"@office.test>',  # quoted local part with @
    b'<"friend%example.net"@office.test>',  # quoted %-hack
    b"<friend@example.net@office.test>",  # user@remote@local
    b"<friend@[192.0.2.1]>",  # IP literal
    b"<friend@[127.0.0.1]>",  # IP literal of ourselves
    b"<friend@example.net.>",  # trailing dot
    b"<friend@office.test.>",  # trailing dot on the local domain
    b"<friend@EXAMPLE.NET>",  # mixed case
    b"<friend%example.net@OFFICE.Test>",  # %-hack, mixed case
    b"<friend@office.test.example.net>",  # local domain as a prefix
    b"<friend@sub.office.test>",  # subdomain of the local domain
    b"<friend\\@example.net@office.test>",  # escaped @ outside quotes
    b"< friend@example.net >",  # spaces inside the brackets
    b'<"friend!example.net"@office.test>',  # quoted bang path
]


def test_relay_tricks_refused_from_outside_accepted_from_lan_and_after_auth():
    assert len(RELAY_TRICKS) >= 15
    for trick in RELAY_TRICKS:
        cmd = b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:" + trick + b"\r\n"
        out = fwtest.drive(smtpfakes.service().session(OUTSIDE), cmd, 3)
        assert out.endswith(RELAY), (trick, out)
        out = fwtest.drive(smtpfakes.service().session(LAN), cmd, 3)
        assert not out.endswith(RELAY), (trick, out)
        assert out.split(b"\r\n")[-2][:3] in (b"250", b"550"), (trick, out)  # 550: no catch-all here
        svc = smtpfakes.service({"smtp.auth_plaintext": "always"})
        login = b"EHLO x\r\nAUTH PLAIN " + auth.b64encode(b"\x00alice\x00wonderland") + b"\r\n"
        out = fwtest.drive(svc.session(OUTSIDE), login + cmd[8:], 3)
        assert b"235 2.7.0" in out and not out.endswith(RELAY), (trick, out)
