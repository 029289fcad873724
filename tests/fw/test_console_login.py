"""Console password (console.password): nothing runs before `login`, a wrong
password answers ERR and pauses the session, the hash is set by `console passwd`."""

import json

import fwtest
from dialgate import config, log
from dialgate.app import Gateway
from dialgate.config import ConfigError
from dialgate.console import session
from dialgate.users import hash_password, verify_password

PEER = ("127.0.0.1", 4000)


def _gw(over=None):
    o = {"users.iterations": 1000}
    for k in over or {}:
        o[k] = over[k]
    return Gateway(fwtest.host_config(o))


def _say(s, line):
    out = s.on_line(line.encode())
    return out.decode().replace("\r", "").split("\n")[:-1] if out else []


def test_no_password_set_runs_commands_at_once():
    gw = _gw()
    s = session(PEER, gw)
    assert s.greeting().decode().startswith("dialgate console on gw.office.test, `help` lists commands")
    assert _say(s, "config get hostname")[-1] == "OK"
    assert _say(s, "login whatever") == ["no console password is set (console.password)", "OK"]
    u = session(("?", 0), gw, b"\n").uart()
    assert _say(u, "quit") == ["bye", "OK"] and not u.closing  # the UART console cannot close


def test_password_required_before_any_command():
    gw = _gw({"console.password": hash_password("s3cret", 1000)})
    s = session(PEER, gw)
    assert "login PASSWORD first" in s.greeting().decode()
    for cmd in ("status", "help", "config get hostname", "user list", "queue list"):
        assert _say(s, cmd) == ["ERR login first: login PASSWORD"], cmd
    assert _say(s, "login") == ["ERR wrong password"] and s.pause_ms == 1000
    s.pause_ms = 0
    assert _say(s, "login nope") == ["ERR wrong password"] and s.pause_ms == 2000  # doubles per failure
    s.pause_ms = 0
    out = _say(s, "login s3cret")
    assert out == ["logged in", "OK"] and s.pause_ms == 0, out
    out = _say(s, "config get console.password")
    assert out == ['console.password = "********" (set)', "OK"], out
    assert _say(s, "quit") == ["bye", "OK"] and s.closing


def test_wrong_passwords_lock_the_address_out_and_are_not_logged():
    gw = _gw({"console.password": hash_password("s3cret", 1000)})
    d = fwtest.tempdir("cli")
    try:
        log.LOG.configure("info", d + "/log.txt", 8192, False)
        for _ in range(5):
            s = session(PEER, gw)  # a new connection each time: the address counts
            assert _say(s, "login guess1") == ["ERR wrong password"]
        s = session(PEER, gw)
        out = _say(s, "login s3cret")  # locked out: not even checked
        assert out[0].startswith("ERR too many wrong passwords: try again in ") and s.locked, out
        other = session(("10.0.0.9", 1), gw)
        assert _say(other, "login s3cret")[-1] == "OK"  # another address is not held back
        text = "\n".join(log.LOG.tail(50))
        assert "console: wrong password from 127.0.0.1" in text and "guess1" not in text and "s3cret" not in text
    finally:
        log.LOG.configure("info", "", 4096, True)
        fwtest.rmtree(d)


def test_uart_console_logs_out_on_quit_and_never_idles_out():
    gw = _gw({"console.password": hash_password("s3cret", 1000)})
    s = session(("?", 0), gw, b"\n").uart()
    assert s.timeout_ms == 0
    assert _say(s, "login s3cret") == ["logged in", "OK"]
    assert _say(s, "quit") == ["bye", "OK"] and not s.closing
    assert _say(s, "status") == ["ERR login first: login PASSWORD"]


def test_config_refuses_a_plain_password_and_an_open_console():
    for bad in ("s3cret", "pbkdf2-sha256$x$a$b", "md5$1$a$b"):
        try:
            fwtest.host_config({"console.password": bad})
            raise AssertionError(bad)
        except ConfigError as e:
            assert e.key == "console.password", e
    try:
        fwtest.host_config({"console.listen": ["0.0.0.0:2323"]})
        raise AssertionError("accepted")
    except ConfigError as e:
        assert str(e) == "console.listen: 0.0.0.0 is not a loopback address: set console.password first", e
    cfg = fwtest.host_config({"console.listen": ["0.0.0.0:2323"], "console.password": hash_password("x", 1000)})
    assert cfg.addrs("console.listen") == [("0.0.0.0", 2323)]


def test_console_passwd_saves_the_hash_and_applies_at_once():
    d = fwtest.tempdir("clp")
    try:
        path = d + "/config.json"
        with open(path, "w") as f:
            f.write(json.dumps({"profile": "host", "spool": {"path": d + "/spool"}, "users": {"iterations": 1000},
                                "console": {"listen": ["127.0.0.1:2323"]}}))
        gw = Gateway(config.load(path))
        c = gw.commands
        assert c.run(gw, "console passwd") == ["ERR usage: console passwd PASSWORD"]
        assert c.run(gw, "console passwd two words")[-1].startswith("ERR bad password")
        out = c.run(gw, "console passwd n3w-pw")
        assert out == ["console password set in %s (new connections ask for it; the UART console after a restart)"
                       % path, "OK"], out
        with open(path) as f:
            stored = json.loads(f.read())["console"]["password"]
        assert verify_password(stored, "n3w-pw") and gw.cfg["console.password"] == stored
        s = session(PEER, gw)
        assert _say(s, "status") == ["ERR login first: login PASSWORD"]
        assert _say(s, "login n3w-pw")[-1] == "OK"
        assert c.run(gw, "console nopasswd")[-1] == "OK" and gw.cfg["console.password"] == ""
        with open(path) as f:
            assert json.loads(f.read())["console"]["password"] == ""
    finally:
        fwtest.rmtree(d)
