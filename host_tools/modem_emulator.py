"""A Hayes modem on a TCP port, with its telephone line to an emulated ISP.

    python3 -m host_tools.modem_emulator [--serial 127.0.0.1:2700] [--control PORT]
        [--bps 33600] [--rtt-ms 150] [--time-scale 1.0] [--scenario SPEC ...]
        [--forward LISTEN=TARGET ...] [--reverse LISTEN=TARGET ...]

The serial side is a TCP socket (pyserial `socket://HOST:PORT`, or the gateway's
`emu://HOST:PORT`); modem control lines travel on a side channel, one text line
each, on the control port (default: serial port + 1):

    DTE -> modem:  DTR 0|1, RTS 0|1, SCENARIO SPEC, DROP, STATUS
    modem -> DTE:  DCD 0|1, DSR 0|1, RI 0|1, CTS 1, BYTES UP DOWN, STATUS ...

STATUS also counts the DTE's DTR drops (`dtr_drops`: "DTR 0" lines received,
`dtr_hangups`: those that ended a call or a dial under &D2/&D3), so a test can
check that the gateway hung up by dropping DTR (tests/host/test_reliability_link.py).

The modem answers AT commands (V.250): echo (E), result forms (V0/V1, Q, X),
S-registers (S7 carrier wait, S8 comma pause, S12 escape guard time), &C1/&D0-3,
&F, Z, H, O, I, D (T/P/W/,/;/@), +CGDCONT, and `+++` with guard time. While a
call is up, every --forward (gateway side listens) and --reverse (ISP side
listens) rule carries TCP through the paced line (see modem_line.py). With
neither given, the `host` profile's wiring: gateway 127.0.0.1:2526 -> ISP SMTP
127.0.0.1:2600, and ISP 127.0.0.1:2625 -> gateway SMTP 127.0.0.1:2525.

Scenarios, one per dial (the last repeats); `+` joins modifiers:
    answer | busy | no-dialtone | no-answer | no-carrier | silent | dead | stuck
    modifiers: garbage, ring, drop-bytes=N, drop-after=SECONDS, handshake=SECONDS
e.g. --scenario busy --scenario answer+drop-bytes=20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass, field

from host_tools.modem_line import Forward, Line, parse_forward, parse_hostport

KINDS = ("answer", "busy", "no-dialtone", "no-answer", "no-carrier", "silent", "dead", "stuck")
# V.250 §5.7.1 Table 1 and the Hayes/USR CONNECT <rate> extensions
NUMERIC = {"OK": 0, "CONNECT": 1, "RING": 2, "NO CARRIER": 3, "ERROR": 4, "NO DIALTONE": 6, "BUSY": 7,
           "NO ANSWER": 8}
NUMERIC_RATE = {1200: 5, 2400: 10, 4800: 11, 9600: 12, 7200: 13, 12000: 14, 14400: 15, 19200: 16,
                38400: 17, 57600: 18}
NOISE = b"\x00\xfe~}#\x81\x7f\xffNO CARR\x08\x08 \r\n\x1b[0m~~\r"
DEFAULT_S = {0: 0, 2: 43, 3: 13, 4: 10, 5: 8, 6: 2, 7: 50, 8: 2, 10: 14, 12: 50}


@dataclass
class Scenario:
    kind: str = "answer"
    garbage: bool = False
    ring: bool = False
    drop_bytes: int = 0
    drop_after: float = 0.0
    handshake: float | None = None

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        sc = cls()
        for part in spec.split("+"):
            name, _, val = part.strip().partition("=")
            if name in KINDS:
                sc.kind = name
            elif name == "garbage":
                sc.garbage = True
            elif name == "ring":
                sc.ring = True
            elif name == "drop-bytes":
                sc.drop_bytes = int(val)
            elif name == "drop-after":
                sc.drop_after = float(val)
            elif name == "handshake":
                sc.handshake = float(val)
            else:
                raise ValueError(f"scenario {spec!r}: unknown part {part!r} (kinds: {', '.join(KINDS)})")
        return sc


@dataclass
class Settings:
    bps: int = 33600
    rtt_ms: float = 150.0
    scale: float = 1.0
    connect: str = "CONNECT {bps}/ARQ/V34/LAPM/V42BIS"
    handshake: float = 12.0  # seconds from answer to CONNECT (V.34 training), before scaling
    scenarios: list[Scenario] = field(default_factory=lambda: [Scenario()])
    ring_every: float = 0.0


class Modem:
    """The modem: command interpreter, call state, control lines. I/O goes through
    `send` (to the DTE) and `lines` (to every control client)."""

    def __init__(self, st: Settings, line: Line) -> None:
        self.st = st
        self.line = line
        line.on_bytes = self._line_bytes
        self.dte: asyncio.StreamWriter | None = None
        self.controls: dict[asyncio.StreamWriter, bool | None] = {}  # client -> its DTR (None: never said)
        self.dtr = False
        self.state = "command"  # command | dialing | online | online-command
        self.dials = 0
        self.scenario = st.scenarios[0]
        self.cmd = bytearray()
        self.last_cmd = b""
        self.deaf = False
        self.stuck_armed = False
        self.task: asyncio.Task | None = None  # dialing or drop timer
        self.escape: asyncio.TimerHandle | None = None
        self.plus = 0
        self.last_rx = 0.0
        self.rate_text = ""
        self.call_bytes = 0
        self.calls = 0
        self.dtr_drops = 0  # "DTR 0" lines from control clients
        self.dtr_hangups = 0  # DTR drops that ended a call or a dial (&D2/&D3)
        self.factory()

    # ---- settings ---------------------------------------------------------

    def factory(self) -> None:
        self.s = dict(DEFAULT_S)
        self.echo = True
        self.verbose = True
        self.quiet = False
        self.x = 4
        self.amp_c = 1
        self.amp_d = 2
        self.pdp: dict[int, str] = {}

    def sc(self, seconds: float) -> float:
        return seconds * self.st.scale

    def guard(self) -> float:
        return self.sc(self.s[12] / 50.0)  # S12 in fiftieths of a second

    # ---- output -----------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.dte is not None and not self.dte.is_closing():
            self.dte.write(data)

    def lines(self, text: str) -> None:
        for w in list(self.controls):
            if not w.is_closing():
                w.write(text.encode() + b"\n")

    def result(self, name: str, rate_text: str = "") -> None:
        """A result code in the form V/Q/X ask for (V.250 §6.2.5-6.2.6, §6.2.9)."""
        if self.quiet:
            return
        if self.x == 0 and name in ("BUSY", "NO DIALTONE"):
            name = "NO CARRIER"
        elif self.x == 1 and name in ("BUSY", "NO DIALTONE"):
            name = "NO CARRIER"
        elif self.x == 2 and name == "BUSY":
            name = "NO CARRIER"
        elif self.x == 3 and name == "NO DIALTONE":
            name = "NO CARRIER"
        if self.scenario.garbage and self.state != "online":
            self.send(NOISE)
        if self.verbose:
            text = name
            if name == "CONNECT" and self.x > 0 and rate_text:
                text = rate_text
            self.send(b"\r\n" + text.encode() + b"\r\n")
        else:
            code = NUMERIC[name]
            if name == "CONNECT" and self.x > 0:
                code = NUMERIC_RATE.get(self.st.bps, 1)
            self.send(b"%d\r" % code)

    def set_dcd(self, on: bool) -> None:
        self.lines(f"DCD {int(on or self.amp_c == 0)}")

    # ---- DTE side ---------------------------------------------------------

    def attach(self, w: asyncio.StreamWriter) -> None:
        if self.dte is not None:
            self.dte.close()
        self.dte = w
        self.update_dtr()

    def detach(self, w: asyncio.StreamWriter) -> None:
        if self.dte is w:
            self.dte = None
            self.update_dtr()

    def update_dtr(self) -> None:
        said = [v for v in self.controls.values() if v is not None]
        dtr = self.dte is not None and (all(said) if said else True)
        if dtr != self.dtr:
            self.dtr = dtr
            if not dtr:
                self.dtr_dropped()

    def dtr_dropped(self) -> None:
        """&D (V.250 §6.2.9): 0 ignore, 1 to online-command, 2 hang up, 3 hang up and reset."""
        if self.amp_d == 0:
            return
        if self.amp_d == 1 and self.state == "online":
            self.state = "online-command"
            self.result("OK")
            return
        if self.state != "command":
            self.dtr_hangups += 1
            asyncio.ensure_future(self.hangup("NO CARRIER"))
        if self.amp_d == 3:
            self.factory()

    def received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.deaf or self.scenario.kind == "dead":
            return
        if self.state == "online":
            self.online_bytes(data, now)
            return
        if self.state == "dialing":
            # V.250 §6.3.1: any character from the DTE aborts a dial in progress
            asyncio.ensure_future(self.hangup("NO CARRIER"))
            return
        for b in data:
            self.command_byte(b)
        self.last_rx = now

    def command_byte(self, b: int) -> None:
        if self.echo:
            self.send(bytes((b,)))
        if b == self.s[3]:
            line = bytes(self.cmd)
            self.cmd.clear()
            self.command_line(line)
        elif b == self.s[5]:
            if self.cmd:
                self.cmd.pop()
        elif b == self.s[4]:
            pass
        elif len(self.cmd) < 255:
            self.cmd.append(b)
            if bytes(self.cmd[-2:]).upper() == b"A/":  # repeat last command line
                self.cmd.clear()
                if self.echo:
                    self.send(b"\r")
                self.command_line(self.last_cmd)

    # ---- data phase and escape --------------------------------------------

    def online_bytes(self, data: bytes, now: float) -> None:
        g = self.guard()
        for b in data:
            if b == self.s[2] and (self.plus > 0 or now - self.last_rx >= g):
                self.plus += 1
            else:
                self.plus = 0
            self.last_rx = now
        if self.escape is not None:
            self.escape.cancel()
            self.escape = None
        if self.plus == 3:
            # V.250 §6.3.5 / Hayes: +++ with guard time of silence before and after
            self.escape = asyncio.get_running_loop().call_later(g, self.escaped)
        elif self.plus > 3:
            self.plus = 0
        self._line_bytes(len(data))  # the serial data phase counts against the line too

    def escaped(self) -> None:
        self.escape = None
        self.plus = 0
        if self.state == "online":
            self.state = "online-command"
            self.result("OK")

    def _line_bytes(self, n: int) -> None:
        self.call_bytes += n
        d = self.scenario.drop_bytes
        if d and self.call_bytes >= d and self.state in ("online", "online-command"):
            asyncio.ensure_future(self.hangup("NO CARRIER"))

    # ---- commands ---------------------------------------------------------

    def command_line(self, line: bytes) -> None:
        text = line.decode("latin-1").strip()
        i = text.upper().find("AT")
        if i < 0:
            return  # not a command line: modems ignore it
        self.last_cmd = line
        body = text[i + 2:]
        try:
            ok = self.execute(body)
        except (ValueError, IndexError):
            ok = False
        if ok is True:
            self.result("OK")
        elif ok is False:
            self.result("ERROR")

    def execute(self, body: str) -> bool | None:  # noqa: C901 - one branch per V.250 command
        """Run one command line. True -> OK, False -> ERROR, None -> the command answers itself."""
        up = body.upper()
        i = 0
        n = len(up)

        def num(default: int = 0) -> int:
            nonlocal i
            j = i
            while j < n and up[j].isdigit():
                j += 1
            v = int(up[i:j]) if j > i else default
            i = j
            return v

        info: list[str] = []
        while i < n:
            c = up[i]
            i += 1
            if c == " ":
                continue
            if c in "EVQ":
                v = num()
                if v > 1:
                    return False
                if c == "E":
                    self.echo = v == 1
                elif c == "V":
                    self.verbose = v == 1
                else:
                    self.quiet = v == 1
            elif c == "X":
                v = num()
                if v > 4:
                    return False
                self.x = v
            elif c in "LMBNWY":
                num()
            elif c == "Z":
                num()
                self.factory()
            elif c == "H":
                if num() != 0:
                    return False
                if self.state != "command":
                    asyncio.ensure_future(self.hangup(None))  # it answers OK once the line is down
                    return None
            elif c == "O":
                num()
                if self.state != "online-command":
                    return False
                self.state = "online"
                self.result("CONNECT", self.rate_text)
                return None
            elif c == "I":
                v = num()
                info.append({0: "33600", 3: "dialgate modem emulator"}.get(v, "dialgate"))
            elif c == "A":
                return False  # no incoming call to answer in this emulation
            elif c == "D":
                if self.state != "command":
                    return False
                self.task = asyncio.ensure_future(self.dial(body[i:]))
                return None
            elif c == "S":
                reg = num()
                if i < n and up[i] == "=":
                    i += 1
                    self.s[reg] = num()
                elif i < n and up[i] == "?":
                    i += 1
                    info.append(f"{self.s.get(reg, 0):03d}")
                else:
                    return False
            elif c == "&":
                k = up[i]
                i += 1
                v = num()
                if k == "C":
                    self.amp_c = v
                elif k == "D":
                    self.amp_d = v
                elif k == "F":
                    self.factory()
                elif k not in "KWVSQ":
                    return False
            elif c == "+":
                return self.extended(body[i:], info)
            else:
                return False
        for t in info:
            self.send(b"\r\n" + t.encode() + b"\r\n" if self.verbose else t.encode() + b"\r\n")
        return True

    def extended(self, rest: str, info: list[str]) -> bool:
        """3GPP TS 27.007 commands a GSM modem answers: +CGDCONT, +CSQ, +CREG, +GMI."""
        name, _, arg = rest.partition("=")
        name = name.upper().strip()
        if name == "CGDCONT" and arg:
            parts = arg.split(",", 2)
            self.pdp[int(parts[0])] = arg
        elif name == "CGDCONT?":
            info.extend(f"+CGDCONT: {v}" for v in self.pdp.values())
        elif name == "CSQ":
            info.append("+CSQ: 20,99")
        elif name == "CREG?":
            info.append("+CREG: 0,1")
        elif name in ("GMI", "CGMI"):
            info.append("dialgate")
        else:
            return False
        for t in info:
            self.send(b"\r\n" + t.encode() + b"\r\n")
        return True

    # ---- calls ------------------------------------------------------------

    async def dial(self, dialstring: str) -> None:
        """Dial (V.250 §6.3.1) and play this call's scenario."""
        self.state = "dialing"
        sc = self.scenario = self.st.scenarios[min(self.dials, len(self.st.scenarios) - 1)]
        self.dials += 1
        self.lines(f"DIAL {self.dials} {dialstring.strip()}")
        ds = dialstring.upper()
        pulse = "P" in ds
        digits = sum(1 for ch in ds if ch.isdigit() or ch in "*#ABCD")
        pauses = ds.count(",")
        stay = ds.rstrip().endswith(";")
        try:
            if sc.kind == "silent":
                await asyncio.Event().wait()  # the modem never says anything again
            await asyncio.sleep(self.sc(1.0))  # dial tone detection
            if sc.kind == "no-dialtone":
                await asyncio.sleep(self.sc(2.0))
                return self.end_dial("NO DIALTONE")
            await asyncio.sleep(self.sc(digits * (0.5 if pulse else 0.1) + pauses * self.s[8]))
            if stay:
                self.state = "command"
                return self.result("OK")
            if sc.ring:
                self.result("RING")  # an incoming call collides with ours: unsolicited
            s7 = self.sc(self.s[7])
            if sc.kind == "busy":
                await asyncio.sleep(self.sc(2.0))
                return self.end_dial("BUSY")
            if sc.kind == "no-answer":
                await asyncio.sleep(s7)
                return self.end_dial("NO ANSWER" if self.x >= 3 else "NO CARRIER")
            handshake = self.sc(sc.handshake if sc.handshake is not None else self.st.handshake)
            if sc.kind == "no-carrier" or handshake > s7:
                await asyncio.sleep(s7)  # S7: give up waiting for carrier
                return self.end_dial("NO CARRIER")
            await asyncio.sleep(handshake)
            try:
                await self.line.connect()
            except OSError as e:
                print(f"modem emulator: cannot open a forwarder: {e}", file=sys.stderr, flush=True)
                await self.line.disconnect()
                return self.end_dial("NO CARRIER")
            self.call_bytes = 0
            self.calls += 1
            self.state = "online"
            self.last_rx = asyncio.get_running_loop().time()
            self.rate_text = self.st.connect.format(bps=self.st.bps)
            self.set_dcd(True)
            self.result("CONNECT", self.rate_text)
            self.task = None
            asyncio.ensure_future(self.report())
            if sc.drop_after:
                self.task = asyncio.ensure_future(self.drop_later(self.sc(sc.drop_after)))
        except asyncio.CancelledError:
            pass

    def end_dial(self, name: str) -> None:
        self.state = "command"
        self.task = None
        self.result(name)

    async def drop_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.task = None
        await self.hangup("NO CARRIER")

    async def report(self) -> None:
        while self.state in ("online", "online-command"):
            self.lines(f"BYTES {self.line.up.bytes} {self.line.down.bytes}")
            await asyncio.sleep(0.5)

    async def hangup(self, result: str | None) -> None:
        """End the call or the dial attempt: carrier off, line gone, a result."""
        if self.state == "command":
            return
        was = self.state
        self.state = "command"
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.task = None
        if self.escape is not None:
            self.escape.cancel()
            self.escape = None
        if was != "dialing":
            await self.line.disconnect()
            self.lines(f"BYTES {self.line.up.bytes} {self.line.down.bytes}")
            self.set_dcd(False)
        if result is None:
            self.result("OK")
        else:
            self.result(result)

    async def ring_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sc(self.st.ring_every))
            if self.state == "command":
                self.lines("RI 1")
                self.result("RING")
                await asyncio.sleep(self.sc(1.0))
                self.lines("RI 0")

    # ---- control channel --------------------------------------------------

    async def control_line(self, w: asyncio.StreamWriter, text: str) -> None:
        word, _, arg = text.strip().partition(" ")
        word = word.upper()
        if word == "DTR":
            on = arg.strip() == "1"
            if not on:
                self.dtr_drops += 1
            self.controls[w] = on
            if self.deaf and not on:
                self.stuck_armed = True
            elif self.deaf and self.stuck_armed:
                self.deaf = False  # a DTR toggle brings the wedged modem back
                self.lines("RESET by DTR toggle")
            self.update_dtr()
        elif word == "RTS":
            pass
        elif word == "SCENARIO":
            self.st.scenarios = [Scenario.parse(s) for s in arg.split(",") if s.strip()]
            self.dials = 0
            self.scenario = self.st.scenarios[0]
            self.deaf = self.scenario.kind == "stuck"
            self.stuck_armed = False
            self.lines("SCENARIO " + arg.strip())
        elif word == "DROP":
            await self.hangup("NO CARRIER")
        elif word == "STATUS":
            w.write((f"STATUS {self.state} dtr={int(self.dtr)} calls={self.calls} dials={self.dials} "
                     f"up={self.line.up.bytes} down={self.line.down.bytes} dtr_drops={self.dtr_drops} "
                     f"dtr_hangups={self.dtr_hangups}\n").encode())


async def serve(st: Settings, serial: tuple[str, int], control: tuple[str, int], forwards: list[Forward]) -> None:
    line = Line(st.bps, st.rtt_ms, forwards)
    m = Modem(st, line)
    m.deaf = m.scenario.kind == "stuck"

    async def on_serial(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        m.attach(w)
        try:
            while True:
                data = await r.read(4096)
                if not data:
                    break
                m.received(data)
        except OSError:
            pass
        finally:
            m.detach(w)
            w.close()

    async def on_control(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        m.controls[w] = None
        w.write(f"DSR 1\nCTS 1\nDCD {int(m.state in ('online', 'online-command') or m.amp_c == 0)}\n".encode())
        try:
            while True:
                text = await r.readline()
                if not text:
                    break
                await m.control_line(w, text.decode("latin-1"))
        except (OSError, ValueError):
            pass
        finally:
            m.controls.pop(w, None)
            m.update_dtr()
            w.close()

    s1 = await asyncio.start_server(on_serial, serial[0], serial[1], reuse_address=True)
    s2 = await asyncio.start_server(on_control, control[0], control[1], reuse_address=True)
    if st.ring_every:
        asyncio.ensure_future(m.ring_loop())
    fw = "; ".join(str(f) for f in forwards) or "none"
    print(f"modem emulator: serial {serial[0]}:{serial[1]} (emu://{serial[0]}:{serial[1]}), "
          f"control {control[0]}:{control[1]}, {st.bps} bps, rtt {st.rtt_ms:g} ms, "
          f"time scale {st.scale:g}, forwards: {fw}", flush=True)
    async with s1, s2:
        await asyncio.gather(s1.serve_forever(), s2.serve_forever())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m host_tools.modem_emulator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serial", default="127.0.0.1:2700", help="HOST:PORT of the serial side")
    ap.add_argument("--control", default=None, help="HOST:PORT of the control-line channel (serial port + 1)")
    ap.add_argument("--bps", type=int, default=33600, help="line rate; data is paced at bps/10 bytes/s")
    ap.add_argument("--rtt-ms", type=float, default=150.0, help="round-trip delay of the line")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="factor on modem timings (handshake, S7, S8, S12, rings, drop-after); 0.001 in tests")
    ap.add_argument("--handshake", type=float, default=12.0, help="seconds from answer to CONNECT (unscaled)")
    ap.add_argument("--connect", default="CONNECT {bps}/ARQ/V34/LAPM/V42BIS", help="verbose CONNECT form")
    ap.add_argument("--scenario", action="append", default=[], help="scenario for the next dial (repeatable)")
    ap.add_argument("--ring-every", type=float, default=0.0, help="unsolicited RING every N s while idle")
    ap.add_argument("--forward", action="append", default=[], metavar="LISTEN=TARGET",
                    help="gateway side listens on LISTEN, reaches the ISP's TARGET while a call is up")
    ap.add_argument("--reverse", action="append", default=[], metavar="LISTEN=TARGET",
                    help="ISP side listens on LISTEN, reaches the gateway's TARGET while a call is up")
    a = ap.parse_args(argv)
    try:
        specs = [s for arg in a.scenario for s in arg.split(",") if s.strip()] or ["answer"]
        st = Settings(bps=a.bps, rtt_ms=a.rtt_ms, scale=a.time_scale, connect=a.connect, handshake=a.handshake,
                      scenarios=[Scenario.parse(s) for s in specs], ring_every=a.ring_every)
        serial = parse_hostport(a.serial)
        control = parse_hostport(a.control) if a.control else (serial[0], serial[1] + 1)
        if not a.forward and not a.reverse:  # the `host` profile's wiring (docs/modem.md)
            a.forward, a.reverse = ["127.0.0.1:2526=127.0.0.1:2600"], ["127.0.0.1:2625=127.0.0.1:2525"]
        forwards = [parse_forward(s, True) for s in a.forward] + [parse_forward(s, False) for s in a.reverse]
    except ValueError as e:
        print(f"modem emulator: {e}", file=sys.stderr)
        return 2
    if a.bps < 10:
        print("modem emulator: --bps must be at least 10", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(st, serial, control, forwards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
