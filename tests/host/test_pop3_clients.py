"""Real POP3 clients against a real gateway process: Python's poplib (user/pass,
apop, top, uidl, stls) on both runtimes, and fetchmail collecting and in keep mode."""

from __future__ import annotations

import hashlib
import os
import poplib
import signal
import socket
import subprocess
import time

import pytest

from gateway import Gateway
from host_tools import pkgs

PASSWORD = "Secret123"
RUNTIMES = ["cpython", "upy"]
UPY_HEAP = "512K"


def message(n: int, extra: bytes = b"") -> bytes:
    return (b"From: sender%d@isp.test\r\nTo: alice@office.test\r\nSubject: message %d\r\n"
            b"Message-ID: <m%d@isp.test>\r\n\r\nbody of message %d\r\n" % (n, n, n, n)) + extra


def deliver(spool_dir, user: str, bodies: list[bytes]) -> None:
    """Put messages into a maildrop the way SMTP does (spool commit), gateway stopped."""
    from dialgate.delivery import Route
    from dialgate.spool import Spool

    sp = Spool(str(spool_dir), 0)
    sp.recover()
    for b in bodies:
        w = sp.writer()
        w.write(b)
        w.commit("sender@isp.test", [Route("local", f"{user}@office.test", [user])])


def start(tmp_path, runtime: str, bodies: list[bytes], overrides: dict | None = None) -> Gateway:
    spool = tmp_path / "spool"
    if bodies:
        deliver(spool, "alice", bodies)
    # MicroPython runs the board's way, from .mpy files. UPY_HEAP: the whole gateway
    # (every module imported at boot) does not fit 128K yet; the POP3 data path's
    # 128K claim is tests/fw/test_pop3_bigmsg.py.
    gw = Gateway(tmp_path, overrides, runtime=runtime, mpy=runtime == "upy", heap=UPY_HEAP)
    if not (spool / "users.json").exists() or b"alice" not in (spool / "users.json").read_bytes():
        ok, lines, _ = gw.command(f"user add alice {PASSWORD}")
        assert ok, lines
    return gw


def login(gw: Gateway) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=30)
    p.user("alice")
    p.pass_(PASSWORD)
    return p


def uidls(p: poplib.POP3) -> list[bytes]:
    return [ln.split()[1] for ln in p.uidl()[1]]


def stop(gw: Gateway) -> None:
    if gw.proc.poll() is not None and gw.proc.returncode == -signal.SIGKILL:
        return  # killed on purpose by the test
    rc = gw.stop()
    assert rc in (0, 130, -2), gw.output()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_poplib_user_stat_list_uidl_top_retr_dele_quit(tmp_path, runtime):
    dotted = message(3, b".leading dot\r\n.\r\n..two\r\n")
    bodies = [message(1), message(2), dotted, message(4)]
    gw = start(tmp_path, runtime, bodies)
    try:
        p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=30)
        caps = p.capa()
        for c in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE",
                  "LOGIN-DELAY", "IMPLEMENTATION"):
            assert c in caps, caps
        assert caps["SASL"] == ["PLAIN"] and caps["EXPIRE"] == ["NEVER"]
        assert "STLS" not in caps  # no certificate configured
        p.user("alice")
        p.pass_(PASSWORD)
        assert p.stat() == (4, sum(len(b) for b in bodies))
        assert [int(ln.split()[1]) for ln in p.list()[1]] == [len(b) for b in bodies]  # exact octets
        before = uidls(p)
        assert len(set(before)) == 4
        resp, lines, octets = p.retr(3)
        assert resp == b"+OK %d octets" % len(dotted)
        assert b"\r\n".join(lines) + b"\r\n" == dotted  # poplib un-stuffs: the bytes round-trip
        top = p.top(3, 1)[1]
        assert top[-2:] == [b"", b"body of message 3"], top
        assert p.dele(2).startswith(b"+OK") and p.dele(4).startswith(b"+OK")
        with pytest.raises(poplib.error_proto, match="already deleted"):
            p.retr(2)
        assert p.quit().startswith(b"+OK")
        p = login(gw)
        assert uidls(p) == [before[0], before[2]]  # exactly the marked ones are gone
        p.quit()
    finally:
        stop(gw)
    # UIDL stable across a gateway restart
    gw = start(tmp_path, runtime, [])
    try:
        p = login(gw)
        assert uidls(p) == [before[0], before[2]]
        p.quit()
    finally:
        stop(gw)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_poplib_apop_and_in_use(tmp_path, runtime):
    gw = start(tmp_path, runtime, [message(1)])
    try:
        p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=30)
        assert p.apop("alice", PASSWORD).startswith(b"+OK alice has 1 messages")
        q = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=30)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            q.apop("alice", PASSWORD)
        q.quit()
        r = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=30)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] invalid user name or password"):
            r.apop("alice", "wrong")
        r.close()
        p.quit()
    finally:
        stop(gw)


def raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.recv(512)
    return s


def ask(s: socket.socket, line: bytes) -> bytes:
    s.sendall(line + b"\r\n")
    return s.recv(4096)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_killed_mid_transaction_deletes_nothing(tmp_path, runtime):
    bodies = [message(i) for i in range(1, 4)]
    gw = start(tmp_path, runtime, bodies)
    try:
        # 1. the client vanishes after DELE (connection reset, no QUIT)
        s = raw(gw.pop3_port)
        assert ask(s, b"USER alice").startswith(b"+OK")
        assert ask(s, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
        assert ask(s, b"DELE 1").startswith(b"+OK")
        assert ask(s, b"DELE 3").startswith(b"+OK")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        deadline = time.monotonic() + 10
        while True:  # the lock goes with the connection
            try:
                p = login(gw)
                break
            except poplib.error_proto:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert p.stat()[0] == 3
        # 2. the gateway itself dies (SIGKILL) mid-transaction, lock held
        assert p.dele(2).startswith(b"+OK")
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(timeout=10)
        p.close()
    finally:
        stop(gw)
    gw = start(tmp_path, runtime, [])
    try:
        p = login(gw)  # the stale lock is recovered
        assert p.stat() == (3, sum(len(b) for b in bodies))
        p.quit()
    finally:
        stop(gw)


def test_pipelined_commands_over_tcp(tmp_path):
    gw = start(tmp_path, "cpython", [message(1), message(2)])
    try:
        s = raw(gw.pop3_port)
        s.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL\r\nRETR 1\r\nNOOP\r\nQUIT\r\n".encode())
        got = b""
        while not got.endswith(b"signing off (2 messages left)\r\n"):
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        s.close()
        m1 = message(1)
        assert (b"+OK 2 %d\r\n+OK listing follows\r\n" % (len(m1) + len(message(2)))) in got
        assert b"+OK %d octets\r\n%s.\r\n+OK\r\n+OK dialgate" % (len(m1), m1) in got
    finally:
        stop(gw)


# ---- fetchmail ----------------------------------------------------------------


def fetchmail(tmp_path, gw: Gateway, out, keep: bool) -> subprocess.CompletedProcess:
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'set idfile "{tmp_path}/fetchids"\n'
        f"poll 127.0.0.1 protocol pop3 port {gw.pop3_port} timeout 30:\n"
        f'  user "alice" there with password "{PASSWORD}" is "root" here\n'
        f'  {"keep" if keep else "nokeep"} fetchall\n'.replace("fetchall", "" if keep else "fetchall")
        + f'  mda "cat >> {out}; echo ===END=== >> {out}"\n'
    )
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    return subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nosyslog", "--sslproto", ""], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fetchmail_keep_mode_downloads_nothing_twice(tmp_path, runtime):
    pkgs.require("fetchmail")
    bodies = [message(i, b".dot line\r\n") for i in range(1, 4)]
    gw = start(tmp_path, runtime, bodies)
    out = tmp_path / "mbox"
    try:
        r = fetchmail(tmp_path, gw, out, keep=True)
        assert r.returncode == 0, r.stdout + r.stderr
        got = out.read_bytes()
        assert got.count(b"===END===") == 3, got
        assert got.count(b"\n.dot line") == 3  # un-stuffed by fetchmail: the bytes survived
        r = fetchmail(tmp_path, gw, out, keep=True)
        assert r.returncode == 1, r.stdout + r.stderr  # 1: no new mail
        assert out.read_bytes().count(b"===END===") == 3
        p = login(gw)
        assert p.stat()[0] == 3  # kept on the server
        p.quit()
    finally:
        stop(gw)
    # a new message after a restart: only it comes down
    deliver(tmp_path / "spool", "alice", [message(9)])
    gw = start(tmp_path, runtime, [])
    try:
        r = fetchmail(tmp_path, gw, out, keep=True)
        assert r.returncode == 0, r.stdout + r.stderr
        got = out.read_bytes()
        assert got.count(b"===END===") == 4 and got.count(b"Subject: message 9") == 1, got
    finally:
        stop(gw)


def test_fetchmail_collects_and_deletes(tmp_path):
    pkgs.require("fetchmail")
    bodies = [message(i) for i in range(1, 6)]
    gw = start(tmp_path, "cpython", bodies)
    out = tmp_path / "mbox"
    try:
        r = fetchmail(tmp_path, gw, out, keep=False)
        assert r.returncode == 0, r.stdout + r.stderr
        got = out.read_bytes()
        assert got.count(b"===END===") == 5
        for i in range(1, 6):
            assert b"Subject: message %d\r\n" % i in got or b"Subject: message %d\n" % i in got
        p = login(gw)
        assert p.stat() == (0, 0)
        p.quit()
        r = fetchmail(tmp_path, gw, out, keep=False)
        assert r.returncode == 1, r.stdout + r.stderr
    finally:
        stop(gw)


def test_apop_digest_matches_poplib(tmp_path):
    """The greeting timestamp is <pid.clock@hostname>, and a hand-made digest logs in."""
    gw = start(tmp_path, "cpython", [])
    try:
        s = socket.create_connection(("127.0.0.1", gw.pop3_port), timeout=30)
        greet = s.recv(512)
        stamp = greet[greet.index(b"<") : greet.index(b">") + 1]
        assert stamp.endswith(b"@gw.office.test>") and b"." in stamp
        d = hashlib.md5(stamp + PASSWORD.encode()).hexdigest().encode()
        assert ask(s, b"APOP alice " + d).startswith(b"+OK alice has 0 messages")
        assert ask(s, b"QUIT").startswith(b"+OK")
        s.close()
    finally:
        stop(gw)


# ---- STLS (RFC 2595) ------------------------------------------------------------


def make_cert(tmp_path):
    pkgs.require("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=gw.office.test", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class InternetPOP3(poplib.POP3):
    """poplib from 127.0.0.2: outside the host profile's LAN (127.0.0.1/32)."""

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.2", 0))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_poplib_stls_from_the_internet(tmp_path, runtime):
    """From a non-LAN address plaintext logins are refused until STLS; after it they work."""
    import ssl

    cert, key = make_cert(tmp_path)
    gw = start(tmp_path, runtime, [message(1)],
               {"smtp.tls_cert": str(cert), "smtp.tls_key": str(key)})
    try:
        p = InternetPOP3("127.0.0.1", gw.pop3_port, timeout=30)
        caps = p.capa()
        assert "STLS" in caps and "USER" not in caps, caps
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] plaintext login not allowed"):
            p.user("alice")
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        assert p.stls(ctx).startswith(b"+OK")
        caps = p.capa()
        assert "USER" in caps and "STLS" not in caps, caps
        p.user("alice")
        assert p.pass_(PASSWORD).startswith(b"+OK alice has 1 messages")
        assert p.retr(1)[1][-1] == b"body of message 1"
        p.quit()
    finally:
        stop(gw)


# ---- a 50 MB message through the real gateway -------------------------------------


def deliver_big(spool_dir, size: int) -> int:
    """A `size`-octet message, every 16th line starting with a dot; returns the dot lines."""
    from dialgate.delivery import Route
    from dialgate.spool import Spool

    sp = Spool(str(spool_dir), 0)
    sp.recover()
    w = sp.writer()
    head = b"Subject: big\r\n\r\n"
    block = (b"." + b"y" * 61 + b"\r\n" + (b"x" * 62 + b"\r\n") * 15) * 64  # 64 KB, 64 dot lines
    w.write(head)
    n, dots = len(head), 0
    while n + len(block) <= size:
        w.write(block)
        n += len(block)
        dots += 64
    rest = size - n
    w.write(b"z" * (rest - 2) + b"\r\n")
    w.commit("sender@isp.test", [Route("local", "alice@office.test", ["alice"])])
    return dots


def heap_used(gw: Gateway) -> int:
    ok, lines, _ = gw.command("status")
    assert ok, lines
    return int(dict(x.split(": ", 1) for x in lines)["heap"].split()[1])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_retr_50mb_through_the_gateway(tmp_path, runtime):
    size = 50 * 1024 * 1024
    dots = deliver_big(tmp_path / "spool", size)
    gw = start(tmp_path, runtime, [])
    try:
        # The POP3 stack loads on first use (app.Gateway): log in once first, so
        # `before` holds the code and the comparison sees only the transfer.
        s = raw(gw.pop3_port)
        assert ask(s, b"USER alice").startswith(b"+OK")
        assert ask(s, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
        assert ask(s, b"QUIT").startswith(b"+OK")
        s.close()
        before = heap_used(gw)
        s = raw(gw.pop3_port)
        assert ask(s, b"USER alice").startswith(b"+OK")
        assert ask(s, f"PASS {PASSWORD}".encode()).startswith(b"+OK alice has 1 messages (%d octets)" % size)
        s.sendall(b"RETR 1\r\n")
        t0 = time.monotonic()
        got = 0
        tail = b""
        buf = bytearray(1 << 16)
        while not tail.endswith(b"\r\n.\r\n"):
            n = s.recv_into(buf)
            assert n, got
            got += n
            tail = (tail + bytes(buf[:n]))[-8:]
        secs = time.monotonic() - t0
        assert ask(s, b"QUIT").startswith(b"+OK")
        s.close()
        reply = len(b"+OK %d octets\r\n" % size)
        assert got == reply + size + dots + 3, (got, size, dots)
        after = heap_used(gw)
        print(f"\n# {runtime}: RETR 50 MB in {secs:.1f} s ({size / secs / 1e6:.0f} MB/s); gateway heap used "
              f"before {before}, after {after}")
        if runtime == "upy":
            assert after - before < 16384, (before, after)  # no growth with the message size
    finally:
        stop(gw)
