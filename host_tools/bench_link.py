"""Link efficiency: bulk TCP, then whole dial sessions, through the emulated link against the line-rate bound.

    python3 -m host_tools.bench_link [--bps 33600] [--seconds 20] [--rtt-ms 150]
    python3 -m host_tools.bench_link --session [--rtts 150,600] [--scale 1] [--out docs/performance.md]

Bulk (the default part of `make bench`): starts the modem emulator, dials it
with the firmware's emulated link (CPython, pyserial), pushes --seconds worth of
line time (bps/10 bytes per second, 8N1) through the forwarded port to a sink
on the "ISP" side, then the other way, then both at once, and prints each rate
and its ratio to the bound. Elapsed time runs from the first byte written to
the last byte received, one-way delay included.

Session (issue 11 item 5, also in `make bench`): a real Postfix is the ISP
(smarthost on its submission port, STARTTLS + AUTH, holding 50 messages for
office.test until ETRN). A gateway process queues 50 outbound messages of 4 KB;
the 50th makes the scheduler dial; the call relays them, says ETRN, takes the
50 held ones and hangs up by itself. The peer: Postfix as the office gateway,
relaying the same 50 to the same smarthost over the same emulated line (its
queue held by defer_transports, `postqueue -f` once the line is up). Each
figure is time on the line against the line-rate bound, octets x 10 / bps
(octets as the emulator counted them, both directions); "online" adds the
dial handshake to both. With --scale S the line runs at S x 33,600 bps and
S-times shorter round trips: every line time shrinks by S and the ratios stay
(the peers' processing times do not shrink, so a scaled run is the harsher one).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "performance.md"
N_MSG = 50
MSG_SIZE = 4096
BPS = 33600
EMU_SCALE = 0.1  # the emulator's own timings: the 12 s V.34 handshake takes 1.2 s
HANDSHAKE = 12.0 * EMU_SCALE
IDLE = 8  # session.idle_hangup
BEGIN = "<!-- bench_link: dial session (written by host_tools/bench_link.py) -->"
END = "<!-- /bench_link -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class Sink:
    """The ISP's end: receives an upload (timing its last byte) or sends a download."""

    def __init__(self) -> None:
        self.mode = ("recv", 0)
        self.done: asyncio.Future | None = None

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        kind, n = self.mode
        if kind in ("send", "both"):
            w.write(b"d" * n)
        got = 0
        while got < (n if kind in ("recv", "both") else 0):
            data = await r.read(65536)
            if not data:
                break
            got += len(data)
        if self.done is not None and not self.done.done():
            self.done.set_result(time.monotonic())
        await w.drain()
        await r.read()
        w.close()


async def transfer(port: int, sink: Sink, kind: str, n: int) -> tuple[float, float]:
    """Returns (seconds up, seconds down) for this run (0 where not measured)."""
    loop = asyncio.get_running_loop()
    sink.mode = (kind, n)
    sink.done = loop.create_future()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    if kind in ("recv", "both"):
        w.write(b"u" * n)
    got = 0
    down = 0.0
    while got < (n if kind in ("send", "both") else 0):
        data = await r.read(65536)
        if not data:
            break
        got += len(data)
    if kind in ("send", "both"):
        down = time.monotonic() - t0
    up = (await sink.done) - t0 if kind in ("recv", "both") else 0.0
    w.write_eof()
    await r.read()
    w.close()
    return up, down


async def run(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "firmware"))
    from dialgate import config, link, log

    serial, fwd, isp = free_port(), free_port(), free_port()
    emu = subprocess.Popen([sys.executable, "-m", "host_tools.modem_emulator", "--serial", f"127.0.0.1:{serial}",
                            "--bps", str(a.bps), "--rtt-ms", str(a.rtt_ms), "--time-scale", "0.01",
                            "--forward", f"127.0.0.1:{fwd}=127.0.0.1:{isp}"], cwd=ROOT, stdout=subprocess.DEVNULL)
    sink = Sink()
    srv = await asyncio.start_server(sink.handle, "127.0.0.1", isp)
    log.LOG.configure("warn", "", 4096, True)
    try:
        await wait_port(serial)
        await wait_port(serial + 1)
        cfg = config.build({"board.name": "host", "hostname": "gw.office.test", "domains": ["office.test"],
                            "link.type": "emulated", "modem.port": f"emu://127.0.0.1:{serial}",
                            "modem.number": "5550100", "link.smtp": f"127.0.0.1:{fwd}", "modem.guard_ms": 50})
        lk = link.make_link(cfg)
        outcome = await lk.up()
        if outcome != link.UP:
            print(f"bench_link: dial failed: {outcome}")
            return 1
        bound = a.bps / 10
        n = int(bound * a.seconds)
        host, port = lk.smtp_addr
        print(f"link: {lk.describe()}; line-rate bound {bound:.0f} B/s (8N1), rtt {a.rtt_ms:g} ms, "
              f"{n} bytes per direction")
        rows = []
        up, _ = await transfer(port, sink, "recv", n)
        rows.append(("gateway -> ISP", up))
        _, down = await transfer(port, sink, "send", n)
        rows.append(("ISP -> gateway", down))
        up2, down2 = await transfer(port, sink, "both", n)
        rows.append(("both at once, up", up2))
        rows.append(("both at once, down", down2))
        for name, secs in rows:
            rate = n / secs
            print(f"  {name:20s} {n} B in {secs:7.3f} s = {rate:8.1f} B/s  ratio to bound {rate / bound:.4f}")
        await lk.down()
        worst = min(n / s for _, s in rows) / bound
        print(f"link efficiency at {a.bps} bps: worst ratio {worst:.4f} (target >= 0.98)")
        return 0
    finally:
        srv.close()
        emu.terminate()
        emu.wait(5)


# ---- whole dial sessions: dialgate and Postfix over the same emulated line ------------


def message(kind: str, n: int, to: str, size: int = MSG_SIZE) -> bytes:
    head = (f"From: {kind}{n}@example.net\r\nTo: {to}\r\nSubject: {kind} {n}\r\n"
            f"Message-ID: <{kind}{n}@bench.test>\r\n\r\n").encode()
    line = b"x" * 70 + b"\r\n"
    body = head + line * ((size - len(head)) // len(line))
    return body + b"-" * (size - len(body) - 2) + b"\r\n"


class LineWatch:
    """The emulator's control channel, time-stamped: DCD changes and the BYTES
    reports (twice a second), read by a thread."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.dcd: list[tuple[float, int]] = []
        self.bytes: list[tuple[float, int, int]] = [(time.monotonic(), 0, 0)]  # (t, up, down)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        buf = b""
        while True:
            try:
                d = self.sock.recv(4096)
            except OSError:
                return
            if not d:
                return
            buf += d
            while b"\n" in buf:
                ln, _, buf = buf.partition(b"\n")
                w = ln.decode("latin-1").split()
                now = time.monotonic()
                if len(w) == 2 and w[0] == "DCD":
                    self.dcd.append((now, int(w[1])))
                elif len(w) == 3 and w[0] == "BYTES":
                    self.bytes.append((now, int(w[1]), int(w[2])))

    def wait_dcd(self, value: int, after: float, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, v in self.dcd:
                if v == value and t >= after:
                    return t
            time.sleep(0.02)
        raise TimeoutError(f"no DCD {value} within {timeout} s")

    def octets_at(self, t: float) -> tuple[float, float]:
        """(up, down) octets on the line at time t, between two reports linearly.
        The counters restart at each call: only reports after the first are used."""
        pts = [p for p in self.bytes if p[1] + p[2] or p[0] <= t]
        prev = pts[0]
        for p in pts:
            if p[0] >= t:
                f = 0.0 if p[0] == prev[0] else (t - prev[0]) / (p[0] - prev[0])
                return prev[1] + (p[1] - prev[1]) * f, prev[2] + (p[2] - prev[2]) * f
            prev = p
        return float(prev[1]), float(prev[2])

    def total(self) -> tuple[int, int]:
        return self.bytes[-1][1], self.bytes[-1][2]

    def close(self) -> None:
        self.sock.close()


def wait_for(cond, timeout: float, what: str, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return time.monotonic()
        time.sleep(step)
    raise TimeoutError(f"bench_link: timed out waiting for {what}")


def hold_at_isp(isp, n: int) -> None:
    ctx = ssl.create_default_context(cafile=isp.ca_file)
    with smtplib.SMTP("127.0.0.1", isp.ports["submission"]) as s:
        s.starttls(context=ctx)
        s.login("gw", "secret")
        for i in range(n):
            to = "alice@office.test" if i % 2 == 0 else "carol@office.test"
            s.sendmail(f"in{i}@example.net", [to], message("in", i, to))
    wait_for(lambda: len(set(isp.queued())) == n, 60, "Postfix to hold the inbound mail", 0.3)


def dialgate_session(work: Path, bps: int, rtt: float) -> dict:
    """One scheduler-started call of a gateway process: 50 out, ETRN, 50 in, hang-up."""
    sys.path.insert(0, str(ROOT / "tests" / "host"))
    from modem_emu import ModemEmulator

    from gateway import Gateway
    from gateway import free_port as fp
    from host_tools.isp_postfix import IspPostfix

    gw_smtp, rev, fwd = fp(), fp(), fp()
    isp = IspPostfix(work / "isp", mailboxes=("bob@example.com",), hold_domains=("office.test",),
                     hold_nexthop=f"127.0.0.1:{rev}").start()
    emu = gw = watch = None
    try:
        emu = ModemEmulator(["answer"], bps=bps, rtt_ms=rtt, scale=EMU_SCALE,
                            forward={fwd: isp.ports["submission"]}, reverse={rev: gw_smtp})
        (work / "gw").mkdir()
        gw = Gateway(work / "gw", {
            "smtp.listen": [f"127.0.0.1:{gw_smtp}"], "log.level": "warn",
            "link.type": "emulated", "link.smtp": f"127.0.0.1:{fwd}",
            "modem.port": emu.url, "modem.guard_ms": 100, "modem.redial": 0, "modem.connect_timeout": 30,
            "relay.smarthost": f"127.0.0.1:{isp.ports['submission']}", "relay.tls": "starttls",
            "relay.ca_file": isp.ca_file, "relay.tls_name": "isp.test", "relay.user": "gw",
            "relay.password": "secret", "relay.timeout": 120,
            "session.etrn": ["office.test"], "session.idle_hangup": IDLE, "session.min_online": 3,
            "session.retry_delay": 600, "schedule.queue_count": N_MSG, "schedule.min_gap": 0,
        })
        for u in ("alice", "carol"):
            ok, lines, _ = gw.command(f"user add {u} {u}-secret")
            if not ok:
                raise RuntimeError(f"user add: {lines}")
        hold_at_isp(isp, N_MSG)
        watch = LineWatch(emu.control)
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", gw_smtp) as s:  # the 50th queued message triggers the call
            for i in range(N_MSG):
                s.sendmail("alice@office.test", ["bob@example.com"], message("out", i, "bob@example.com"))
        t_up = watch.wait_dcd(1, t0, 60)

        def inbound() -> int:
            ok, lines, _ = gw.command("user list")
            return sum(int(m.group(1)) for ln in lines for m in [re.search(r"(\d+) messages", ln)] if m)

        t_out = wait_for(lambda: len(isp.delivered("bob@example.com")) >= N_MSG, 900, "the outbound mail at the ISP")
        t_in = wait_for(lambda: inbound() >= N_MSG, 900, "the inbound mail in the maildrops", 0.1)
        t_down = watch.wait_dcd(0, t_in, IDLE + 60)
        time.sleep(0.3)
        (up, down), (oup, odown) = watch.total(), watch.octets_at(t_out)
        ok, lines, _ = gw.command("stats csv")
        rows = [ln.split(",") for ln in lines if ln and ln[0].isdigit()]
        online_s = int(rows[-1][6]) if rows else -1
        return {"out": (t_out - t_up, oup, odown), "in": (t_in - t_out, up - oup, down - odown),
                "call": (t_in - t_up, up, down), "online_s": online_s, "linger": t_down - t_in,
                "log": isp.log_text()}
    finally:
        if watch is not None:
            watch.close()
        for stop in ((gw.stop if gw else None), (emu.stop if emu else None), isp.stop):
            if stop is not None:
                try:
                    stop()
                except Exception as e:  # noqa: BLE001 - stop the rest whatever happened
                    print(f"bench_link: stopping: {e!r}")


def postfix_session(work: Path, bps: int, rtt: float, tls_reuse: bool = False) -> dict:
    """Postfix as the office gateway: 50 held, the line dialled, postqueue -f, all 50 at the ISP."""
    sys.path.insert(0, str(ROOT / "tests" / "host"))
    from modem_emu import ModemEmulator

    from gateway import free_port as fp
    from host_tools.isp_postfix import IspPostfix, OfficePostfix

    fwd = fp()
    isp = IspPostfix(work / "isp", mailboxes=("bob@example.com",)).start()
    office = emu = watch = dte = None
    try:
        emu = ModemEmulator(["answer"], bps=bps, rtt_ms=rtt, scale=EMU_SCALE, forward={fwd: isp.ports["submission"]})
        office = OfficePostfix(f"127.0.0.1:{fwd}", "gw", "secret", isp.ca_file, tls_reuse=tls_reuse,
                               root=work / "office", users={"alice": "alice-secret"}).start()
        with smtplib.SMTP("127.0.0.1", office.ports["submission"]) as s:
            s.starttls(context=ssl._create_unverified_context())  # noqa: S323 - our own test certificate
            s.login("alice", "alice-secret")
            for i in range(N_MSG):
                s.sendmail("alice@office.test", ["bob@example.com"], message("out", i, "bob@example.com"))
        wait_for(lambda: len(set(office.queued())) == N_MSG, 60, "the office Postfix to queue them", 0.3)
        watch = LineWatch(emu.control)
        dte = socket.create_connection(("127.0.0.1", emu.serial))  # what a dial script does
        dte.sendall(b"ATDT5550100\r")
        t_up = watch.wait_dcd(1, 0, 60)
        office.flush_queue()
        t_out = wait_for(lambda: len(isp.delivered("bob@example.com")) >= N_MSG, 900, "Postfix's mail at the ISP")
        time.sleep(3)  # its cached connections say QUIT (smtp_connection_cache_time_limit 2 s)
        up, down = watch.total()
        return {"out": (t_out - t_up, up, down), "log": isp.log_text()}
    finally:
        if dte is not None:
            dte.close()  # DTR off: the modem hangs up
        if watch is not None:
            watch.close()
        for stop in ((office.stop if office else None), (emu.stop if emu else None), isp.stop):
            if stop is not None:
                try:
                    stop()
                except Exception as e:  # noqa: BLE001
                    print(f"bench_link: stopping: {e!r}")


def sessions(rtts: list[float], scale: float, out: str) -> int:
    from host_tools import isp_postfix, pkgs

    pkgs.PROGRAMS.update(isp_postfix.PROGRAMS)
    why = pkgs.ensure(*isp_postfix.PACKAGES)
    if why or __import__("os").geteuid() != 0:
        print(f"bench_link: no session figures ({why or 'Postfix must start as root'})")
        return 0
    bps = int(BPS * scale)
    rows: list[tuple] = []
    notes: list[str] = []
    t_start = time.monotonic()
    payload = N_MSG * MSG_SIZE
    for rtt in rtts:
        r = rtt / scale
        work = Path(tempfile.mkdtemp(prefix="bench-link-"))
        work.chmod(0o755)
        try:
            dg = dialgate_session(work / "dg", bps, r)
            pf = postfix_session(work / "pf", bps, r)
            pr = postfix_session(work / "pr", bps, r, tls_reuse=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        h = HANDSHAKE / scale
        figs = [(f"dialgate, the whole call: 50 out, ETRN, 50 in (+ handshake), rtt {rtt:g} ms", dg["call"], h,
                 2 * payload),
                (f"dialgate, outbound: 50 relayed (one connection, BDAT), rtt {rtt:g} ms", dg["out"], 0, payload),
                (f"dialgate, inbound: Postfix's flush after ETRN, rtt {rtt:g} ms", dg["in"], 0, payload),
                (f"Postfix as the office gateway, outbound: 50 relayed (Debian defaults), rtt {rtt:g} ms",
                 pf["out"], 0, payload),
                (f"Postfix as the office gateway, outbound, smtp_tls_connection_reuse, rtt {rtt:g} ms",
                 pr["out"], 0, payload)]
        for label, (secs, up, down), hs, pay in figs:
            t = secs + hs
            bound = (up + down) * 10 / bps + hs
            row = (label, up, down, t, bound, t / bound, t / (pay * 10 / bps + hs))
            rows.append(row)
            print("  " + fmt_row(row), flush=True)
        conns = [len(re.findall(r"postfix/submission/smtpd\[\d+\]: connect from", x["log"])) for x in (pf, pr)]
        verbs = ["BDAT" if "bdat=" in x["log"] else "DATA" for x in (pf, pr)]
        hold = len(re.findall(r"postfix/[^ ]*\[\d+\]: [0-9A-F]+: to=<[^>]*@office\.test>.*conn_use=", dg["log"]))
        hold_sent = len(re.findall(r"to=<[^>]*@office\.test>.*status=sent", dg["log"]))
        notes.append(f"rtt {rtt:g} ms: dialgate's cost record says {dg['online_s']} s online, {dg['linger']:.1f} s "
                     f"of it after the last message (session.idle_hangup {IDLE} s). Of the ISP's {hold_sent} deliveries "
                     f"after ETRN, {hold} went over a connection it had used before (conn_use). Postfix as the office gateway opened "
                     f"{conns[0]} connection(s) to the smarthost with Debian's defaults and {conns[1]} with TLS "
                     f"connection reuse, sending {verbs[0]} / {verbs[1]}.")
    took = time.monotonic() - t_start
    text = session_table(rows, notes, bps, scale, took)
    print(text)
    if out:
        write_section(Path(out), text)
        print(f"written to {out}")
    return 0


def fmt_row(r: tuple) -> str:
    label, up, down, secs, bound, q, qp = r
    return f"| {label} | {up:,.0f} / {down:,.0f} | {secs:.1f} | {bound:.1f} | {q:.3f}× | {qp:.3f}× |"


def session_table(rows: list[tuple], notes: list[str], bps: int, scale: float, took: float) -> str:
    scaled = (f" This run: the line at {bps} bps with round trips divided by {scale:g} (`--scale`; the round "
              "trips in the table are the 33,600 bps ones): every line time shrinks by that factor and the "
              "ratios stay, except that the peers' own processing time does not shrink (harsher)."
              if scale != 1 else "")
    head = f"""{BEGIN}

## Link economy in a dial session

Written by `make bench` (host_tools/bench_link.py); do not edit by hand. One call
through the modem emulator at {BPS:,} bps (8N1) with a real Postfix as the ISP
(smarthost on its submission port: STARTTLS, AUTH; holding {N_MSG} messages for
office.test until ETRN), {N_MSG} messages of {MSG_SIZE} octets each way. Seconds on
the line against the **line-rate bound**, octets x 10 / bps with the octets both
ways as the emulator counted them (TLS, commands and replies included), and
against the **payload bound**, the messages' own octets x 10 / bps; the whole
call adds the dial handshake ({HANDSHAKE:g} s, emulated) to both sides of each
ratio, as online time is billed. The line is full duplex, so where both
directions are busy at once a ratio to the line-rate bound can be below 1.
Times come from the emulator's DCD and byte reports (every 0.5 s, interpolated)
and from polling the mailboxes every 50–100 ms.{scaled} Run took {took:.0f} s.

| what | octets up / down | s on the line | line-rate bound, s | ratio | ratio to payload bound |
|---|---|---|---|---|---|
"""
    return (head + "\n".join(fmt_row(r) for r in rows) + "\n\n" + "".join(f"- {n}\n" for n in notes)
            + "\n" + END + "\n")


def write_section(path: Path, text: str) -> None:
    """Put the section into `path`, replacing an earlier one (bench_side keeps it)."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        old = old[: old.index(BEGIN)] + old[old.index(END) + len(END) :].lstrip("\n")
    path.write_text(old.rstrip("\n") + "\n\n" + text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m host_tools.bench_link", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bps", type=int, default=33600)
    ap.add_argument("--seconds", type=float, default=20.0, help="line time per transfer")
    ap.add_argument("--rtt-ms", type=float, default=150.0)
    ap.add_argument("--session", action="store_true", help="only the dial sessions (make bench runs both)")
    ap.add_argument("--bulk", action="store_true", help="only the bulk transfers")
    ap.add_argument("--rtts", default="150,600", help="round trips of the session runs, ms")
    ap.add_argument("--scale", type=float, default=2.0,
                    help="line rate x S, round trips / S (sessions; 2 keeps make bench under its 20 minutes)")
    ap.add_argument("--out", default=str(OUT), help="markdown file for the session table ('' for none)")
    a = ap.parse_args(argv)
    rc = 0
    if not a.session:
        rc = asyncio.run(run(a))
    if not a.bulk:
        rc |= sessions([float(x) for x in a.rtts.split(",")], a.scale, a.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
