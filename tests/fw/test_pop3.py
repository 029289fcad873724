"""POP3 server transcripts (RFC 1939, 2449, 5034, 3206), every command in every
state, each transcript fed split at every byte (fwtest.every_split)."""

import binascii
import hashlib

from pop3fake import (
    GREET,
    LAN,
    LOGGED,
    LOGIN,
    MSG1,
    MSG2,
    MSG3,
    TLS_CONTEXT,
    WAN,
    FakeMaildrops,
    boxes,
    one,
    service,
    split,
)

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


def test_user_names_are_folded_to_lower_case_as_user_add_stores_them():
    out = split(b"USER Alice\r\nPASS wonder land\r\nQUIT\r\n", None)
    assert out.startswith(GREET + LOGGED), out
    out = split(b"AUTH PLAIN " + _plain(b"", b"ALICE", b"wonder land") + b"\r\n", None)
    assert out.startswith(GREET + b"+OK alice has 3 messages"), out
    svc = service(apop=True)
    svc.apop_stamp = lambda: "<1.2@gw.office.test>"
    digest = binascii.hexlify(hashlib.md5(b"<1.2@gw.office.test>tanstaaf").digest())
    s, out = one(svc, b"APOP aLiCe " + digest + b"\r\n")
    assert out.endswith(LOGGED[len(b"+OK send PASS\r\n"):]), out
    s.on_close()


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
    # the context is made at STLS: a certificate that no longer loads gives none
    svc.tls = lambda: None
    s = svc.session(WAN)
    assert b"STLS" in s.on_line(b"CAPA")  # offered: nothing is made for CAPA
    assert s.on_line(b"STLS") == b"-ERR [SYS/TEMP] TLS not available now\r\n" and s.tls is None


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
