"""End to end, the product's defining behaviour: nobody at the console. A real
Postfix is the ISP (holding 20 messages for office.test with defer_transports +
fast_flush_domains), the emulated modem carries a 33,600 bps line with a 150 ms
round trip. The scheduler starts the call by itself once 20 messages are queued;
the session relays them (BDAT, pipelined across messages: Postfix offers CHUNKING),
sends ETRN, takes the 20 held messages into the right
maildrops and hangs up by itself once the line has been quiet for
session.idle_hangup. Then the same with the carrier dropped during outbound DATA
and during inbound DATA: nothing is lost, and the scheduler's retry finishes.

Run with `-s` to see the figures (seconds online against the line-rate bound).
"""

from __future__ import annotations

import csv
import email
import json
import poplib
import smtplib
import ssl
import time

import pytest
from modem_emu import ModemEmulator

from gateway import Gateway, free_port
from host_tools import isp_postfix
from host_tools.isp_postfix import IspPostfix

N = 20
SIZE = 1500
BPS = 33600
SCALE = 0.1  # emulator times (handshake 12 s -> 1.2 s); data moves at the real line rate
IDLE = 8


def body(kind: str, n: int, to: str) -> bytes:
    head = (f"From: {kind}{n}@example.net\r\nTo: {to}\r\nSubject: {kind} {n}\r\n"
            f"Message-ID: <{kind}{n}@dialgate.test>\r\n\r\n").encode()
    lines = [b".a leading dot", b"line of text %d" % n, b"Gr\xc3\xbc\xc3\x9fe"]
    out = bytearray(head)
    k = 0
    while len(out) < SIZE:
        out += lines[k % 3] + b"\r\n"
        k += 1
    return bytes(out)


class Office:
    """Postfix as the ISP, the modem emulator between it and a gateway process."""

    def __init__(self, tmp_path, scenarios: list[str]):
        isp_postfix.require()
        self.gw_smtp = free_port()
        self.rev = free_port()  # ISP side of the line -> the gateway's SMTP listener
        self.isp = IspPostfix(mailboxes=("bob@example.com",), hold_domains=("office.test",),
                              hold_nexthop=f"127.0.0.1:{self.rev}").start()
        self.emu = self.gw = None
        try:
            self._start(tmp_path, scenarios)
        except BaseException:
            self.close()  # never leave a Postfix or an emulator behind
            raise

    def _start(self, tmp_path, scenarios: list[str]) -> None:
        self.fwd = free_port()  # gateway side of the line -> the ISP's submission port
        self.emu = ModemEmulator(scenarios, bps=BPS, rtt_ms=150, scale=SCALE,
                                 forward={self.fwd: self.isp.ports["submission"]}, reverse={self.rev: self.gw_smtp})
        (tmp_path / "gw").mkdir()
        self.gw = Gateway(tmp_path / "gw", {
            "smtp.listen": [f"127.0.0.1:{self.gw_smtp}"],
            "link.type": "emulated", "link.smtp": f"127.0.0.1:{self.fwd}",
            "modem.port": self.emu.url, "modem.guard_ms": 100, "modem.redial": 0,
            "modem.connect_timeout": 30,
            "relay.smarthost": f"127.0.0.1:{self.isp.ports['submission']}", "relay.tls": "starttls",
            "relay.ca_file": self.isp.ca_file, "relay.tls_name": "isp.test", "relay.user": "gw",
            "relay.password": "secret", "relay.timeout": 60,
            "session.etrn": ["office.test"], "session.idle_hangup": IDLE, "session.min_online": 3,
            "session.retry_delay": 10, "schedule.queue_count": N, "schedule.min_gap": 0,
        })
        for u in ("alice", "carol"):
            ok, lines, _ = self.gw.command(f"user add {u} {u}-secret")
            assert ok, lines

    def hold(self, n: int = N) -> None:
        ctx = ssl.create_default_context(cafile=self.isp.ca_file)
        with smtplib.SMTP("127.0.0.1", self.isp.ports["submission"]) as s:
            s.starttls(context=ctx)
            s.login("gw", "secret")
            for i in range(n):
                to = "alice@office.test" if i % 2 == 0 else "carol@office.test"
                s.sendmail(f"in{i}@example.net", [to], body("in", i, to))
        # (a message moving between Postfix's queues can be listed twice in one scan: count ids)
        deadline = time.monotonic() + 30
        while len(set(self.isp.queued())) != n and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(set(self.isp.queued())) == n, "Postfix should hold them (defer_transports)"

    def queue(self, n: int = N) -> None:
        with smtplib.SMTP("127.0.0.1", self.gw_smtp) as s:
            for i in range(n):
                s.sendmail("alice@office.test", ["bob@example.com"], body("out", i, "bob@example.com"))

    def pop3(self, user: str) -> list[bytes]:
        p = poplib.POP3("127.0.0.1", self.gw.pop3_port, timeout=10)
        try:
            p.user(user)
            p.pass_(f"{user}-secret")
            return [b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" for i in range(p.stat()[0])]
        finally:
            p.quit()

    def status(self) -> list[str]:
        return self.gw.command("status")[1]

    def link_down(self) -> bool:
        return any(x.startswith("link: down") for x in self.status())

    def calls(self) -> list[dict]:
        ok, lines, _ = self.gw.command("stats csv")
        assert ok, lines
        rows = list(csv.reader(lines[:-1] if lines and lines[-1] == "OK" else lines))
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]

    def close(self) -> None:
        try:
            if self.gw is not None:
                self.gw.stop()
        finally:
            try:
                if self.emu is not None:
                    self.emu.stop()
            finally:
                self.isp.stop()


def wait(cond, seconds: float, what: str, office: Office | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.25)
    extra = "\n".join(office.gw.command("log 60")[1]) if office else ""
    raise AssertionError(f"timed out waiting for {what}\n{extra}")


def ids_at_isp(isp: IspPostfix) -> list[str]:
    return [email.message_from_bytes(f.read_bytes())["Message-ID"] for f in isp.delivered("bob@example.com")]


def ids_in(msgs: list[bytes]) -> list[str]:
    return [email.message_from_bytes(m)["Message-ID"] for m in msgs]


def check_all_arrived(o: Office) -> tuple[int, int]:
    """Every message went where it should, intact. Returns duplicates (out, in)."""
    want_out = {f"<out{i}@dialgate.test>" for i in range(N)}
    got_out = wait(lambda: (lambda ids: ids if want_out <= set(ids) else None)(ids_at_isp(o.isp)), 60,
                   "the outbound messages at the ISP", o)
    alice, carol = o.pop3("alice"), o.pop3("carol")
    for i in range(N):
        to = "alice" if i % 2 == 0 else "carol"
        box = alice if to == "alice" else carol
        want = body("in", i, f"{to}@office.test")
        # the body octet for octet; the header as sent, under the trace lines
        # (ours and Postfix's) and Postfix's added Date:
        hits = [m for m in box if m.split(b"\r\n\r\n", 1)[1] == want.split(b"\r\n\r\n", 1)[1]
                and f"Message-ID: <in{i}@dialgate.test>".encode() in m and f"Subject: in {i}\r\n".encode() in m]
        assert hits, f"held message {i} missing or changed in {to}'s maildrop"
    assert wait(lambda: o.isp.queued() == [], 30, "Postfix's queue to empty", o)
    n_in = len(alice) + len(carol)
    return len(got_out) - N, n_in - N


def test_scheduler_calls_sends_fetches_and_hangs_up_by_itself(tmp_path):
    o = Office(tmp_path, ["answer"])
    try:
        o.hold()
        assert o.link_down()
        t_queue = time.monotonic()
        o.queue()  # the 20th queued message is the trigger (schedule.queue_count)
        wait(lambda: not o.link_down(), 30, "the scheduler to dial by itself", o)
        # all 20 held messages reach the maildrops while the line is up
        wait(lambda: len(o.pop3("alice")) + len(o.pop3("carol")) >= N, 180, "the held mail", o)
        t_last = time.monotonic()
        wait(o.link_down, IDLE + 30, "the line to go down by itself", o)
        t_down = time.monotonic()
        dup_out, dup_in = check_all_arrived(o)
        assert (dup_out, dup_in) == (0, 0)
        calls = o.calls()
        assert len(calls) == 1, calls
        c = calls[0]
        assert c["trigger"] == "queue" and c["end"] == "idle" and c["ok"] == "1", c
        assert c["ask"].startswith("ETRN 250"), c
        assert int(c["msgs_out"]) == N and int(c["msgs_in"]) == N, c
        octets = int(c["bytes_in"]) + int(c["bytes_out"])
        handshake = 12 * SCALE
        bound = octets * 10 / BPS + handshake
        online = int(c["online_s"])
        # the hang-up came within idle_hangup + a few seconds of the last message in
        assert t_down - t_last <= IDLE + 6, (t_down - t_last, c)
        # the smarthost offers CHUNKING: the queue went as pipelined BDAT LAST chunks, one
        # connection (RFC 3030 §4.2), so no round trip per message holds the line idle
        assert f"mail={N} rcpt={N} bdat={N}" in o.isp.log_text()
        print(f"\ndial session: {octets} octets over the line ({c['bytes_out']} out, {c['bytes_in']} in), "
              f"{online} s online; line-rate bound {bound:.1f} s (octets x 10 / {BPS} + {handshake:.1f} s "
              f"handshake), idle_hangup {IDLE} s; online minus linger {online - IDLE} s, ratio "
              f"{(online - IDLE) / bound:.2f}; from queue to line down {t_down - t_queue:.1f} s; last message in to "
              f"line down {t_down - t_last:.1f} s")
        print("cost record:", json.dumps(c))
    finally:
        o.close()


@pytest.mark.parametrize("where", ["outbound", "inbound"])
def test_carrier_lost_mid_data_nothing_lost_retry_finishes(tmp_path, where):
    # The first call's carrier drops after this many octets on the line: inside the
    # outbound DATA stream (the queue goes first), or inside the inbound flush
    # (after the queue's ~32 KB and ETRN, the ISP's messages come back).
    drop = 12000 if where == "outbound" else 48000
    o = Office(tmp_path, [f"answer+drop-bytes={drop}", "answer"])
    try:
        o.hold()
        o.queue()
        wait(lambda: len(o.calls()) >= 1, 240, "the first call to end", o)
        first = o.calls()[0]
        assert first["end"] == "carrier lost" and first["ok"] == "0", first
        if where == "outbound":
            # cut before the queue was done (the ETRN that was to follow it is "not sent")
            assert int(first["msgs_out"]) < N and first["ask"] in ("", "ETRN not sent"), first
        else:
            assert int(first["msgs_out"]) == N and first["ask"].startswith("ETRN 250"), first
            assert int(first["msgs_in"]) < N, first  # cut while the ISP was delivering
        # the scheduler makes the next call by itself after session.retry_delay
        wait(lambda: len(o.calls()) >= 2 and o.link_down(), 300, "the retry call to finish", o)
        calls = o.calls()
        assert calls[1]["trigger"] == "retry", calls
        dup_out, dup_in = check_all_arrived(o)
        print(f"\ncarrier lost during {where} DATA after {drop} octets: first call {first['online_s']} s, "
              f"{first['msgs_out']} out / {first['msgs_in']} in; retry {calls[1]['online_s']} s, "
              f"{calls[1]['msgs_out']} out / {calls[1]['msgs_in']} in; duplicates (dot sent, 250 lost): "
              f"{dup_out} out, {dup_in} in")
        assert dup_out <= 1 and dup_in <= 1  # only the message whose 250 the drop swallowed
    finally:
        o.close()
