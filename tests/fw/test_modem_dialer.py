"""The async dialer over a fake port, on both runtimes: redial with backoff and a
cap, the reset of a deaf modem, hang-up by DTR and the +++/ATH0 fallback."""

import asyncio

import fwtest
from dialgate import compat, modem
from dialgate.modem_dialer import Dialer
from dialgate.modem_profiles import ModemSettings


class FakeModem:
    """A port whose far end is a scripted Hayes modem. `results`: one dial result
    per call (the last repeats); `deaf`: ignore everything until a DTR toggle;
    `honours_dtr`: &D2 (False: &D0, only +++/ATH0 hangs up)."""

    has_dtr = True

    def __init__(self, results, deaf=False, honours_dtr=True):
        self.results = results
        self.deaf = deaf
        self.honours_dtr = honours_dtr
        self.out = bytearray()
        self.inbuf = bytearray()
        self.sent = []
        self.dials = []
        self.dtr = True
        self.online = False
        self.command_mode = True
        self.plus = 0
        self.times = []

    def read_into(self, buf):
        n = min(len(buf), len(self.out))
        buf[:n] = self.out[:n]
        self.out[:n] = b""
        return n

    def write(self, data):
        if self.deaf:
            return
        if not self.command_mode:
            if data == b"+++":
                self.command_mode = True
                self.out.extend(b"\r\nOK\r\n")
            return
        self.inbuf.extend(data)
        while b"\r" in self.inbuf:
            i = self.inbuf.find(b"\r")
            cmd = bytes(self.inbuf[:i]).decode()
            self.inbuf[: i + 1] = b""
            self.command(cmd)

    def command(self, cmd):
        self.sent.append(cmd)
        if cmd.startswith("ATD"):
            self.dials.append(compat.ticks_ms())
            r = self.results[min(len(self.dials) - 1, len(self.results) - 1)]
            if r is None:
                return  # silence
            self.out.extend(b"\r\n" + r + b"\r\n")
            if r.startswith(b"CONNECT"):
                self.online = True
                self.command_mode = False
        elif cmd.startswith("ATH"):
            self.online = False
            self.out.extend(b"\r\nOK\r\n")
        elif cmd.startswith("AT"):
            self.out.extend(b"\r\nOK\r\n")

    def set_dtr(self, on):
        if not on and self.dtr:
            if self.deaf:
                self.deaf = False  # the reset we wanted
            elif self.honours_dtr and self.online:
                self.online = False
                self.command_mode = True
                self.out.extend(b"\r\nNO CARRIER\r\n")
        self.dtr = on

    def carrier(self):
        return self.online

    def close(self):
        pass


def settings(over=None):
    cfg = {"modem.number": "5550100", "modem.redial": 2, "log.console": False}
    for k in over or {}:
        cfg[k] = over[k]
    st = ModemSettings(fwtest.host_config(cfg))
    st.cmd_ms = 100
    st.connect_ms = 300
    st.guard_ms = 20
    st.redial_ms = 50
    st.redial_max_ms = 120
    return st


def connect(port, st):
    d = Dialer(port, st)
    return asyncio.run(d.connect()), d


def test_connects_first_time():
    port = FakeModem([b"CONNECT 33600/ARQ/V34/LAPM/V42BIS"])
    call, d = connect(port, settings())
    assert call.outcome == modem.CONNECTED and call.speed == 33600
    assert port.sent == ["AT", "AT&F", "ATE0V1&C1&D2", "ATX4M0", "ATDT5550100"]
    assert d.attempts == 1 and d.resets == 0


def test_redial_backs_off_and_stops_at_the_cap():
    port = FakeModem([b"BUSY"])
    call, d = connect(port, settings())
    assert call.outcome == modem.BUSY
    assert len(port.dials) == 3 and d.attempts == 3  # 1 + modem.redial
    gaps = [compat.ticks_diff(port.dials[i + 1], port.dials[i]) for i in range(2)]
    assert gaps[0] >= 50 and gaps[1] >= 100  # 50 ms, then doubled (capped at 120)


def test_redial_until_answered():
    port = FakeModem([b"NO ANSWER", b"NO DIALTONE", b"CONNECT 64000"])
    call, _d = connect(port, settings({"modem.profile": "isdn", "modem.number": "0301234"}))
    assert call.outcome == modem.CONNECTED and call.speed == 64000
    assert port.sent[-1] == "ATD0301234"


def test_error_is_not_redialled():
    port = FakeModem([b"ERROR", b"CONNECT"])
    call, d = connect(port, settings())
    assert call.outcome == modem.ERROR and d.attempts == 1


def test_silent_dial_is_aborted_and_redialled():
    port = FakeModem([None, b"CONNECT 28800"])
    call, d = connect(port, settings())
    assert call.outcome == modem.CONNECTED and d.attempts == 2


def test_deaf_modem_is_reset_by_dtr_toggle():
    port = FakeModem([b"CONNECT 33600"], deaf=True)
    call, d = connect(port, settings())
    assert call.outcome == modem.CONNECTED and call.reset_tried and d.resets == 1
    assert port.sent[0] == "ATZ"


def test_dead_modem_is_reported_once():
    port = FakeModem([b"CONNECT"], deaf=True)
    port.set_dtr = lambda on: None  # nothing brings it back
    call, d = connect(port, settings())
    assert call.outcome == modem.NO_MODEM and d.attempts == 1


def test_hangup_by_dtr_drop():
    port = FakeModem([b"CONNECT 33600"])
    st = settings()

    async def go():
        d = Dialer(port, st)
        await d.connect()
        assert port.online
        assert await d.hangup()
        assert not port.online and port.dtr
        assert "ATH0" not in port.sent

    asyncio.run(go())


def test_hangup_falls_back_to_escape_and_ath0():
    port = FakeModem([b"CONNECT 33600"], honours_dtr=False)
    st = settings()

    async def go():
        d = Dialer(port, st)
        await d.connect()
        assert await d.hangup()
        assert not port.online and port.sent[-1] == "ATH0"

    asyncio.run(go())


def test_operator_stop_ends_redial_wait():
    port = FakeModem([b"BUSY"])
    st = settings({"modem.redial": 5})
    st.redial_ms = st.redial_max_ms = 60000

    async def go():
        d = Dialer(port, st)
        t = asyncio.create_task(d.connect())
        await asyncio.sleep(0.3)
        d.stop()
        call = await t
        assert call.outcome == modem.BUSY and len(port.dials) == 1

    asyncio.run(go())


def test_call_walk_heap():
    """A complete call attempt keeps < 1 KiB (MicroPython GC heap; skipped on CPython)."""
    if compat.mem_free() < 0:
        fwtest.skip("heap figures are for MicroPython")
    compat.gc_collect()
    before = compat.mem_alloc()
    c = modem.Call(["AT&F", "ATE0V1&C1&D2", "ATX4M0"], "ATDT5550100")
    c.start()
    for out in (b"AT\r\r\nOK\r\n", b"\r\nOK\r\n", b"\r\nOK\r\n", b"\r\nOK\r\n", b"\r\nCONNECT 33600/ARQ\r\n"):
        c.receive(out)
    compat.gc_collect()
    kept = compat.mem_alloc() - before
    print("heap: one modem.Call after a full dial: %d bytes" % kept)
    assert c.outcome == modem.CONNECTED and kept < 1024


def test_operator_stop_aborts_a_dial_in_progress():
    port = FakeModem([None])  # the modem never answers the dial
    st = settings()
    st.connect_ms = 60000

    async def go():
        d = Dialer(port, st)
        t = asyncio.create_task(d.connect())
        await asyncio.sleep(0.3)
        d.stop()
        call = await t
        assert call.outcome == modem.STOPPED and d.attempts == 1
        assert port.sent[-1] == ""  # a bare CR: any character aborts the dial

    asyncio.run(go())
