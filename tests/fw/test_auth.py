"""auth: SASL PLAIN/LOGIN decoding and the failed-login throttle (shared by SMTP and POP3)."""

from dialgate import auth


def test_decode_plain():
    assert auth.decode_plain(auth.b64encode(b"\x00alice\x00wonderland")) == ("alice", "wonderland")
    assert auth.decode_plain(auth.b64encode(b"alice\x00alice\x00pw")) == ("alice", "pw")  # authzid = authcid
    assert auth.decode_plain(auth.b64encode(b"bob\x00alice\x00pw")) is None  # no proxy authorization
    assert auth.decode_plain(auth.b64encode(b"\x00\x00pw")) is None
    assert auth.decode_plain(auth.b64encode(b"alice\x00pw")) is None
    assert auth.decode_plain(auth.b64encode(b"\x00al\xffice\x00pw")) is None  # not UTF-8
    assert auth.decode_plain(b"!!!!") is None
    assert auth.decode_plain(b"AGFsaWNl") is None  # one NUL only
    assert auth.decode_plain(b"abc") is None  # bad padding
    assert auth.decode_plain(auth.b64encode(b"\x00j\xc3\xb6rg\x00p\xc3\xa4ss")) == ("j\u00f6rg", "p\u00e4ss")


def test_decode_text_and_prompts():
    assert auth.decode_text(auth.b64encode(b"alice")) == "alice"
    assert auth.decode_text(auth.b64encode(b"a\x00b")) is None
    assert auth.decode_text(b"@@@@") is None
    assert auth.LOGIN_USER == b"VXNlcm5hbWU6" and auth.LOGIN_PASS == b"UGFzc3dvcmQ6"


def test_throttle_delay_then_lockout_then_expiry():
    t = auth.AuthThrottle(delay_ms=100, max_delay_ms=350, lockout_after=4, lockout_ms=10000)
    ip = "192.0.2.7"
    assert t.check(ip, 0) == 0
    assert [t.failed(ip, 10), t.failed(ip, 20), t.failed(ip, 30)] == [100, 200, 350]
    assert t.check(ip, 40) == 0
    assert t.failed(ip, 50) == 350  # fourth failure: locked out
    assert t.check(ip, 60) == 9990
    assert t.check("192.0.2.8", 60) == 0  # per address
    assert t.check(ip, 10051) == 0  # lockout over: a clean slate
    assert t.failed(ip, 10060) == 100


def test_throttle_is_quiet_once_every_failure_is_older_than_the_lockout():
    # idle unloading drops a quiet throttle (app_unload.LAN_STATE): never one that still locks someone out
    t = auth.AuthThrottle(lockout_after=2, lockout_ms=1000)
    assert t.quiet(0)
    t.failed("a", 100)
    t.failed("b", 500)
    t.failed("b", 600)  # locked out until 1600
    assert not t.quiet(1099) and not t.quiet(1599)
    assert t.check("b", 1599) > 0
    assert t.quiet(1600)


def test_throttle_success_forgets_and_table_is_bounded():
    t = auth.AuthThrottle(tracked=3)
    t.failed("a", 0)
    t.succeeded("a")
    assert t.entries == {}
    for i, ip in enumerate(("a", "b", "c", "d")):
        t.failed(ip, i * 10)
    assert sorted(t.entries) == ["b", "c", "d"]  # the oldest went first
