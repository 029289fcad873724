"""POP3 client (multidrop collection) transcripts, split at every byte: greeting,
CAPA, STLS, APOP, AUTH PLAIN, USER/PASS, STAT/UIDL/LIST (pipelined or not),
RETR with dot-stuffing streamed in raw mode, DELE, QUIT; the -ERR replies that
end or steer a collection; a line dropped in the middle of a message."""

import fwtest

BUF = bytearray(1024)  # the connection buffer and the dot-decoder's scratch, made while the heap is whole
SCRATCH = bytearray(1024)

from dialgate import pop3_client as P  # noqa: E402

STAMP = b"<1896.697170952@dbc.mtview.ca.us>"  # RFC 1939 §7's example: secret tanstaaf
GREET = b"+OK POP3 server ready " + STAMP + b"\r\n"
MSG1 = b"Subject: one\r\n\r\n..leading dot\r\n...two dots\r\n.\r\n"
MSG2 = b"Subject: two\r\n\r\nbody\r\n.\r\n"
LISTING = (b"+OK 2 messages (320 octets)\r\n"
           b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"
           b"+OK\r\n1 120\r\n2 200\r\n.\r\n")


class Box:
    """What pop3_client asks of a collection (multidrop.Collection's shape), recording it."""

    max_size = 100000

    def __init__(self, delete=True):
        self.delete = delete
        self.events = []
        self.listing = []
        self.plan = []
        self.data = None
        self.got = []
        self.aborted = 0

    def begin_listing(self, count):
        self.events.append("stat %d" % count)

    def listed(self, n, uid):
        self.listing.append((n, uid))

    def sized(self, n, size):
        self.listing.append((n, size))

    def listing_done(self):
        self.events.append("listed")
        self.plan = [(P.RETR, i) for i in range(len(self.listing) // 2)]

    def next(self):
        return self.plan.pop(0) if self.plan else None

    def number(self, i):
        return i + 1

    def begin(self, i):
        self.data = bytearray()
        return self

    def write(self, d):
        self.data += d

    def sink_error(self, e):
        return b"sink"

    def retrieved(self, i, error):
        self.got.append((i, None if self.data is None else bytes(self.data), error))
        self.data = None
        if error is None and self.delete:
            self.plan.insert(0, (P.DELE, i))

    def deleted(self, i, ok):
        self.events.append("deleted %d %s" % (i, ok))

    def quit(self, ok):
        self.events.append("quit %s" % ok)

    def abort(self):
        if self.data is not None:
            self.aborted += 1
            self.data = None


def client(tls="none", plaintext=False, box=None, ctx=None):
    c = P.Pop3Client("mrose", "tanstaaf", box or Box(), tls, ctx, plaintext, ("192.0.2.10", 110), SCRATCH)
    return c


def run(c, data, piece):
    return fwtest.drive_net(c, data, piece, 1024, BUF)


def every(make, data, pieces=None):
    """Drive a fresh client at every read size; all must write the same. -> (out, last client)."""
    first = None
    c = None
    for piece in pieces or range(1, len(data) + 2):
        c = make()
        out, _ = run(c, data, piece)
        if first is None:
            first = out
        assert out == first, (piece, out, first)
    return first, c


def test_rfc_1939_apop_digest():
    assert P.apop_digest(STAMP, "tanstaaf") == b"c4c9334bac560ecc979e58001b3e22fb"


def test_apop_listing_retr_with_dot_stuffing_dele_quit_split_at_every_byte():
    server = (GREET + b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n" + b"+OK mrose has 2 messages\r\n" + LISTING
              + b"+OK 120 octets\r\n" + MSG1 + b"+OK deleted\r\n" + b"+OK 200 octets\r\n" + MSG2
              + b"+OK deleted\r\n+OK bye\r\n")
    out, c = every(client, server)
    assert out == (b"CAPA\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nSTAT\r\nUIDL\r\nLIST\r\n"
                   b"RETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"), out
    b = c.box
    assert b.listing == [(1, b"whqtswO00WBw418f9t5JxYwZ"), (2, b"QhdPYR:00WBw1Ph7x7"), (1, 120), (2, 200)]
    # RFC 1939 §3: the leading dot of a stuffed line goes, the terminator is not part of the message
    assert b.got == [(0, b"Subject: one\r\n\r\n.leading dot\r\n..two dots\r\n", None),
                     (1, b"Subject: two\r\n\r\nbody\r\n", None)], b.got
    assert b.events == ["stat 2", "listed", "deleted 0 True", "deleted 1 True", "quit True"], b.events
    assert c.result == (P.DONE, b"", "") and c.closing


def test_pipelining_sends_the_listing_together_and_each_dele_with_the_next_retr():
    server = (b"+OK ready\r\n+OK\r\nPIPELINING\r\nSASL PLAIN\r\nUIDL\r\n.\r\n+OK logged in\r\n" + LISTING
              + b"+OK\r\n" + MSG1 + b"+OK deleted\r\n+OK\r\n" + MSG2 + b"+OK deleted\r\n+OK bye\r\n")
    out, c = every(lambda: client(tls="implicit"), server)
    assert out == (b"CAPA\r\nAUTH PLAIN AG1yb3NlAHRhbnN0YWFm\r\nSTAT\r\nUIDL\r\nLIST\r\nRETR 1\r\n"
                   b"DELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"), out
    assert len(c.box.got) == 2 and c.result[0] == P.DONE


def test_leave_on_server_fetches_without_dele():
    server = GREET + b"+OK\r\nUIDL\r\n.\r\n+OK\r\n" + LISTING + b"+OK\r\n" + MSG1 + b"+OK\r\n" + MSG2 + b"+OK bye\r\n"
    out, c = every(lambda: client(box=Box(delete=False)), server, range(1, 40))
    assert b"DELE" not in out and out.endswith(b"RETR 1\r\nRETR 2\r\nQUIT\r\n"), out


def test_stls_then_user_pass_inside_tls():
    server = (b"+OK ready\r\n+OK\r\nSTLS\r\nUIDL\r\n.\r\n+OK Begin TLS negotiation\r\n"
              b"+OK\r\nUSER\r\nUIDL\r\n.\r\n+OK\r\n+OK logged in\r\n+OK 0 0\r\n+OK\r\n.\r\n+OK\r\n.\r\n+OK bye\r\n")
    # Only reads that end at the +OK to STLS: what comes in the same read is the injection below.
    for piece in (1, 2):
        c = client(tls="stls", ctx=lambda: "CTX")
        out, _ = run(c, server, piece)
        assert out == b"CAPA\r\nSTLS\r\nCAPA\r\nUSER mrose\r\nPASS tanstaaf\r\nSTAT\r\nUIDL\r\nLIST\r\nQUIT\r\n", out
        assert c.tls_active and c.result[0] == P.DONE


def test_octets_after_the_stls_reply_end_the_collection():
    c = client(tls="stls", ctx=lambda: "CTX")
    out, _ = run(c, b"+OK ready\r\n+OK\r\nSTLS\r\n.\r\n+OK Begin TLS\r\n+OK injected\r\n", 200)
    assert c.result[0] == P.LATER and b"STLS" in c.result[1] and c.closing, c.result
    assert out == b"CAPA\r\nSTLS\r\n", out


def test_required_stls_missing_and_no_clear_password_without_tls():
    c = client(tls="stls")
    out, _ = run(c, b"+OK ready\r\n+OK\r\nUSER\r\n.\r\n+OK bye\r\n", 3)
    assert c.result == (P.CONFIG, b"STLS required but not offered", "isp.pop3.tls"), c.result
    assert out == b"CAPA\r\nQUIT\r\n"
    c = client(tls="opportunistic")  # not offered: goes on without TLS, but keeps the password
    out, _ = run(c, b"+OK ready\r\n+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n+OK bye\r\n", 4)
    assert c.result[0] == P.CONFIG and c.result[2] == "isp.pop3.tls or isp.pop3.plaintext", c.result
    assert b"PASS" not in out and b"AUTH" not in out and b"USER" not in out, out


def test_rfc_1939_server_without_capa_and_plaintext_allowed():
    server = b"+OK ready\r\n-ERR unknown command\r\n+OK\r\n+OK\r\n+OK 0 0\r\n+OK\r\n.\r\n+OK\r\n.\r\n+OK bye\r\n"
    out, c = every(lambda: client(plaintext=True), server)
    assert out == b"CAPA\r\nUSER mrose\r\nPASS tanstaaf\r\nSTAT\r\nUIDL\r\nLIST\r\nQUIT\r\n", out
    assert c.result[0] == P.DONE


def test_login_refusals_in_use_and_no_uidl():
    capa = b"+OK\r\nUIDL\r\n.\r\n"
    c = client()
    out, _ = run(c, GREET + capa + b"-ERR [AUTH] authentication failed\r\n+OK bye\r\n", 5)
    assert c.result[0] == P.CONFIG and c.result[2] == "isp.pop3.user/password", c.result
    assert out.endswith(b"QUIT\r\n") and out.count(b"APOP") == 1
    c = client(plaintext=True)  # APOP refused, USER/PASS allowed: the next method, once
    out, _ = run(c, GREET + b"+OK\r\nUSER\r\n.\r\n-ERR no APOP here\r\n+OK\r\n-ERR [AUTH] wrong\r\n+OK bye\r\n", 6)
    assert out == b"CAPA\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nUSER mrose\r\nPASS tanstaaf\r\nQUIT\r\n", out
    assert c.result[0] == P.CONFIG and b"wrong" in c.result[1]
    c = client()
    run(c, GREET + capa + b"-ERR [IN-USE] mailbox locked\r\n+OK bye\r\n", 7)
    assert c.result[0] == P.LATER and b"IN-USE" in c.result[1], c.result
    c = client()
    run(c, GREET + capa + b"+OK\r\n+OK 1 10\r\n-ERR no UIDL\r\n+OK bye\r\n", 7)
    assert c.result[0] == P.CONFIG and b"UIDL" in c.result[1]
    c = client()
    run(c, b"-ERR go away\r\n", 3)
    assert c.result[0] == P.LATER and c.closing


def test_retr_and_dele_refused_go_on_and_quit_refused_is_retry():
    server = (GREET + b"+OK\r\nUIDL\r\n.\r\n+OK\r\n" + LISTING + b"-ERR no such message\r\n+OK\r\n" + MSG2
              + b"-ERR cannot delete\r\n-ERR some deleted messages not removed\r\n")
    out, c = every(client, server, range(1, 60))
    assert out.endswith(b"RETR 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"), out
    b = c.box
    assert b.got[0] == (0, None, b"-ERR no such message") and b.got[1][2] is None, b.got
    assert "deleted 1 False" in b.events and "quit False" in b.events
    assert c.result[0] == P.LATER and b"not removed" in c.result[1]


def test_a_line_dropped_mid_message_keeps_nothing_of_it():
    server = GREET + b"+OK\r\nUIDL\r\n.\r\n+OK\r\n" + LISTING + b"+OK\r\nSubject: one\r\n\r\nhalf of it"
    for piece in (1, 7, 1000):
        c = client()
        run(c, server, piece)
        assert c.raw and c.box.got == []
        c.on_eof()
        c.on_close()  # net always calls it
        assert c.result == (P.LATER, b"connection lost", "") and c.box.aborted == 1, c.result


def test_an_overlong_reply_line_ends_it():
    c = client()
    run(c, b"+OK " + b"x" * 600 + b"\r\n", 50)
    assert c.result[0] == P.LATER and b"too long" in c.result[1]
