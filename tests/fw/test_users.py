"""User store: PBKDF2 format and vectors, APOP secrets, aliases, console commands (no password echoed)."""

import fwtest
from dialgate import compat, log
from dialgate.console import Commands
from dialgate.mailbox import valid_user
from dialgate.users import UserStore, hash_password, verify_password
from dialgate.users_console import add_commands


def _hex(b):
    return "".join(["%02x" % x for x in b])


def test_pbkdf2_sha256_vectors():
    # RFC 7914 §11 (PBKDF2-HMAC-SHA256 test vectors)
    assert _hex(compat.pbkdf2_sha256(b"passwd", b"salt", 1, 64)) == (
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
    )
    # RFC 6070-style, SHA-256 variant; key longer than the 64-octet block is hashed first
    assert _hex(compat.pbkdf2_sha256(b"password", b"salt", 2, 32)) == (
        "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
    )
    long_pw = b"p" * 100
    assert len(compat.pbkdf2_sha256(long_pw, b"salt", 3, 40)) == 40


def test_hash_format_and_verify():
    h = hash_password("s3cret!", 1000, b"0123456789abcdef")
    parts = h.split("$")
    assert parts[0] == "pbkdf2-sha256" and parts[1] == "1000" and parts[2] == compat.b64encode(b"0123456789abcdef")
    assert verify_password(h, "s3cret!")
    assert not verify_password(h, "s3cret")
    assert not verify_password("md5$x", "s3cret!")
    assert not verify_password("pbkdf2-sha256$x$y$z", "s3cret!")
    h2 = hash_password("s3cret!", 1000)
    assert h2 != h  # random salt


def test_store_persists_and_checks():
    d = fwtest.tempdir("us")
    try:
        st = UserStore(d + "/users.json", iterations=1000)
        st.add("alice", "Wonder-1")
        st.add("bob", "Builder-2")
        st2 = UserStore(d + "/users.json", iterations=1000)
        assert st2.list() == ["alice", "bob"] and st2.exists("alice") and not st2.exists("carol")
        assert st2.check_password("alice", "Wonder-1")
        assert not st2.check_password("alice", "Builder-2")
        assert not st2.check_password("carol", "x")
        st2.set_password("alice", "New-3")
        assert UserStore(d + "/users.json").check_password("alice", "New-3")
        st2.delete("bob")
        assert UserStore(d + "/users.json").list() == ["alice"]
        with open(d + "/users.json") as f:
            text = f.read()
        assert "Wonder" not in text and "New-3" not in text
        assert st2.apop_secret("alice") is None  # APOP off: no secret kept
        assert not compat.exists(d + "/users.json.apop")
    finally:
        fwtest.rmtree(d)


def test_a_right_password_is_remembered_and_a_wrong_one_pays_in_full():
    """A POP3 client polling with its right password pays the PBKDF2 once; a
    wrong password (or an unknown user) pays all of it every time, a changed
    password never passes with the old one, and a deleted user is forgotten."""
    from dialgate import users

    d = fwtest.tempdir("usr")
    real = compat.pbkdf2_sha256
    runs = []

    def counted(*a):
        runs.append(a[2])
        return real(*a)

    compat.pbkdf2_sha256 = counted
    try:
        st = UserStore(d + "/users.json", iterations=1000)
        st.add("alice", "Wonder-1")
        del runs[:]

        def cost(name, password, ok):
            n = len(runs)
            assert st.check_password(name, password) is ok, (name, password)
            return len(runs) - n

        assert cost("alice", "Wonder-1", True) == 1
        assert [cost("alice", "Wonder-1", True) for _ in range(3)] == [0, 0, 0]
        assert cost("alice", "Wonder-2", False) == 1  # a guess: the whole PBKDF2
        assert cost("alice", "Wonder-1", True) == 0
        cost("carol", "Wonder-1", False)  # (the first unknown user also makes the dummy hash)
        assert cost("carol", "Wonder-1", False) == 1
        st.set_password("alice", "Second-2")
        del runs[:]
        assert cost("alice", "Wonder-1", False) == 1
        assert cost("alice", "Second-2", True) == 1
        assert cost("alice", "Second-2", True) == 0
        st.delete("alice")
        assert cost("alice", "Second-2", False) == 1 and st._right == {}
        assert users.compat.pbkdf2_sha256 is counted  # (what the store calls)
    finally:
        compat.pbkdf2_sha256 = real
        fwtest.rmtree(d)


def test_apop_secret_kept_apart_when_enabled():
    d = fwtest.tempdir("us")
    try:
        st = UserStore(d + "/users.json", apop=True, iterations=1000)
        st.add("alice", "Wonder-1")
        assert st.apop_secret("alice") == "Wonder-1"
        assert UserStore(d + "/users.json", apop=True).apop_secret("alice") == "Wonder-1"
        assert UserStore(d + "/users.json", apop=False).apop_secret("alice") is None
        with open(d + "/users.json") as f:
            assert "Wonder" not in f.read()
        if not compat.MICROPYTHON:
            import os

            assert os.stat(d + "/users.json.apop").st_mode & 0o077 == 0
        st.delete("alice")
        assert UserStore(d + "/users.json", apop=True).apop_secret("alice") is None
    finally:
        fwtest.rmtree(d)


def test_a_password_changed_or_a_user_deleted_with_apop_off_drops_the_old_secret():
    """With users.apop off the store does not load the secrets, but a change
    still reaches them: else turning APOP on again would let the old password
    in by APOP (and keep it on flash in the clear)."""
    d = fwtest.tempdir("us")
    p = d + "/users.json"
    try:
        st = UserStore(p, apop=True, iterations=1000)
        st.add("bob", "Old-pass-1")
        st.add("carol", "Carol-pass-1")
        off = UserStore(p, apop=False, iterations=1000)
        off.set_password("bob", "New-pass-2")
        off.delete("carol")
        on = UserStore(p, apop=True, iterations=1000)
        assert on.apop_secret("bob") is None, "the old password still works by APOP"
        assert on.check_password("bob", "New-pass-2") and not on.check_password("bob", "Old-pass-1")
        on.add("carol", "Carol-pass-2")
        assert on.apop_secret("carol") == "Carol-pass-2"
        with open(p + ".apop") as f:
            text = f.read()
        assert "Old-pass-1" not in text and "Carol-pass-1" not in text, text
        UserStore(p, apop=False, iterations=1000).add("dave", "Dave-pass-1")  # no secrets file needed to add
        assert UserStore(p, apop=True).apop_secret("dave") is None
    finally:
        fwtest.rmtree(d)


def test_names_and_passwords_are_checked():
    assert valid_user("alice") and valid_user("a.b-c_d9")
    d = fwtest.tempdir("us")
    try:
        st = UserStore(d + "/users.json", iterations=1000)
        for bad in ("", "Bob", "../x", "a b", ".x", "x" * 65):
            try:
                st.add(bad, "pw")
                raise AssertionError("ValueError expected for %r" % bad)
            except ValueError:
                pass
        for bad in ("", "has space", "x" * 129):
            try:
                st.add("ok", bad)
                raise AssertionError("ValueError expected for password %r" % bad)
            except ValueError:
                pass
        assert st.list() == []
    finally:
        fwtest.rmtree(d)


class _Gw:
    pass


class _Sink:
    def __init__(self):
        self.text = []

    def write(self, s):
        self.text.append(s)


def test_console_commands():
    d = fwtest.tempdir("us")
    sink = _Sink()
    old_stream, old_console = log.LOG.stream, log.LOG.console
    log.LOG.stream, log.LOG.console = sink, True
    try:
        from dialgate.spool import Spool

        gw = _Gw()
        gw.users = UserStore(d + "/users.json", apop=True, iterations=1000)
        gw.spool = Spool(d + "/spool", 0)
        gw.spool.recover()
        gw.maildrops = gw.spool.maildrops
        cmds = Commands()
        add_commands(cmds)

        def run(line):
            return cmds.run(gw, line)

        assert run("user add alice Sekr1t-pw") == ["user alice added", "OK"]
        assert run("user add alice other")[-1] == "ERR user alice exists"
        assert run("user add Bad/Name pw")[-1].startswith("ERR bad user name")
        assert run("user add bob")[-1] == "ERR usage: user add NAME PASSWORD"
        assert run("user add bob Other-pw2")[-1] == "OK"
        assert run("user passwd alice Changed-pw3") == ["password of alice changed", "OK"]
        assert run("user passwd nobody Changed-pw3")[-1] == "ERR no user nobody"
        assert gw.users.check_password("alice", "Changed-pw3")
        out = run("user list")
        assert out[-1] == "OK" and out[0].startswith("alice  0 messages")
        assert run("alias add team alice bob") == ["alias team -> alice bob", "OK"]
        assert run("alias add x nobody")[-1] == "ERR no user or alias nobody"
        assert run("alias add y")[-1].startswith("ERR usage")
        assert run("alias list") == ["team -> alice bob", "OK"]
        assert run("alias del team")[-1] == "OK"
        assert run("alias del team")[-1] == "ERR no alias team"
        assert run("alias list") == ["(no aliases)", "OK"]
        md = gw.maildrops.open("bob")
        assert run("user del bob")[-1].startswith("ERR maildrop of bob is in use")
        md.close()
        assert run("user del bob")[-1] == "OK"
        assert run("user del bob")[-1] == "ERR no user bob"
        logged = "".join(sink.text)
        for pw in ("Sekr1t-pw", "Other-pw2", "Changed-pw3"):
            assert pw not in logged, pw
    finally:
        log.LOG.stream, log.LOG.console = old_stream, old_console
        fwtest.rmtree(d)


def test_store_cut_inside_a_remove_then_rename_replace_is_finished():
    d = fwtest.tempdir("us")
    try:
        st = UserStore(d + "/users.json", iterations=1000)
        st.add("alice", "Wonder-1")
        import os

        os.rename(d + "/users.json", d + "/users.json.tmp")  # as if cut between remove and rename
        assert UserStore(d + "/users.json").check_password("alice", "Wonder-1")
        assert compat.exists(d + "/users.json") and not compat.exists(d + "/users.json.tmp")
    finally:
        fwtest.rmtree(d)
