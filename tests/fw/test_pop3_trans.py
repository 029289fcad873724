"""POP3 server transcripts, TRANSACTION and UPDATE states (RFC 1939 §5, §6; RFC 2449
pipelining), each fed split at every byte. (Split from test_pop3.py so each
module fits beside the firmware in a 128K MicroPython heap.)"""


from pop3fake import GREET, LOGGED, LOGIN, MSG1, MSG2, MSG3, FakeMaildrops, boxes, one, service, split

# ---- TRANSACTION state --------------------------------------------------------


def test_stat_list_uidl():
    data = LOGIN + b"STAT\r\nLIST\r\nLIST 2\r\nLIST 4\r\nLIST x\r\nLIST 1 2\r\nUIDL\r\nUIDL 3\r\nUIDL 0\r\n"
    want = GREET + LOGGED + (
        b"+OK 3 %d\r\n" % (len(MSG1) + len(MSG2) + len(MSG3))
        + b"+OK listing follows\r\n1 %d\r\n2 %d\r\n3 %d\r\n.\r\n" % (len(MSG1), len(MSG2), len(MSG3))
        + b"+OK 2 %d\r\n" % len(MSG2)
        + b"-ERR no such message\r\n-ERR no such message\r\n-ERR syntax error in arguments\r\n"
        + b"+OK listing follows\r\n1 uid-a1\r\n2 uid-a2\r\n3 uid-a3\r\n.\r\n"
        + b"+OK 3 uid-a3\r\n-ERR no such message\r\n"
    )
    split(data, want, pieces=list(range(1, 24)) + [len(data)])


def test_retr_stuffs_dots_and_counts_octets():
    data = LOGIN + b"RETR 1\r\nRETR 2\r\nRETR\r\nRETR 9\r\n"
    want = GREET + LOGGED + (
        b"+OK %d octets\r\n" % len(MSG1) + MSG1.replace(b"\r\n.", b"\r\n..") + b".\r\n"
        + b"+OK %d octets\r\n" % len(MSG2) + b"Subject: two\r\n\r\n..\r\n...\r\nend\r\n.\r\n"
        + b"-ERR syntax error in arguments\r\n-ERR no such message\r\n"
    )
    split(data, want, pieces=list(range(1, 16)) + [len(data)])


def test_top():
    data = LOGIN + b"TOP 1 0\r\nTOP 1 1\r\nTOP 1 2\r\nTOP 2 99999999999999\r\nTOP 1\r\nTOP 1 -1\r\nTOP 7 1\r\n"
    top = b"+OK top of message follows\r\n"
    want = GREET + LOGGED + (
        top + b"From: a@x\r\nSubject: one\r\n\r\n.\r\n"
        + top + b"From: a@x\r\nSubject: one\r\n\r\nline 1\r\n.\r\n"
        + top + b"From: a@x\r\nSubject: one\r\n\r\nline 1\r\n..dot line\r\n.\r\n"
        + top + b"Subject: two\r\n\r\n..\r\n...\r\nend\r\n.\r\n"
        + b"-ERR syntax error in arguments\r\n" * 2 + b"-ERR no such message\r\n"
    )
    split(data, want, pieces=list(range(1, 16)) + [len(data)])


def test_dele_rset_noop_and_quit_removes_exactly_the_marked():
    drops = FakeMaildrops(boxes())
    svc = service(drops)
    data = LOGIN + b"DELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 1\r\nSTAT\r\nRSET\r\nNOOP\r\nDELE 3\r\nDELE 1\r\nLIST\r\nQUIT\r\n"
    _s, out = one(svc, data)
    assert out == GREET + LOGGED + (
        b"+OK message 1 deleted\r\n-ERR message already deleted\r\n-ERR message already deleted\r\n"
        b"-ERR message already deleted\r\n+OK 2 %d\r\n" % (len(MSG2) + len(MSG3))
        + b"+OK maildrop has 3 messages (%d octets)\r\n+OK\r\n" % (len(MSG1) + len(MSG2) + len(MSG3))
        + b"+OK message 3 deleted\r\n+OK message 1 deleted\r\n+OK listing follows\r\n2 %d\r\n.\r\n" % len(MSG2)
        + b"+OK dialgate POP3 server signing off (1 messages left)\r\n"
    ), out
    assert drops.expunged == [[0, 2]], drops.expunged
    assert [u for u, _b in drops.boxes["alice"]] == ["uid-a2"]
    assert drops.locks == {}


def test_dropped_connection_deletes_nothing():
    drops = FakeMaildrops(boxes())
    svc = service(drops)
    s, out = one(svc, LOGIN + b"DELE 1\r\nDELE 2\r\nRETR 3\r\n", piece=3)
    assert out.endswith(b"+OK message 2 deleted\r\n+OK %d octets\r\n" % len(MSG3) + MSG3 + b".\r\n"), out
    s.on_eof()
    s.on_close()
    assert drops.expunged == [] and len(drops.boxes["alice"]) == 3 and drops.locks == {}


def test_autologout_deletes_nothing():
    drops = FakeMaildrops(boxes())
    svc = service(drops)
    s, _out = one(svc, LOGIN + b"DELE 1\r\n")
    assert s.timeout_ms >= 600000  # RFC 1939 §3
    assert s.on_timeout().startswith(b"-ERR")
    s.on_close()
    assert drops.expunged == [] and drops.locks == {}


def test_authorization_commands_refused_after_login():
    data = LOGIN + b"USER bob\r\nPASS x\r\nAPOP bob 0123456789abcdef0123456789abcdef\r\nAUTH\r\nSTLS\r\nCAPA\r\n"
    out = split(data, None, pieces=list(range(1, 12)) + [len(data)])
    rest = out[len(GREET + LOGGED) :]
    assert rest.startswith(b"-ERR command not valid in this state\r\n" * 5 + b"+OK capability"), rest
    assert b"USER\r\n" not in rest and b"STLS" not in rest


def test_pipelined_commands_answered_in_order():
    # RFC 2449 §6.6: everything sent at once, including a multi-line reply in the middle.
    data = LOGIN + b"LIST\r\nRETR 3\r\nNOOP\r\nUIDL 1\r\nQUIT\r\nNOOP\r\n"
    want = GREET + LOGGED + (
        b"+OK listing follows\r\n1 %d\r\n2 %d\r\n3 %d\r\n.\r\n" % (len(MSG1), len(MSG2), len(MSG3))
        + b"+OK %d octets\r\n" % len(MSG3) + MSG3 + b".\r\n+OK\r\n+OK 1 uid-a1\r\n"
        + b"+OK dialgate POP3 server signing off (3 messages left)\r\n"
    )
    split(data, want, pieces=list(range(1, 12)) + [len(data) + 1])


def test_command_line_limit_255():
    ok = b"NOOP " + b"x" * 248 + b"\r\n"  # 255 octets with CRLF (RFC 2449 §4)
    long = b"NOOP " + b"x" * 249 + b"\r\n"
    data = LOGIN + ok + long + b"NOOP\r\n"
    want = GREET + LOGGED + b"+OK\r\n-ERR line too long\r\n+OK\r\n"
    split(data, want, pieces=list(range(1, 10)) + [200, 255, 256, len(data)])


def test_message_without_final_crlf_still_ends_on_its_own_line():
    drops = FakeMaildrops({"alice": [("u1", b"Subject: x\r\n\r\nno newline")]})
    _s, out = one(service(drops), LOGIN + b"RETR 1\r\nTOP 1 5\r\n")
    assert out.endswith(b"+OK 24 octets\r\nSubject: x\r\n\r\nno newline\r\n.\r\n"
                        b"+OK top of message follows\r\nSubject: x\r\n\r\nno newline\r\n.\r\n"), out


def test_login_delay():
    svc = service(over={"pop3.login_delay": 60})
    s, out = one(svc, LOGIN + b"QUIT\r\n")
    assert b"+OK alice has 3" in out
    _s, out = one(svc, LOGIN)
    assert out.endswith(b"-ERR [LOGIN-DELAY] logged in too recently, wait a little\r\n"), out
