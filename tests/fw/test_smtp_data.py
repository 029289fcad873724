"""SMTP DATA through the session: smuggling, line and size limits, spool errors, headers."""

import smtpfakes
from smtpfakes import BYE, GO, LAN, OK, OUTSIDE, Run, message

import fwtest


def test_size_overrun_in_data_answered_after_end():
    line = b"x" * 300 + b"\r\n"
    for piece in (1, 7, 100, 400):
        svc = smtpfakes.service({"smtp.max_size": 1024})
        s = svc.session(LAN)
        assert fwtest.drive(s, smtpfakes.PREAMBLE, 64).endswith(GO)
        for _ in range(4):  # 1208 octets: over 1024, no reply until the end of data
            assert fwtest.drive(s, line, piece) == smtpfakes.G
        out = fwtest.drive(s, b".\r\nNOOP\r\n", piece)
        assert out == smtpfakes.G + b"552 5.3.4 Message size exceeds fixed maximum message size\r\n" + OK, out
        assert svc.spool.committed == [] and svc.spool.open == 0


def test_text_line_1000_1001_1002_octets():
    # RFC 5321 §4.5.3.1.6: 1000 octets including CRLF is the longest text line.
    for total, ok in ((1000, True), (1001, False), (1002, False)):
        line = b"a" * (total - 2) + b"\r\n"
        out, sp = message(b"Subject: t\r\n\r\n" + line + b".\r\n", peer=OUTSIDE, pieces=(1, 7, 64, 333))
        if ok:
            assert out == b"250 2.0.0 Ok: queued as M1\r\n", out
            assert sp.committed[0][3].endswith(line[-64:]) and sp.committed[0][4] > total
        else:
            assert out == b"500 5.5.2 Text line longer than 1000 octets (RFC 5321 4.5.3.1.6)\r\n", (total, out)
            assert sp.committed == [] and sp.open == 0


SMUGGLED = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@office.test>\r\nDATA\r\nspoof\r\n"


def test_smuggling_bare_lf_and_cr_never_end_data():
    for marker in (b"\n.\r\n", b"\r.\r", b"\n.\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"):
        body = b"Subject: x\r\n\r\nhello" + marker + SMUGGLED + b".\r\n"
        out, sp = message(body, peer=OUTSIDE, pieces=(1, 2, 3, 5, 8, 200))
        assert out == b"250 2.0.0 Ok: queued as M1\r\n", (marker, out)
        assert len(sp.committed) == 1
        stored = sp.committed[0][3]
        assert b"MAIL FROM:<evil@example.net>\r\n" in stored, (marker, stored)
        assert b"\r\n.\r\n" in stored or b"\r\n.\r\n" not in marker  # the dot line is kept, as CRLF
        for i in range(len(stored)):  # only CRLF line ends are stored
            if stored[i] == 10:
                assert stored[i - 1] == 13, (marker, stored)
            if stored[i] == 13:
                assert stored[i + 1] == 10, (marker, stored)


def test_end_marker_split_and_pipelined_command_after_it():
    out, sp = message(b"a\r\n.\r\nQUIT\r\n")
    assert out == b"250 2.0.0 Ok: queued as M1\r\n" + BYE
    out, sp = message(b".\r\n")  # empty message
    assert out == b"250 2.0.0 Ok: queued as M1\r\n"


def test_lan_submission_gets_date_and_message_id_only_when_missing():
    _, sp = message(b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: s\r\n\r\nb\r\n.\r\n", pieces=(1, 13, 500))
    body = sp.committed[0][3]
    assert body.count(b"Date:") == 1 and body.count(b"\r\nMessage-ID: <") == 1, body
    _, sp = message(b"message-id: <x@y>\r\n\r\nb\r\n.\r\n", pieces=(1, 500))
    body = sp.committed[0][3]
    assert body.count(b"essage-") == 1 and b"\r\nDate: " in body, body
    _, sp = message(b"Subject: no body, no blank line\r\n.\r\n", pieces=(1, 500))
    body = sp.committed[0][3]
    assert b"\r\nSubject: no body, no blank line\r\nDate: " in body and body.endswith(b"@gw.office.test>\r\n"), body


def test_disconnect_during_data_spools_nothing():
    for cut in (0, 1, 10, 25):
        svc = smtpfakes.service()
        s = svc.session(LAN)
        data = (
            b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\n"
            + (b"Subject: x\r\n\r\nbody\r\n.")[:cut]
        )
        out = fwtest.drive(s, data, 3)
        assert out.endswith(GO)
        s.on_eof()
        s.on_close()
        sp = svc.spool
        assert sp.committed == [] and sp.open == 0 and sp.aborted == 1, (cut, sp.aborted)


def test_spool_errors_452_451_and_nothing_half_written():
    sp = smtpfakes.FakeSpool()
    sp.full_at = 500
    out, sp = message(b"x" * 600 + b"\r\n.\r\nNOOP\r\n", spool=sp, pieces=(1, 64, 1000))
    assert out == b"452 4.3.1 Insufficient system storage\r\n" + OK, out
    assert sp.open == 0 and sp.committed == []
    sp = smtpfakes.FakeSpool()
    sp.commit_error = OSError(5, "EIO")
    out, sp = message(b"x\r\n.\r\n", spool=sp, pieces=(1, 64))
    assert out == b"451 4.3.0 Local error in processing\r\n", out
    assert sp.open == 0
    sp = smtpfakes.FakeSpool()
    sp.commit_error = OSError(28, "full")  # spool.SpoolFull carries ENOSPC
    out, sp = message(b"x\r\n.\r\n", spool=sp, pieces=(1, 64))
    assert out == b"452 4.3.1 Insufficient system storage\r\n", out
    assert sp.open == 0
    # no room at DATA: refused before 354
    sp = smtpfakes.FakeSpool()
    r = Run(LAN, spool=sp)
    data = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@office.test>\r\n"
    s = r()
    fwtest.drive(s, data, 5)
    r.svc.spool.room = False
    assert fwtest.drive(s, b"DATA\r\n").endswith(b"452 4.3.1 Insufficient system storage\r\n")
    assert r.svc.spool.open == 0
