"""smtp_client with CHUNKING (RFC 3030) and PIPELINING (RFC 2920): each message
goes as MAIL, RCPT..., `BDAT <size> LAST` and its raw octets, and the next one
follows before the 250 of the one before (up to the window). Transcripts against
the scripted server: delivered only at a message's own 250, every reply class
mid-pipeline, the line cut at every octet, the replies split at every octet."""

from smtpfake import EXT, ScriptServer, Source, converse, envelope

from dialgate.smtp_client import ChunkProducer, SmtpClient, outcome
from fwtest import every_split

CHUNKING = EXT + ("CHUNKING",)
BODY1 = b"Subject: one\r\n\r\nhello\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
BODY2 = b"Subject: two\r\n\r\n" + b"x" * 98 + b"\r\n" * 30 + b".\r\n.\r\n"
BODY3 = b"Subject: three\r\n\r\nno final newline."


class WatchedSource(Source):
    """Records how many messages were unanswered whenever the client asks for one more."""

    def __init__(self, envs):
        Source.__init__(self, envs)
        self.client = None
        self.most = 0

    def next_envelope(self):
        if self.client.in_flight > self.most:
            self.most = self.client.in_flight
        return Source.next_envelope(self)


def make(envs, tls="starttls", user="gw", window=8, etrn=None):
    src = WatchedSource(envs)
    c = SmtpClient(src, b"gw.office.test", tls, user, "secret", True, etrn, bytearray(64), lambda: object(),
                   window=window)
    src.client = c
    return c, src


def batch(n):
    bodies = (BODY1, BODY2, BODY3)
    return [envelope("m%d" % i, bodies[i % 3], ["r%d@example.com" % i]) for i in range(n)]


def three():
    return [envelope("m1", BODY1, ["bob@example.com", "carol@example.com"]),
            envelope("m2", BODY2, ["erin@example.com"]),
            envelope("m3", BODY3, ["dave@example.net"])]


def outcomes(env):
    return [outcome(r) for r in env.results]


def test_batch_goes_in_one_pipeline_raw_octets():
    envs = batch(12)
    c, src = make(envs, window=4, etrn=["office.test"])
    srv = ScriptServer(ext=CHUNKING + ("ETRN",))
    turns = converse(c, srv)
    assert c.failed is None, c.failed
    assert src.done == envs
    for e in envs:
        assert outcomes(e) == ["delivered"]
    # BDAT carries the stored octets as they are: no dot-stuffing, no CRLF added
    assert [m[2] for m in srv.messages] == [e.opener().data for e in envs]
    bdat = [x for x in srv.commands if x.startswith("BDAT")]
    assert bdat == ["BDAT %d LAST" % len(e.opener().data) for e in envs]
    assert "DATA" not in srv.commands
    # EHLO, STARTTLS, EHLO, AUTH, the whole queue and ETRN (no wait per message), QUIT
    assert c.round_trips == 6, c.round_trips
    assert turns < 4 + len(envs) // 2, turns
    assert src.most == 3  # the next one was asked for only below the window of 4: it filled, never overflowed
    assert srv.commands[-2:] == ["ETRN office.test", "QUIT"] and srv.commands.count("ETRN office.test") == 1
    assert c.etrn_results == [(250, b"2.0.0 queuing started")]


def test_without_pipelining_or_chunking_data_is_used():
    for ext in (EXT, ("CHUNKING", "SIZE", "STARTTLS", "AUTH PLAIN")):
        envs = three()
        c, _ = make(envs)
        srv = ScriptServer(ext=ext)
        converse(c, srv)
        assert c.failed is None and "DATA" in srv.commands
        assert not [x for x in srv.commands if x.startswith("BDAT")]


def _transcript(n):
    """The server's side of a CHUNKING session without TLS or AUTH: n messages,
    the second one's recipient refused (so its BDAT is refused too)."""
    r = [b"220 isp.test ESMTP\r\n", b"250-isp.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"]
    for i in range(n):
        if i == 1:
            r.append(b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")
        else:
            r.append(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as %d\r\n" % i)
    if n > 2:
        r.insert(2 + 3, b"250 2.0.0 reset\r\n")  # the RSET sent after the refused BDAT (window 2)
    r.append(b"221 2.0.0 bye\r\n")
    return b"".join(r)


def test_every_split_of_the_replies():
    made = []  # the last session's envelopes only (a 128K heap holds no 400 of them)
    checked = [0]

    def check():
        if made:
            envs = made.pop()
            assert [outcomes(e) for e in envs] == [["delivered"], ["failed"], ["delivered"], ["delivered"]]
            assert envs[1].results[0] == (550, b"5.1.1 no such user")
            assert envs[2].results[0] == (250, b"2.0.0 queued as 2")
            checked[0] += 1

    def session():
        check()
        envs = batch(4)
        c, _ = make(envs, tls="none", user="", window=2)
        made.append(envs)
        return c

    data = _transcript(4)
    out = every_split(session, data)
    assert out.count(b"BDAT ") == 4 and out.count(b"RSET\r\n") == 1 and out.endswith(b"QUIT\r\n")
    # the RSET opens the first message composed after the refusal (message 3, window 2)
    assert out.index(b"RSET\r\n") < out.index(b"RCPT TO:<r3@example.com>")
    assert out.index(b"RSET\r\n") > out.index(b"RCPT TO:<r2@example.com>")
    check()
    assert checked[0] == len(data) + 1  # every split's outcomes, not just the output


def test_reply_classes_mid_pipeline():
    # step -> m1's two recipients after a 4xx / 5xx there; m2 and m3 follow in the pipeline
    cases = {
        "MAIL": (["retry", "retry"], ["failed", "failed"]),
        "RCPT:bob@example.com": (["retry", "delivered"], ["failed", "delivered"]),
        "BDAT": (["retry", "retry"], ["failed", "failed"]),
    }
    for step in cases:
        for k, code in ((0, "451 4.3.0 try later"), (1, "552 5.3.4 too big")):
            envs = three()
            c, src = make(envs)
            first = code if step.startswith("RCPT") else [code, "250 2.0.0 ok"]
            srv = ScriptServer(ext=CHUNKING, replies={step: first})
            converse(c, srv)
            assert c.failed is None, (step, code, c.failed)
            assert outcomes(envs[0]) == cases[step][k], (step, code, outcomes(envs[0]))
            assert outcomes(envs[1]) == ["delivered"] and outcomes(envs[2]) == ["delivered"], (step, code)
            assert src.done == envs and srv.commands[-1] == "QUIT"


def test_421_mid_pipeline_leaves_every_unconfirmed_message_queued():
    envs = three()
    c, src = make(envs)
    srv = ScriptServer(ext=CHUNKING, replies={"BDAT": ["250 2.0.0 ok", "421 4.3.2 shutting down"]})
    converse(c, srv)
    assert c.failed[0] == 421
    assert outcomes(envs[0]) == ["delivered", "delivered"]
    assert outcomes(envs[1]) == ["pending"] and outcomes(envs[2]) == ["pending"]
    assert src.done == [envs[0]]  # the others were never decided: the queue keeps them


def test_503_behind_a_failed_bdat_is_no_verdict():
    # a server that keeps the failed transaction open refuses the next MAIL with 503:
    # that message stays queued (not bounced); the one after goes
    envs = three()
    c, _ = make(envs)
    srv = ScriptServer(ext=CHUNKING, replies={"BDAT": ["451 4.3.0 later", "250 2.0.0 ok"],
                                              "MAIL": ["250 2.1.0 ok", "503 5.5.1 nested MAIL command", "250 ok"]})
    converse(c, srv)
    assert [outcomes(e) for e in envs] == [["retry", "retry"], ["pending"], ["delivered"]]


def test_line_cut_at_every_octet_never_loses_or_invents_a_delivery():
    c, _ = make(three(), tls="none", user="")
    srv = ScriptServer(ext=CHUNKING)
    converse(c, srv)
    total = srv.received
    for cut in range(total + 1):
        envs = three()
        c, src = make(envs, tls="none", user="")
        srv = ScriptServer(ext=CHUNKING, drop_at_byte=cut, keep=False)
        converse(c, srv)
        n = len(srv.messages)  # chunks the server had whole, and answered 250
        for i, e in enumerate(envs):
            want = ["delivered"] * len(e.rcpts) if i < n else ["pending"] * len(e.rcpts)
            assert outcomes(e) == want, (cut, i, outcomes(e))
        assert src.done == envs[:n]
        if cut < total - len(b"QUIT\r\n"):  # cut before the QUIT: the session failed
            assert c.failed is not None, cut


def test_chunk_is_exactly_the_recorded_size():
    class F:
        def __init__(self, data):
            self.data = data
            self.closed = False

        def readinto(self, mv):
            n = min(len(mv), len(self.data))
            mv[:n] = self.data[:n]
            self.data = self.data[n:]
            return n

        def close(self):
            self.closed = True

    buf = bytearray(4)
    f = F(b"0123456789")
    p = ChunkProducer(f, 6)  # a longer file: only the recorded octets go
    got = bytearray()
    n = p.fill(buf)
    while n:
        got.extend(buf[:n])
        n = p.fill(buf)
    assert bytes(got) == b"012345" and f.closed
    f = F(b"0123")
    p = ChunkProducer(f, 6)  # a shorter one: the connection must not go on
    assert p.fill(buf) == 4
    try:
        p.fill(buf)
        raise AssertionError("no error for a short file")
    except OSError:
        pass
    assert f.closed
