"""No password and no AUTH blob in the logs, whatever login path was used
(issue 12, security): one gateway, every way a secret reaches it — SMTP AUTH
PLAIN and LOGIN (right and wrong), POP3 USER/PASS, APOP and AUTH PLAIN (right
and wrong), the console's `user add`/`user passwd`, `console passwd`, `login`
(right and wrong) and `config set` of the ISP password — then the log file,
the console's `log` ring and the process output are searched for every
secret, its base64 forms and the SASL blobs sent."""

from __future__ import annotations

import base64
import poplib
import smtplib
import socket

import pytest

from gateway import Gateway

USER_PW = "Alice-Pw-7781"
WRONG_PW = "Wrong-Pw-5512"
NEW_PW = "Alice-New-9903"
CONSOLE_PW = "Console-Pw-3317"
ISP_PW = "Isp-Secret-4410"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _pop3_auth_plain(port: int, user: str, pw: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{pw}".encode()) + b"\r\n")
        reply = f.readline()
        s.sendall(b"QUIT\r\n")
        f.readline()
        return reply


def _console(port: int, lines: str) -> bytes:
    """Type `lines` at the TCP console (they end with quit); everything it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(lines.encode())
        got = b""
        while b"bye" not in got:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.parametrize("runtime", ["cpython", "upy"])
def test_no_secret_of_any_login_path_in_the_logs(tmp_path, runtime):
    gw = Gateway(tmp_path, runtime=runtime, mpy=runtime == "upy", heap="512K")
    blobs = []
    try:
        assert gw.command(f"user add alice {USER_PW}")[0]
        # SMTP AUTH from the LAN (smtp.auth_plaintext "lan"), right and wrong, both mechanisms
        for mech in ("PLAIN", "LOGIN"):
            for pw, ok in ((WRONG_PW, False), (USER_PW, True)):
                s = smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=10)
                s.ehlo("pc.office.test")
                if mech == "PLAIN":
                    blob = _b64(f"\0alice\0{pw}")
                    blobs.append(blob)
                    code, _ = s.docmd("AUTH", "PLAIN " + blob)
                else:
                    s.docmd("AUTH", "LOGIN")
                    s.docmd(_b64("alice"))
                    blobs.append(_b64(pw))
                    code, _ = s.docmd(_b64(pw))
                assert (code == 235) == ok, (mech, pw, code)
                s.quit()
        # POP3: USER/PASS, APOP, AUTH PLAIN; right and wrong
        for pw, ok in ((WRONG_PW, False), (USER_PW, True)):
            p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
            p.user("alice")
            try:
                p.pass_(pw)
                assert ok
            except poplib.error_proto:
                assert not ok
            p.quit()
        p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
        assert p.apop("alice", USER_PW).startswith(b"+OK")  # host profile: APOP on
        p.quit()
        blobs.append(base64.b64encode(f"\0alice\0{WRONG_PW}".encode()).decode())
        assert _pop3_auth_plain(gw.pop3_port, "alice", WRONG_PW).startswith(b"-ERR")
        # the console: a new password, the console's own, the ISP's
        assert gw.command(f"user passwd alice {NEW_PW}")[0]
        assert gw.command(f"config set relay.password {ISP_PW}")[0]
        assert gw.command(f"console passwd {CONSOLE_PW}")[0]
        gw.console_password = CONSOLE_PW  # stop() logs in to say shutdown
        seen = _console(gw.console_port, f"login {WRONG_PW}\r\nlogin {CONSOLE_PW}\r\nstatus\r\nquit\r\n")
        assert b"ERR" in seen and b"version:" in seen, seen[-300:]
        ring = _console(gw.console_port, f"login {CONSOLE_PW}\r\nlog 400\r\nquit\r\n")
    finally:
        gw.stop()
    logged = (tmp_path / "log" / "dialgate.log").read_text() + gw.output() + ring.decode("utf-8", "replace")
    assert "smtp" in logged and "pop3" in logged and "console" in logged, logged[-500:]
    for secret in (USER_PW, WRONG_PW, NEW_PW, CONSOLE_PW, ISP_PW):
        assert secret not in logged, secret
        assert _b64(secret) not in logged, secret
    for blob in blobs:
        assert blob not in logged, blob
    # the config on disk keeps the ISP password (it must send it), the users file and
    # the console password only hashes
    assert USER_PW not in (tmp_path / "spool" / "users.json").read_text()
    assert CONSOLE_PW not in (tmp_path / "config.json").read_text()
