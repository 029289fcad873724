"""bounce: RFC 3464 DSN format (parsed back with `email` under CPython), header
copy across every chunk split, never bounce a bounce."""

from smtpfake import BytesFile

import fwtest
from dialgate import bounce, compat

ORIGINAL = (
    b"From: Alice <alice@office.test>\r\n"
    b"To: bob@example.com, carol@example.com\r\n"
    b"Subject: quarterly figures\r\n"
    b"Message-ID: <q1@office.test>\r\n"
    b"\r\n"
    b"Body line one\r\n\r\n.and more\r\n"
)
HEADER = ORIGINAL[: ORIGINAL.index(b"\r\n\r\n") + 2]


class Sink:
    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(bytes(data))

    def value(self):
        return b"".join(self.parts)


def notice(action=bounce.FAILED):
    rcpts = [("bob@example.com", "550 5.1.1 <bob@example.com>: Recipient address rejected"),
             ("carol@example.com", "452 4.2.2 mailbox full")]
    return bounce.Notice("0a1b-00000001", "alice@office.test", 1700000000, action, rcpts, "isp.test",
                         1700000000 + 5 * 86400)


def dsn(action=bounce.FAILED, original=ORIGINAL, rbuf=64):
    s = Sink()
    bounce.write_dsn(s, notice(action), "gw.office.test", 1700003600, BytesFile(original), bytearray(rbuf))
    return s.value()


def test_date_format():
    assert bounce.rfc5322_date(0) == "Thu, 1 Jan 1970 00:00:00 +0000"
    assert bounce.rfc5322_date(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert bounce.rfc5322_date(951782400) == "Tue, 29 Feb 2000 00:00:00 +0000"
    assert bounce.rfc5322_date(4102444799) == "Thu, 31 Dec 2099 23:59:59 +0000"


def test_status_of():
    assert bounce.status_of("550 5.1.1 no such user", "5.0.0") == "5.1.1"
    assert bounce.status_of("550 no such user", "5.0.0") == "5.0.0"
    assert bounce.status_of("", "4.0.0") == "4.0.0"


def test_dsn_structure_both_runtimes():
    d = dsn()
    text = d.decode()
    head, _, rest = text.partition("\r\n\r\n")
    assert "\nFrom: Mail Delivery System <MAILER-DAEMON@gw.office.test>" in "\n" + head
    assert "To: <alice@office.test>" in head
    assert "Auto-Submitted: auto-replied" in head
    assert "multipart/report; report-type=delivery-status" in head
    assert "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; gw.office.test\r\n" in rest
    assert "Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n" in rest
    assert "Diagnostic-Code: smtp; 550 5.1.1" in rest
    assert "Content-Type: text/rfc822-headers\r\n\r\n" + HEADER.decode() + "--=_dialgate_dsn_" in rest
    assert text.endswith("--\r\n")
    assert "Body line one" not in text  # headers only, never the body
    for line in d.split(b"\r\n"):
        assert len(line) <= 998  # RFC 5322 §2.1.1
        assert b"\n" not in line and b"\r" not in line  # CRLF line ends only


def test_dsn_parses_with_email_package():
    if compat.MICROPYTHON:
        fwtest.skip("MicroPython has no `email` package; the structure test above covers the format there")
    import email

    for action in (bounce.FAILED, bounce.DELAYED):
        msg = email.message_from_bytes(dsn(action))
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "delivery-status"
        assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@gw.office.test>"
        parts = msg.get_payload()
        assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                       "text/rfc822-headers"]
        blocks = parts[1].get_payload()  # per-message fields, then one block per recipient
        assert blocks[0]["Reporting-MTA"] == "dns; gw.office.test"
        assert blocks[0]["Arrival-Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
        assert len(blocks) == 3
        assert blocks[1]["Final-Recipient"] == "rfc822; bob@example.com"
        assert blocks[1]["Action"] == action
        assert blocks[2]["Final-Recipient"] == "rfc822; carol@example.com"
        if action == bounce.FAILED:
            assert blocks[1]["Status"] == "5.1.1" and blocks[2]["Status"] == "4.2.2"
            assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        else:
            assert blocks[1]["Status"] == "4.0.0"  # a delay report never says 5.x.x
            assert blocks[2]["Status"] == "4.2.2"
            assert blocks[1]["Will-Retry-Until"] == "Sun, 19 Nov 2023 22:13:20 +0000"
        assert blocks[1]["Remote-MTA"] == "dns; isp.test"
        orig = email.message_from_string(parts[2].get_payload())
        assert orig["Subject"] == "quarterly figures"
        assert orig["Message-ID"] == "<q1@office.test>"
        # the CRLF before the boundary belongs to the boundary (RFC 2046 §5.1.1)
        assert parts[2].get_payload().encode() + b"\r\n" == HEADER


def test_header_copy_every_chunk_size():
    for original, want in (
        (ORIGINAL, HEADER),
        (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
        (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),  # header only, no body
        (b"\r\nbody only\r\n", b""),
        (b"A: 1\r\n\rX\r\n\r\n", b"A: 1\r\n\rX\r\n"),  # a lone CR is not a blank line
    ):
        for size in range(1, len(original) + 2):
            s = Sink()
            ends = bounce.copy_header(s, BytesFile(original), bytearray(size))
            assert s.value() == want, (size, s.value(), want)
            assert ends == (want == b"" or want.endswith(b"\n"))


def test_header_copy_is_bounded():
    class EndlessHeader:  # 1 MB of header lines, made up as they are read
        line = b"X-Filler: " + b"y" * 70 + b"\r\n"
        pos = 0

        def readinto(self, buf):
            n = len(buf)
            for k in range(n):
                buf[k] = self.line[(self.pos + k) % len(self.line)]
            self.pos += n
            return n if self.pos < 1 << 20 else 0

    class Counter:
        n = 0

        def write(self, data):
            self.n += len(data)

    c = Counter()
    bounce.copy_header(c, EndlessHeader(), bytearray(256))
    assert c.n == bounce.MAX_HEADER_COPY


class FakeRouter:
    def route(self, address):
        from dialgate.delivery import Route

        if address.endswith("@office.test"):
            return Route("local", address, [address.split("@")[0]])
        return Route("remote", address, [])


class FakeWriter(Sink):
    def __init__(self, spool):
        Sink.__init__(self)
        self.spool = spool

    def commit(self, sender, routes):
        self.spool.committed.append((sender, routes, self.value()))
        return "dsn1"

    def abort(self):
        self.spool.aborted += 1


class FakeQueue:
    def open_body(self, msg_id):
        return BytesFile(ORIGINAL)


class FakeSpool:
    def __init__(self):
        self.committed = []
        self.aborted = 0
        self.queue = FakeQueue()

    def writer(self):
        return FakeWriter(self)


def test_send_dsn_goes_to_sender_from_null_sender():
    sp = FakeSpool()
    mid = bounce.send_dsn(sp, FakeRouter(), "gw.office.test", notice(), 1700003600, bytearray(128))
    assert mid == "dsn1"
    sender, routes, data = sp.committed[0]
    assert sender == ""  # RFC 3464 §2: from the null reverse-path
    assert routes[0].kind == "local" and routes[0].users == ["alice"]
    assert HEADER in data


def test_never_bounce_a_bounce():
    sp = FakeSpool()
    n = notice()
    n.sender = ""
    assert bounce.send_dsn(sp, FakeRouter(), "gw.office.test", n, 1700003600, bytearray(128)) is None
    assert sp.committed == [] and sp.aborted == 0
