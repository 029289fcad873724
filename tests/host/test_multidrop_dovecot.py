"""POP3 multidrop against real servers: a real Postfix (host_tools.isp_postfix) is
the ISP's MX and delivers the office's mail, for several users, into one
catch-all maildir with X-Original-To; a real Dovecot POP3 (host_tools.isp_dovecot)
serves that maildir. One dial session of a gateway process (always-on link, the
console's `dial`) collects the 30 messages and sorts them into the right
maildrops (checked over POP3 with poplib). Then the same with the call cut by a
TCP proxy after the 10th RETR (in the middle of the 11th message), and in the
next call right after DELE of a freshly committed message went out and before
its reply: the third call finishes, and every message is delivered exactly
once, none is left at the ISP.

Run with `-s` for the figures.
"""

from __future__ import annotations

import csv
import email
import poplib
import smtplib
import socket
import ssl
import threading
import time

from gateway import Gateway
from host_tools import isp_dovecot, isp_postfix
from host_tools.isp_dovecot import IspDovecot
from host_tools.isp_postfix import IspPostfix

N = 30
USERS = ("alice", "bob", "carol", "postmaster")


def rcpt(i: int) -> str:
    """Ten for alice, ten for bob, nine for carol, one for nobody (the default user)."""
    return "nobody" if i == N - 1 else USERS[i % 3]


def body(i: int) -> bytes:
    head = (f"From: sender{i}@example.net\r\nTo: {rcpt(i)}@office.test\r\nSubject: multidrop {i}\r\n"
            f"Message-ID: <md{i}@dialgate.test>\r\n\r\n").encode()
    lines = [b".a leading dot", *(b"line %d of message %d" % (k, i) for k in range(40 if i != 7 else 4000))]
    return head + b"\r\n".join(lines) + b"\r\n"  # message 7 is ~100 KB


class CuttingProxy:
    """TCP between the gateway and Dovecot that cuts one connection when the
    client sends `cut` (e.g. b"DELE 20\\r\\n"): forwards that, then passes
    `extra` more octets of the server's reply (0: none) and closes both sides.
    One cut, then it passes everything."""

    def __init__(self, target: int):
        self.target = target
        self.cut: bytes | None = None
        self.extra = 0
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, cut: bytes, extra: int = 0) -> None:
        self.cut, self.extra = cut, extra

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        s = socket.create_connection(("127.0.0.1", self.target))
        st = {"budget": None, "dead": False}
        lock = threading.Lock()

        def kill() -> None:
            st["dead"] = True
            for x in (c, s):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                x.close()

        def up() -> None:
            seen = b""
            while not st["dead"]:
                try:
                    d = c.recv(65536)
                except OSError:
                    break
                if not d:
                    break
                seen = (seen + d)[-256:]
                cut = self.cut
                with lock:
                    if cut is not None and cut in seen:
                        self.cut = None
                        self.cuts += 1
                        if self.extra:
                            st["budget"] = self.extra
                        else:
                            st["dead"] = True  # the reply to this must never reach the gateway
                            s.sendall(d)
                            time.sleep(0.2)  # the server has it (and acts on it)
                            kill()
                            return
                try:
                    s.sendall(d)
                except OSError:
                    break
            kill()

        def down() -> None:
            while True:
                try:
                    d = s.recv(65536)
                except OSError:
                    break
                with lock:
                    if not d or st["dead"]:
                        break
                    b = st["budget"]
                    if b is not None:
                        d = d[:b]
                        st["budget"] = b - len(d)
                try:
                    c.sendall(d)
                except OSError:
                    break
                if st["budget"] is not None and st["budget"] <= 0:
                    break
            kill()

        threading.Thread(target=up, daemon=True).start()
        down()

    def close(self) -> None:
        self.sock.close()


class Isp:
    """Postfix (the MX) filling one mailbox for office.test; Dovecot serving it."""

    def __init__(self, mechanisms: str):
        isp_postfix.require()
        isp_dovecot.require()
        self.mx = IspPostfix(mailbox_domains=("example.com", "isp.test", "office.test"),
                             original_recipient=True).start()
        self.pop = None
        try:
            self._fill()
            self.pop = IspDovecot(self.mx.mail / "office.test" / "other", {"office": "pop-secret"},
                                  cert=self.mx.ca_file, key=str(self.mx.etc / "isp-key.pem"),
                                  mechanisms=mechanisms).start()
        except BaseException:
            self.close()
            raise

    def _fill(self) -> None:
        ctx = ssl.create_default_context(cafile=self.mx.ca_file)
        with smtplib.SMTP("127.0.0.1", self.mx.ports["submission"]) as s:
            s.starttls(context=ctx)
            s.login("gw", "secret")
            for i in range(N):
                s.sendmail(f"sender{i}@example.net", [f"{rcpt(i)}@office.test"], body(i))
        self.mx.wait_delivered(N, timeout=60)

    def close(self) -> None:
        try:
            if self.pop is not None:
                self.pop.stop()
        finally:
            self.mx.stop()


def gateway(tmp_path, isp: Isp, port: int, tls: str) -> Gateway:
    (tmp_path / "gw").mkdir()
    gw = Gateway(tmp_path / "gw", {
        "isp.pop3.host": "127.0.0.1", "isp.pop3.port": port, "isp.pop3.user": "office",
        "isp.pop3.password": "pop-secret", "isp.pop3.tls": tls, "isp.pop3.default_user": "postmaster",
        "relay.ca_file": isp.mx.ca_file, "relay.tls_name": "isp.test",
        "link.type": "always-on", "session.idle_hangup": 5, "session.min_online": 0, "session.retry_delay": 3600,
    })
    for u in USERS:
        ok, lines, _ = gw.command(f"user add {u} {u}-secret")
        assert ok, lines
    return gw


def calls(gw: Gateway) -> list[dict]:
    ok, lines, _ = gw.command("stats csv")
    assert ok, lines
    rows = list(csv.reader(lines[:-1] if lines and lines[-1] == "OK" else lines))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]] if rows else []


def call(gw: Gateway, n: int) -> dict:
    """`dial`, then wait for call n's record (the call hangs up by itself once idle)."""
    ok, lines, _ = gw.command("dial")
    assert ok, lines
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        c = calls(gw)
        if len(c) >= n:
            return c[n - 1]
        time.sleep(0.25)
    raise AssertionError(f"call {n} did not end\n{log(gw)}")


def log(gw: Gateway) -> str:
    return "\n".join(gw.command("log 80")[1])


def maildrop(gw: Gateway, user: str) -> list[bytes]:
    p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
    try:
        p.user(user)
        p.pass_(f"{user}-secret")
        return [b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" for i in range(p.stat()[0])]
    finally:
        p.quit()


def check_sorted(gw: Gateway) -> None:
    """Every message in the maildrop it was for, exactly once, intact."""
    for user in USERS:
        got = maildrop(gw, user)
        ids = [email.message_from_bytes(m)["Message-ID"] for m in got]
        want = [f"<md{i}@dialgate.test>" for i in range(N) if rcpt(i) == user or (user == "postmaster"
                                                                                     and rcpt(i) == "nobody")]
        assert sorted(ids) == sorted(want), (user, ids, want)
        for m in got:
            i = int(email.message_from_bytes(m)["Message-ID"][3:-15])
            assert m.endswith(body(i).split(b"\r\n\r\n", 1)[1]), f"message {i} changed"  # dots and all
            assert m.startswith(b"Received: from 127.0.0.1\r\n\tby gw.office.test (dialgate) with POP3 id ")
            assert f"X-Original-To: {rcpt(i)}@office.test".encode() in m


def test_one_call_sorts_the_isp_mailbox_into_the_maildrops(tmp_path):
    isp = Isp("plain")  # no APOP timestamp: AUTH PLAIN inside STLS
    gw = None
    try:
        gw = gateway(tmp_path, isp, isp.pop.port, "stls")
        t0 = time.monotonic()
        c = call(gw, 1)
        took = time.monotonic() - t0
        assert c["ok"] == "1" and c["ask"] == "POP3 30" and c["msgs_in"] == "30", (c, log(gw))
        check_sorted(gw)
        assert isp.pop.messages() == [], "collected messages stay at the ISP"
        assert "Login: user=<office>, method=PLAIN" in isp.pop.log_text() and ", TLS," in isp.pop.log_text()
        print(f"\nmultidrop: 30 messages collected and sorted in one call of {took:.1f} s "
              f"(idle_hangup 5 s included); record: {c}")
    finally:
        try:
            if gw is not None:
                gw.stop()
        finally:
            isp.close()


def test_calls_cut_after_a_retr_and_between_commit_and_dele_deliver_each_message_once(tmp_path):
    isp = Isp("apop")  # APOP: the password never on the wire, no TLS (the proxy reads the commands)
    proxy = CuttingProxy(isp.pop.port)
    gw = None
    try:
        gw = gateway(tmp_path, isp, proxy.port, "none")
        # Call 1: cut after the 10th message came whole, 300 octets into the 11th.
        proxy.arm(b"RETR 11\r\n", extra=300)
        c1 = call(gw, 1)
        assert proxy.cuts == 1 and c1["ok"] == "0" and c1["ask"] == "POP3 10 (retry)", (c1, log(gw))
        assert len(isp.pop.messages()) == N  # no QUIT: the ISP deleted nothing
        # Call 2: DELE 1-10 (known from the journal, not fetched again), 11-20 fetched; cut
        # once DELE 20 went out, before its reply (and before QUIT).
        proxy.arm(b"DELE 20\r\n")
        c2 = call(gw, 2)
        assert proxy.cuts == 2 and c2["ok"] == "0" and c2["ask"] == "POP3 10 (retry)", (c2, log(gw))
        assert len(isp.pop.messages()) == N
        # Call 3: 1-20 known, deleted; 21-30 fetched; QUIT: the mailbox is empty.
        c3 = call(gw, 3)
        assert c3["ok"] == "1" and c3["ask"] == "POP3 10", (c3, log(gw))
        assert isp.pop.messages() == []
        check_sorted(gw)
        served = isp.pop.log_text()
        assert "method=APOP" in served
        retr = [int(x.split("retr=")[1].split("/")[0]) for x in served.splitlines() if "retr=" in x]
        print(f"\nmultidrop, cut twice: calls {c1['ask']!r}, {c2['ask']!r}, {c3['ask']!r}; RETRs the ISP served "
              f"per session {retr} (the cut ones count the one in flight)")
        # Nothing fetched twice but the two in flight at the cuts: the 11th, cut in the middle,
        # and the 21st, whose RETR rode with DELE 20 (PIPELINING) and whose reply never came.
        assert sum(retr) <= N + 2, retr
    finally:
        try:
            if gw is not None:
                gw.stop()
        finally:
            proxy.close()
            isp.close()
