"""smtp_client: scripted-server transcripts, every reply class at every step,
pipelined and not, connection loss at every step, dot-stuffing across chunks."""

import binascii

from smtpfake import EXT, PatternFile, ScriptServer, Source, converse, envelope

from dialgate import smtp_client
from dialgate.smtp_client import Envelope, SmtpClient, outcome

BODY1 = b"Subject: one\r\n\r\nhello\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
BODY2 = b"Subject: two\r\n\r\n" + b"x" * 98 + b"\r\n" * 30 + b".\r\n.\r\n"
BODY3 = b"Subject: three\r\n\r\nno final newline."


def make(envs, tls="starttls", user="gw", password="secret", pipelining=True, rbuf=64, etrn=None):
    src = Source(envs)
    c = SmtpClient(src, b"gw.office.test", tls, user, password, pipelining, etrn, bytearray(rbuf), tls_context)
    return c, src


def tls_context():
    return TLS_CTX


TLS_CTX = object()  # what the transport would upgrade with (net is not in these tests)


def three():
    return [
        envelope("m1", BODY1, ["bob@example.com", "carol@example.com"]),
        envelope("m2", BODY2, ["erin@example.com"]),
        envelope("m3", BODY3, ["dave@example.net"]),
    ]


def outcomes(env):
    return [outcome(r) for r in env.results]


def check_delivered(srv, envs):
    assert len(srv.messages) == len(envs)
    for (sender, rcpts, body, n, crc), e in zip(srv.messages, envs):
        data = e.opener().data
        if not data.endswith(b"\r\n"):
            data = data + b"\r\n"  # RFC 5321 §4.1.1.4: the data ends with CRLF before "."
        if body is None:
            assert n == len(data) and crc == binascii.crc32(data)
        else:
            assert body == data, (body, data)
        assert sender == e.sender
        assert rcpts == [r for i, r in enumerate(e.rcpts) if e.results[i][0] // 100 == 2]


def test_pipelined_batch_one_round_trip_per_message():
    envs = three()
    c, src = make(envs)
    srv = ScriptServer()
    turns = converse(c, srv)
    assert c.failed is None, c.failed
    check_delivered(srv, envs)
    for e in envs:
        assert outcomes(e) == ["delivered"] * len(e.rcpts)
    assert src.done == envs
    # EHLO, STARTTLS, EHLO, AUTH, first envelope, then one per message (body + next envelope or QUIT)
    assert c.round_trips == 5 + len(envs), c.round_trips
    assert turns == c.round_trips
    assert "MAIL FROM:<alice@office.test> SIZE=%d BODY=8BITMIME" % len(BODY1) in srv.commands
    assert srv.commands[-1] == "QUIT"


def test_not_pipelined_batch():
    envs = three()
    c, src = make(envs, pipelining=False)
    srv = ScriptServer()
    turns = converse(c, srv)
    assert c.failed is None
    check_delivered(srv, envs)
    # per message: MAIL, each RCPT, DATA, body -> 3 + rcpts
    assert c.round_trips == 4 + sum([3 + len(e.rcpts) for e in envs]) + 1, c.round_trips
    assert turns == c.round_trips


def test_every_split_of_replies():
    for piece in (1, 2, 3, 7, 64):
        envs = three()
        c, _src = make(envs)
        srv = ScriptServer()
        converse(c, srv, piece=piece)
        check_delivered(srv, envs)


def test_dot_stuffing_state_across_chunks():
    # lines starting with "." land at every offset of the 64-octet read buffer
    b = bytearray()
    for k in range(140):
        b.extend(b"." * (k % 5 + 1) + b"x" * (k % 67) + b"\r\n")
    body = bytes(b)
    b = None
    for rbuf in (16, 17, 64, 65):
        envs = [envelope("d", body)]
        c, _ = make(envs, rbuf=rbuf)
        srv = ScriptServer(keep=False)
        converse(c, srv)
        check_delivered(srv, envs)


def test_message_larger_than_heap_streams():
    size = len(PatternFile.LINE) * 40000  # 3 MB: many times the 128K MicroPython heap
    env = Envelope("big", "alice@office.test", ["bob@example.com"], size, lambda: PatternFile(size))
    c, _ = make([env], rbuf=512)
    srv = ScriptServer(ext=("PIPELINING", "SIZE", "STARTTLS", "AUTH PLAIN"), keep=False)
    converse(c, srv, obufsize=1024)
    assert outcomes(env) == ["delivered"]
    assert srv.messages[0][3] == size


def test_ehlo_5xx_falls_back_to_helo():
    envs = three()
    c, _ = make(envs, tls="none", user="")
    srv = ScriptServer(replies={"EHLO": "502 5.5.1 no ESMTP here"})
    converse(c, srv)
    assert c.failed is None
    assert "HELO gw.office.test" in srv.commands
    assert "MAIL FROM:<alice@office.test>" in srv.commands  # no SIZE/BODY without ESMTP
    check_delivered(srv, envs)


def test_helo_only_server_cannot_do_required_starttls():
    envs = three()
    c, _ = make(envs)
    srv = ScriptServer(replies={"EHLO": "500 what?"})
    converse(c, srv)
    assert c.failed is not None and b"STARTTLS" in c.failed[1]
    assert srv.commands[-1] == "QUIT"
    assert all(outcomes(e) == ["pending"] * len(e.rcpts) for e in envs)


def test_no_password_without_tls():
    c, _ = make(three(), tls="opportunistic")
    srv = ScriptServer(ext=("PIPELINING", "AUTH PLAIN"))
    converse(c, srv)
    assert c.failed is not None and b"without TLS" in c.failed[1]
    assert not [x for x in srv.commands if x.startswith("AUTH")]


def test_auth_login_and_plain():
    c, _ = make(three())
    srv = ScriptServer(ext=("PIPELINING", "STARTTLS", "AUTH LOGIN"))
    converse(c, srv)
    assert c.failed is None
    assert srv.commands[3:6] == ["AUTH LOGIN", "Z3c=", "c2VjcmV0"]
    c, _ = make(three())
    srv = ScriptServer()
    converse(c, srv)
    assert srv.commands[3] == "AUTH PLAIN AGd3AHNlY3JldA=="


def test_size_too_big_is_skipped_with_a_5xx():
    envs = three()
    c, _ = make(envs)
    srv = ScriptServer(ext=("PIPELINING", "SIZE 100", "STARTTLS", "AUTH PLAIN"))
    converse(c, srv)
    assert outcomes(envs[1]) == ["failed"]
    assert envs[1].results[0][0] == 552 and b"5.3.4" in envs[1].results[0][1]
    assert outcomes(envs[0]) == ["delivered", "delivered"]
    assert outcomes(envs[2]) == ["delivered"]
    check_delivered(srv, [envs[0], envs[2]])


# ---- each reply class at each step ---------------------------------------------

SESSION_STEPS = ("GREET", "EHLO", "STARTTLS", "AUTH")


def test_reply_classes_at_session_steps():
    for pipelining in (True, False):
        for step in SESSION_STEPS:
            for code in ("421 4.3.0 busy", "450 4.0.0 later", "554 5.0.0 no"):
                envs = three()
                c, _ = make(envs, pipelining=pipelining)
                if step == "EHLO" and code[0] == "5":
                    continue  # covered by the HELO fallback tests
                srv = ScriptServer(replies={step: code})
                converse(c, srv)
                assert c.failed is not None and c.failed[0] == int(code[:3]), (step, code, c.failed)
                for e in envs:
                    assert outcomes(e) == ["pending"] * len(e.rcpts), (step, code)
                assert srv.messages == []


def test_reply_classes_at_transaction_steps():
    # step -> what a 4xx / 5xx there does to m1's two recipients
    cases = {
        "MAIL": (["retry", "retry"], ["failed", "failed"]),
        "RCPT:bob@example.com": (["retry", "delivered"], ["failed", "delivered"]),
        "DATA": (["retry", "retry"], ["failed", "failed"]),
        "DOT": (["retry", "retry"], ["failed", "failed"]),
    }
    for pipelining in (True, False):
        for step in cases:
            for k, code in ((0, "451 4.3.0 try later"), (1, "550 5.1.1 no such user")):
                envs = three()
                c, src = make(envs, pipelining=pipelining)
                first = code if step.startswith("RCPT") else [code, DEFAULT_OK[step]]
                srv = ScriptServer(replies={step: first})
                converse(c, srv)
                assert c.failed is None, (step, code, c.failed)
                want = cases[step][k]
                assert outcomes(envs[0]) == want, (pipelining, step, code, outcomes(envs[0]))
                assert envs[0].results[0][1].startswith(code[4:].encode())
                assert outcomes(envs[1]) == ["delivered"] and outcomes(envs[2]) == ["delivered"]
                assert src.done == envs
                check_delivered(srv, [e for e in envs if "delivered" in outcomes(e)])
                assert srv.commands[-1] == "QUIT"


DEFAULT_OK = {"MAIL": "250 2.1.0 ok", "DATA": "354 go", "DOT": "250 2.0.0 queued"}


def test_all_recipients_rejected_resets_transaction():
    for pipelining in (True, False):
        envs = three()
        c, _ = make(envs, pipelining=pipelining)
        srv = ScriptServer(replies={"RCPT:bob@example.com": "550 5.1.1 no", "RCPT:carol@example.com": "551 5.1.6 gone"})
        converse(c, srv)
        assert outcomes(envs[0]) == ["failed", "failed"]
        assert "RSET" in srv.commands
        check_delivered(srv, envs[1:])


def test_354_with_no_accepted_recipient_sends_empty_data():
    # A server that says 354 although every RCPT failed: RFC 2920 §3.1, send "." alone.
    envs = [envelope("m1", BODY1)]
    c, _ = make(envs)
    srv = ScriptServer(replies={"RCPT": "550 5.1.1 no"})
    srv.rcpts_ok_anyway = True
    srv.replies["DATA"] = "354 go"
    srv_line = srv._line

    def line(text):
        if text.startswith(b"DATA"):
            srv.commands.append("DATA")
            srv.in_data = True
            return b"354 go\r\n"
        return srv_line(text)

    srv._line = line
    srv.replies["DOT"] = "554 5.5.1 no valid recipients"
    converse(c, srv)
    assert outcomes(envs[0]) == ["failed"]
    assert srv.commands.count(".") == 1


def test_421_mid_session_leaves_rest_pending():
    envs = three()
    c, _ = make(envs)
    srv = ScriptServer(replies={"DOT": ["250 2.0.0 ok", "421 4.3.2 shutting down"]})
    converse(c, srv)
    assert outcomes(envs[0]) == ["delivered", "delivered"]
    assert outcomes(envs[1]) == ["pending"]
    assert outcomes(envs[2]) == ["pending"]
    assert c.failed[0] == 421


def test_connection_loss_at_every_step():
    for pipelining in (True, False):
        total = len(_full_commands(pipelining))
        for k in range(0, total + 1):
            envs = three()
            c, src = make(envs, pipelining=pipelining)
            srv = ScriptServer(drop_after=k)
            converse(c, srv)
            delivered = [m[2] for m in srv.messages]
            for e in envs:
                oc = outcomes(e)
                if e.opener().data in [d[: len(e.opener().data)] for d in delivered if d]:
                    assert oc == ["delivered"] * len(e.rcpts) or oc == ["pending"] * len(e.rcpts)
                else:
                    # no final 250: never delivered, never failed
                    assert oc == ["pending"] * len(e.rcpts), (pipelining, k, e.key, oc)
            if k < total:
                assert c.failed is not None and c.failed[1] == b"connection lost", (k, c.failed)
            for e in src.done:
                assert "pending" not in outcomes(e)


def test_connection_loss_mid_data_at_many_offsets():
    envs = three()
    c, _ = make(envs)
    srv = ScriptServer()
    converse(c, srv)
    total = srv.received
    for cut in range(0, total, 37):
        envs = three()
        c, _ = make(envs, pipelining=cut % 2 == 0)
        srv = ScriptServer(drop_at_byte=cut)
        converse(c, srv)
        n = len(srv.messages)
        for i, e in enumerate(envs):
            want = ["delivered"] * len(e.rcpts) if i < n else ["pending"] * len(e.rcpts)
            assert outcomes(e) == want, (cut, i, outcomes(e))


def _full_commands(pipelining):
    c, _ = make(three(), pipelining=pipelining)
    srv = ScriptServer()
    converse(c, srv)
    return srv.commands


def test_multiline_and_malformed_replies():
    c, _ = make(three())
    srv = ScriptServer(replies={"MAIL": "250-first\r\n250-second\r\n250 2.1.0 third"})
    converse(c, srv, piece=1)
    assert c.failed is None
    c, _ = make(three())
    srv = ScriptServer(replies={"GREET": "hello there"})
    converse(c, srv)
    assert c.failed is not None and c.failed[1].startswith(b"malformed")


def test_overlong_reply_line_fails_session():
    c, _ = make(three())
    srv = ScriptServer(replies={"GREET": "220 " + "x" * 3000})
    converse(c, srv, bufsize=1024)
    assert c.failed is not None


def test_etrn_after_the_queue():
    envs = three()
    c, _ = make(envs, etrn=["office.test"])
    srv = ScriptServer(ext=EXT + ("ETRN",))
    converse(c, srv)
    assert "ETRN office.test" in srv.commands
    assert c.etrn_results[0][0] == 250
    assert srv.commands[-1] == "QUIT"


def test_implicit_tls_skips_starttls():
    c, _ = make(three(), tls=smtp_client.TLS_IMPLICIT)
    srv = ScriptServer()
    converse(c, srv)
    assert "STARTTLS" not in srv.commands
    assert c.failed is None


def test_etrn_follows_a_reset_transaction():
    for pipelining in (True, False):
        envs = [envelope("m1", BODY1)]
        c, _ = make(envs, pipelining=pipelining, etrn=["office.test"])
        srv = ScriptServer(ext=EXT + ("ETRN",), replies={"RCPT": "550 5.1.1 no"})
        converse(c, srv)
        assert outcomes(envs[0]) == ["failed"]
        assert srv.commands[-3:] == ["RSET", "ETRN office.test", "QUIT"], srv.commands

