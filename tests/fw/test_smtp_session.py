"""SMTP server transcripts: verbs, states, pipelining, limits; split at every byte."""

import smtpfakes
from smtpfakes import BYE, GO, LAN, OK, OUTSIDE, RCPT_OK, RELAY, SENDER_OK, G, Run, ehlo_reply

from dialgate.smtp_server import S_READY


def test_lan_transaction_local_and_remote_split_at_every_byte():
    r = Run(LAN)
    data = (
        b"EHLO pc\r\nMAIL FROM:<alice@office.test> SIZE=100 BODY=8BITMIME\r\n"
        b"RCPT TO:<bob@office.test>\r\nRCPT TO:<friend@example.net>\r\nDATA\r\n"
        b"Subject: hi\r\n\r\n..dotted\r\n\xc3\xa9t\xc3\xa9 8bit\r\n.\r\nQUIT\r\n"
    )
    sp = r.check(
        data,
        G + ehlo_reply(LAN, name="pc") + SENDER_OK + RCPT_OK + RCPT_OK + GO + b"250 2.0.0 Ok: queued as M1\r\n" + BYE,
    )
    assert len(sp.committed) == 1 and sp.open == 0
    msg_id, sender, routes, body, size = sp.committed[0]
    assert sender == "alice@office.test"
    assert routes == [("local", "bob@office.test", ["bob"]), ("remote", "friend@example.net", [])], routes
    assert body.startswith(b"Received: from pc ([127.0.0.1])\r\n\tby gw.office.test (dialgate) with ESMTP;\r\n\t")
    head, _, text = body.partition(b"\r\n\r\n")
    assert b"\r\nSubject: hi\r\nDate: " in head and b"\r\nMessage-ID: <" in head, head
    assert text == b".dotted\r\n\xc3\xa9t\xc3\xa9 8bit\r\n", text  # RFC 6152: 8 bits unchanged
    assert sp.sizes_asked[0] == 100  # SIZE= went to the spool guard


def test_pipelined_batch_replies_in_order():
    # RFC 2920: the whole batch arrives in one read; replies come in order.
    r = Run(OUTSIDE)
    data = (
        b"EHLO isp\r\nMAIL FROM:<>\r\nRCPT TO:<alice@office.test>\r\nRCPT TO:<nobody@office.test>\r\n"
        b"RCPT TO:<x@example.net>\r\nDATA\r\nhello\r\n.\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nQUIT\r\n"
    )
    sp = r.check(
        data,
        G
        + ehlo_reply(OUTSIDE, auth_line=False, name="isp")
        + SENDER_OK
        + RCPT_OK
        + b"550 5.1.1 No such user here\r\n"
        + RELAY
        + GO
        + b"250 2.0.0 Ok: queued as M1\r\n"
        + SENDER_OK
        + OK
        + BYE,
        pieces=(1, 2, 3, 7, 64, len(data)),
    )
    _, sender, routes, body, _ = sp.committed[0]
    assert sender == "" and routes == [("local", "alice@office.test", ["alice"])]
    assert b"\tfor <alice@office.test>;" in body  # single recipient: named in Received
    assert b"Date:" not in body and b"Message-ID:" not in body  # not a LAN submission


def test_each_verb():
    r = Run(LAN)
    data = (
        b"NOOP\r\nHELP\r\nVRFY alice\r\nVRFY\r\nRSET\r\nHELO pc\r\nRSET x\r\nEHLO\r\nHELO\r\n"
        b"EXPN list\r\nDATA x\r\nnoop\r\nQuit\r\nNOOP\r\n"
    )
    r.check(
        data,
        G
        + OK
        + b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP AUTH STARTTLS\r\n"
        + b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
        + b"501 5.5.4 Syntax: VRFY address\r\n"
        + OK
        + b"250 gw.office.test\r\n"
        + b"501 5.5.4 Syntax: RSET\r\n"
        + b"501 5.5.4 Syntax: EHLO hostname\r\n"
        + b"501 5.5.4 Syntax: HELO hostname\r\n"
        + b"500 5.5.2 Command not recognized\r\n"
        + b"503 5.5.1 Need MAIL command first\r\n"
        + OK
        + BYE,
    )
    assert r.s.closing


def test_each_wrong_state_reply():
    r = Run(LAN)
    first = b"503 5.5.1 Send HELO or EHLO first\r\n"
    data = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\nAUTH PLAIN\r\nSTARTTLS\r\n"
    r.check(data, G + first * 5)
    need_mail = b"503 5.5.1 Need MAIL command first\r\n"
    data = b"HELO pc\r\nRCPT TO:<alice@office.test>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<c@d.example>\r\n"
    data += (
        b"DATA\r\nAUTH PLAIN\r\nSTARTTLS\r\nRCPT TO:<alice@office.test>\r\nMAIL FROM:<e@f.example>\r\nAUTH LOGIN\r\n"
    )
    r.check(
        data,
        G
        + b"250 gw.office.test\r\n"
        + need_mail
        + need_mail
        + SENDER_OK
        + b"503 5.5.1 Sender already given\r\n"
        + b"503 5.5.1 No valid recipients\r\n"
        + b"503 5.5.1 Not during a mail transaction\r\n" * 2
        + RCPT_OK
        + b"503 5.5.1 Sender already given\r\n"
        + b"503 5.5.1 Not during a mail transaction\r\n",
    )


def test_timeout_reply():
    s = smtpfakes.service().session(LAN)
    assert s.on_timeout() == b"421 4.4.2 gw.office.test Timeout, closing connection\r\n"


def test_ehlo_resets_transaction():
    r = Run(LAN)
    r.check(
        b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nEHLO x\r\nRCPT TO:<alice@office.test>\r\n",
        G + ehlo_reply(LAN) + SENDER_OK + ehlo_reply(LAN) + b"503 5.5.1 Need MAIL command first\r\n",
    )
    assert r.s.state == S_READY


def test_helo_name_cannot_break_the_received_field():
    # RFC 5321 §4.4 / RFC 5322 §3.2.2: "(" ")" "\" in the from clause would
    # open or escape a comment, ";" end the clauses, '"' start a quoted string.
    for helo, shown in ((b'pc(x\\y;"z', "pcxyz"), (b"((()))", "unknown")):
        r = Run(LAN)
        data = (b"EHLO " + helo + b"\r\nMAIL FROM:<alice@office.test>\r\nRCPT TO:<bob@office.test>\r\nDATA\r\n"
                b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        sp = r.check(data, G + ehlo_reply(LAN, name=shown) + SENDER_OK + RCPT_OK + GO
                     + b"250 2.0.0 Ok: queued as M1\r\n" + BYE, pieces=(1, len(data)))
        body = sp.committed[0][3]
        first = body.split(b"\r\n")[0]
        assert first == b"Received: from " + shown.encode() + b" ([127.0.0.1])", first
