"""POP3 server transcripts (RFC 1939, 2449, 5034, 3206), every command in every
state, each transcript fed split at every byte (fwtest.every_split)."""

import binascii
import hashlib

from pop3fake import LAN, MSG1, MSG2, MSG3, TLS_CONTEXT, WAN, FakeMaildrops, boxes, service

import fwtest

GREET = b"+OK dialgate POP3 server ready\r\n"
LOGIN = b"USER alice\r\nPASS wonder land\r\n"
LOGGED = b"+OK send PASS\r\n+OK alice has 3 messages (%d octets)\r\n" % (len(MSG1) + len(MSG2) + len(MSG3))


def split(data, expect, peer=LAN, pieces=None, **kw):
    """Every split of `data` against a fresh service; returns the transcript."""

    def make():
        return service(apop=kw.get("apop", False), tls_ok=kw.get("tls_ok", False), over=kw.get("over")).session(peer)

    return fwtest.every_split(make, data, expect, pieces)


def one(svc, data, peer=LAN, piece=7):
    s = svc.session(peer)
    return s, fwtest.drive(s, data, piece)


# ---- AUTHORIZATION state ------------------------------------------------------


def test_transaction_commands_refused_before_login():
    cmds = [b"STAT", b"LIST", b"LIST 1", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 0", b"UIDL", b"UIDL 1"]
    data = b"".join([c + b"\r\n" for c in cmds]) + b"QUIT\r\n"
    want = GREET + b"-ERR command not valid in this state\r\n" * len(cmds) + b"+OK dialgate POP3 server signing off\r\n"
    split(data, want)


def test_unknown_and_empty_commands():
    split(b"FOO\r\n\r\nquit\r\n", GREET + b"-ERR unknown command\r\n" * 2 + b"+OK dialgate POP3 server signing off\r\n")


def test_capa_lan_lists_user_and_sasl_no_stls_without_tls():
    out = split(b"CAPA\r\n", None)
    assert out.startswith(GREET + b"+OK capability list follows\r\n"), out
    lines = out[len(GREET) :].split(b"\r\n")
    for cap in (b"TOP", b"UIDL", b"USER", b"SASL PLAIN", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING",
                b"EXPIRE NEVER", b"LOGIN-DELAY 0", b"IMPLEMENTATION dialgate-test"):
        assert cap in lines, (cap, out)
    assert b"STLS" not in lines
    assert out.endswith(b"\r\n.\r\n")


def test_capa_internet_hides_plaintext_offers_stls():
    out = split(b"CAPA\r\n", None, peer=WAN, tls_ok=True)
    lines = out.split(b"\r\n")
    assert b"USER" not in lines and b"SASL PLAIN" not in lines, out
    assert b"STLS" in lines
    out = split(b"CAPA\r\n", None, peer=WAN, over={"pop3.expire_days": 30, "pop3.login_delay": 60})
    assert b"EXPIRE 30" in out.split(b"\r\n") and b"LOGIN-DELAY 60" in out.split(b"\r\n"), out


def test_user_pass_login_and_quit_in_authorization():
    split(LOGIN + b"QUIT\r\n", GREET + LOGGED + b"+OK dialgate POP3 server signing off (3 messages left)\r\n")


def test_wrong_password_and_unknown_user_same_text():
    svc = service()
    _s, out = one(svc, b"USER alice\r\nPASS nope\r\nUSER mallory\r\nPASS wonder land\r\n")
    fail = b"-ERR [AUTH] invalid user name or password\r\n"
    assert out == GREET + b"+OK send PASS\r\n" + fail + b"+OK send PASS\r\n" + fail, out


def test_pass_must_follow_user():
    data = b"PASS wonder land\r\nUSER alice\r\nCAPA\r\nPASS wonder land\r\nUSER\r\n"
    out = split(data, None)
    assert out.startswith(GREET + b"-ERR USER first\r\n+OK send PASS\r\n+OK capability"), out
    assert out.endswith(b".\r\n-ERR USER first\r\n-ERR syntax error in arguments\r\n"), out


def test_failed_logins_slow_down_then_lock_out_per_address():
    svc = service(over={"lan": ["127.0.0.0/8"]})
    s = svc.session(LAN)
    s.greeting()
    pauses = []
    replies = []
    for _ in range(4):
        s.on_line(b"USER alice")
        replies.append(s.on_line(b"PASS bad"))
        pauses.append(s.pause_ms)
        s.pause_ms = 0
    assert pauses[0] > 0 and pauses[1] > pauses[0] and pauses[2] > pauses[1], pauses
    assert replies[3].startswith(b"-ERR [AUTH] too many failed logins"), replies
    # Locked out: even the right password is refused from this address ...
    s.on_line(b"USER alice")
    assert s.on_line(b"PASS wonder land").startswith(b"-ERR [AUTH] too many"), s
    # ... but another address is not affected.
    s2 = svc.session(("127.0.0.3", 1))
    s2.on_line(b"USER alice")
    assert s2.on_line(b"PASS wonder land").startswith(b"+OK alice has 3"), s2


def test_plaintext_refused_from_internet_allowed_after_stls():
    svc = service(tls_ok=True)
    _s, out = one(svc, b"USER alice\r\nAUTH PLAIN\r\nAUTH\r\n", peer=WAN)
    no = b"-ERR [AUTH] plaintext login not allowed on this connection, use STLS\r\n"
    assert out == GREET + no + no + b"+OK SASL mechanisms follow\r\n.\r\n", out
    s = svc.session(WAN)
    s.on_line(b"USER alice")
    assert s.on_line(b"STLS") == b"+OK begin TLS negotiation\r\n"
    assert s.tls is TLS_CONTEXT and not s.tls_active  # net upgrades the stream, then:
    s.on_tls()
    assert s.tls is None and s.tls_active
    assert s.on_line(b"PASS wonder land") == b"-ERR USER first\r\n"  # RFC 2595 §4: state before TLS forgotten
    assert s.on_line(b"STLS") == b"-ERR TLS already active\r\n"
    assert b"STLS" not in s.on_line(b"CAPA")
    assert s.on_line(b"USER alice") == b"+OK send PASS\r\n"
    assert s.on_line(b"PASS wonder land").startswith(b"+OK alice has 3")
    assert service().session(WAN).on_line(b"STLS") == b"-ERR STLS not available\r\n"
    # Commands pipelined behind STLS are not answered (net drops them at the handshake).
    out = split(b"STLS\r\nUSER alice\r\nPASS wonder land\r\n", None, peer=WAN, tls_ok=True)
    assert out == GREET + b"+OK begin TLS negotiation\r\n", out
    # pop3.plaintext = "tls": not even the LAN without STLS; "always": anyone.
    assert service(over={"pop3.plaintext": "tls"}).session(LAN).on_line(b"USER alice") == no
    assert service(over={"pop3.plaintext": "always"}).session(WAN).on_line(b"USER a") == b"+OK send PASS\r\n"


def _plain(authz, user, pw):
    return binascii.b2a_base64(authz + b"\x00" + user + b"\x00" + pw).strip()


def test_auth_listing_and_plain_initial_response_and_continuation():
    ok = b"+OK alice has 3 messages"
    split(b"AUTH\r\n", GREET + b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n")
    out = split(b"AUTH PLAIN " + _plain(b"", b"alice", b"wonder land") + b"\r\nSTAT\r\n", None)
    assert out.startswith(GREET + ok) and out.endswith(b"+OK 3 %d\r\n" % (len(MSG1) + len(MSG2) + len(MSG3))), out
    out = split(b"auth plain\r\n" + _plain(b"alice", b"alice", b"wonder land") + b"\r\n", None)
    assert out.startswith(GREET + b"+ \r\n" + ok), out
    out = split(b"AUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN " + _plain(b"bob", b"alice", b"wonder land") + b"\r\n",
                None)
    assert out == GREET + b"+ \r\n-ERR authentication cancelled\r\n-ERR unsupported authentication mechanism\r\n" \
        b"-ERR [AUTH] invalid user name or password\r\n", out
    out = split(b"AUTH PLAIN " + _plain(b"", b"alice", b"wrong") + b"\r\nAUTH PLAIN =\r\n", None)
    assert out == GREET + b"-ERR [AUTH] invalid user name or password\r\n" * 2, out


def test_apop_with_greeting_timestamp():
    svc = service(apop=True)
    svc.apop_stamp = lambda: "<1234.5678@gw.office.test>"
    digest = binascii.hexlify(hashlib.md5(b"<1234.5678@gw.office.test>tanstaaf").digest())
    s, out = one(svc, b"APOP alice " + digest + b"\r\nSTAT\r\n")
    assert out.startswith(b"+OK dialgate POP3 server ready <1234.5678@gw.office.test>\r\n+OK alice has 3"), out
    bad = binascii.hexlify(hashlib.md5(b"<other@x>tanstaaf").digest())
    _s, out = one(svc, b"APOP bob " + bad + b"\r\nAPOP alice\r\nAPOP nobody " + digest + b"\r\n")
    assert out.endswith(b"\r\n-ERR [AUTH] invalid user name or password\r\n-ERR syntax error in arguments\r\n"
                        b"-ERR [AUTH] invalid user name or password\r\n"), out
    s.on_close()
    # Every greeting has its own timestamp (RFC 1939 §7).
    svc2 = service(apop=True)
    g1 = svc2.session(LAN).greeting()
    g2 = svc2.session(LAN).greeting()
    assert g1 != g2 and g1.endswith(b"@gw.office.test>\r\n"), (g1, g2)
    assert service(apop=False).session(LAN).on_line(b"APOP alice " + digest) == b"-ERR APOP not available\r\n"


def test_second_session_gets_in_use_and_lock_is_released_on_drop():
    drops = FakeMaildrops(boxes())
    svc = service(drops)
    s1, out = one(svc, LOGIN)
    assert out == GREET + LOGGED
    s2, out = one(svc, LOGIN)
    assert out.endswith(b"-ERR [IN-USE] maildrop already locked by another session\r\n"), out
    assert s2.state == 1
    s1.on_eof()
    s1.on_close()  # connection dropped: lock released, nothing expunged
    assert drops.locks == {} and drops.expunged == []
    s3, out = one(svc, b"PASS wonder land\r\n")  # s2 is still in AUTHORIZATION; a new login works
    assert s2.on_line(b"USER alice") == b"+OK send PASS\r\n"
    assert s2.on_line(b"PASS wonder land").startswith(b"+OK alice has 3")


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
