"""The emulated link on CPython: the firmware's driver, through pyserial (emu:// =
socket:// plus the control-line side channel), against the modem emulator process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest
from modem_emu import ModemEmulator, link_config

from dialgate import link, modem
from dialgate.link_modem import EmulatedLink
from gateway import Gateway, free_port


@pytest.fixture
def emu_factory():
    made: list[ModemEmulator] = []

    def make(*a, **kw) -> ModemEmulator:
        e = ModemEmulator(*a, **kw)
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()


def dial(emu: ModemEmulator, over: dict | None = None) -> tuple[str, EmulatedLink]:
    lk = link.make_link(link_config(emu, over))

    async def go() -> str:
        try:
            return await lk.up()
        finally:
            await lk.down()

    return asyncio.run(go()), lk


@pytest.mark.parametrize("scenario,outcome", [
    ("busy", modem.BUSY),
    ("no-dialtone", modem.NO_DIALTONE),
    ("no-answer", modem.NO_ANSWER),
    ("no-carrier", modem.NO_CARRIER),
    ("silent", modem.SILENT),
    ("dead", modem.NO_MODEM),
    ("handshake=60", modem.NO_CARRIER),  # training longer than S7: the modem gives up
])
def test_failure_scenarios_map_to_distinct_outcomes(emu_factory, scenario, outcome):
    emu = emu_factory([scenario])
    t0 = time.monotonic()
    got, lk = dial(emu)
    assert got == outcome
    assert not lk.is_up()
    assert "last attempt: " + outcome in lk.describe()
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("scenario", ["answer", "answer+garbage", "answer+ring", "stuck"])
def test_answer_scenarios_connect(emu_factory, scenario):
    emu = emu_factory([scenario], bps=33600)
    got, lk = dial(emu)
    assert got == link.UP, lk.last_call.detail if lk.last_call else got
    assert lk.speed == 33600
    assert lk.dial_results == ["CONNECT 33600/ARQ/V34/LAPM/V42BIS"]
    # DTR dropped by the deaf modem's reset (stuck only), the hang-up and the port's close
    assert f"dtr_drops={3 if scenario == 'stuck' else 2} " in emu.status(), emu.status()
    assert "calls=1" in emu.status()
    assert lk.dialer is None and lk.last_call is None  # shed once up: the hang-up makes its own


@pytest.mark.parametrize("form,speed", [
    ("CONNECT", 115200), ("CONNECT 115200", 115200), ("CONNECT 64000", 64000),
    ("CONNECT 33600/ARQ/V34/LAPM/V42BIS", 33600),
])
def test_connect_forms_end_to_end(emu_factory, form, speed):
    emu = emu_factory(["answer"], extra=["--connect", form])
    got, lk = dial(emu)
    assert got == link.UP and lk.speed == speed  # plain CONNECT: the DTE rate (modem.baud)


def test_numeric_results_v0(emu_factory):
    emu = emu_factory(["busy,answer"], bps=14400)
    over = {"modem.init": ["AT&F", "ATE1V0&C1&D2"], "modem.redial": 1}
    got, lk = dial(emu, over)
    assert got == link.UP and lk.speed == 14400  # "15\r" is CONNECT 14400
    assert "dials=2" in emu.status()


def test_redial_with_backoff_and_cap(emu_factory):
    emu = emu_factory(["busy,no-answer,answer"])
    got, lk = dial(emu, {"modem.redial": 2, "modem.redial_delay": 1, "modem.redial_delay_max": 1})
    assert got == link.UP
    emu2 = emu_factory(["busy,busy,busy,answer"])
    got, lk = dial(emu2, {"modem.redial": 2})
    assert got == modem.BUSY
    assert "dials=3" in emu2.status()  # the cap: 1 + modem.redial attempts per session
    emu3 = emu_factory(["no-dialtone,answer"])
    assert dial(emu3, {"modem.redial": 1})[0] == link.UP


def test_no_port(emu_factory):
    lk = link.make_link(link_config(emu_factory(), {"modem.port": f"emu://127.0.0.1:{free_port()}"}))
    assert asyncio.run(lk.up()) == link.NO_PORT


class Sink:
    """The emulated ISP's side of a forward: counts what arrives, sends `reply` bytes."""

    def __init__(self, reply: int = 0) -> None:
        self.reply = reply
        self.got = 0
        self.closed = asyncio.Event()
        self.reset = False

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.reply:
            w.write(b"x" * self.reply)
        try:
            while data := await r.read(65536):
                self.got += len(data)
        except OSError:
            self.reset = True
        self.closed.set()
        w.close()


async def _carry(port: int, send: int, want_back: int) -> tuple[int, bool]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"y" * send)
    back = 0
    broken = False
    try:
        await w.drain()
        if not want_back:
            w.write_eof()
        while back < want_back:
            data = await r.read(65536)
            if not data:
                break
            back += len(data)
        w.write_eof()
        await r.read()
    except OSError:
        broken = True
    w.close()
    return back, broken


def test_ip_reachability_only_while_up_in_both_directions(emu_factory):
    fwd, isp, rev, gw_port = free_port(), free_port(), free_port(), free_port()
    emu = emu_factory(["answer"], forward={fwd: isp}, reverse={rev: gw_port})
    lk = link.make_link(link_config(emu))
    assert lk.smtp_addr is None
    lk.smtp_addr = ("127.0.0.1", fwd)

    async def go() -> None:
        isp_sink, gw_sink = Sink(reply=5000), Sink(reply=700)
        s1 = await asyncio.start_server(isp_sink.handle, "127.0.0.1", isp)
        s2 = await asyncio.start_server(gw_sink.handle, "127.0.0.1", gw_port)
        for p in (fwd, rev):
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", p)  # no call: no route
        assert await lk.up() == link.UP
        assert await _carry(fwd, 20000, 5000) == (5000, False)  # gateway -> ISP and back
        assert await _carry(rev, 3000, 700) == (700, False)  # ISP -> gateway (after ETRN)
        await asyncio.wait_for(isp_sink.closed.wait(), 5)
        await asyncio.wait_for(gw_sink.closed.wait(), 5)
        assert (isp_sink.got, gw_sink.got) == (20000, 3000)
        await asyncio.sleep(0.7)
        lk._count()
        assert lk.bytes_out == 20000 + 700 and lk.bytes_in == 5000 + 3000
        assert lk.describe().startswith("up 1000000 bps")
        await lk.down()
        assert not lk.is_up() and lk.describe() == "down (emulated)"
        assert (lk.bytes_out, lk.bytes_in) == (20700, 8000)  # kept for the session's report
        assert "STATUS command" in emu.status()
        for p in (fwd, rev):
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", p)
        s1.close()
        s2.close()

    asyncio.run(go())


def test_carrier_loss_mid_transfer(emu_factory):
    fwd, isp = free_port(), free_port()
    emu = emu_factory(["answer+drop-bytes=30000", "answer"], bps=400000, forward={fwd: isp})
    lk = link.make_link(link_config(emu))

    async def go() -> None:
        sink = Sink()
        srv = await asyncio.start_server(sink.handle, "127.0.0.1", isp)
        assert await lk.up() == link.UP
        t0 = time.monotonic()
        _back, _broken = await asyncio.wait_for(_carry(fwd, 200000, 0), 10)
        await asyncio.wait_for(sink.closed.wait(), 5)
        assert sink.got < 200000  # the transfer did not complete
        for _ in range(40):  # the link notices within a carrier poll or two
            if not lk.is_up():
                break
            await asyncio.sleep(0.05)
        assert not lk.is_up()
        await asyncio.sleep(0.3)
        assert lk.state == "down" and "last attempt" not in lk.describe()
        await lk.down()  # nothing to do, must not hang
        assert time.monotonic() - t0 < 10
        # the next session dials again and works
        assert await lk.up() == link.UP
        await lk.down()
        srv.close()

    asyncio.run(go())


def test_carrier_drop_after_seconds(emu_factory):
    emu = emu_factory(["answer+drop-after=300"])  # 0.3 s at time scale 0.001

    async def go() -> None:
        lk = link.make_link(link_config(emu))
        assert await lk.up() == link.UP
        for _ in range(60):
            if lk.state == "down":
                break
            await asyncio.sleep(0.05)
        assert lk.state == "down"

    asyncio.run(go())


def test_hangup_falls_back_to_escape_and_ath0(emu_factory):
    emu = emu_factory(["answer"])
    over = {"modem.init": ["AT&F", "ATE0V1&C1&D0S12=50"]}  # &D0: the modem ignores DTR

    async def go() -> None:
        lk = link.make_link(link_config(emu, over))
        assert await lk.up() == link.UP
        assert "STATUS online" in emu.status()
        await lk.down()
        assert "STATUS command" in emu.status()

    asyncio.run(go())


def test_hangup_by_dtr(emu_factory):
    emu = emu_factory(["answer"])

    async def go() -> None:
        lk = link.make_link(link_config(emu))
        assert await lk.up() == link.UP
        t0 = time.monotonic()
        await lk.down()  # with a dialler of its own: the one that dialled was shed once up
        assert time.monotonic() - t0 < 2.5  # no fallback: that would first wait 3 s for DCD to fall
        assert "STATUS command" in emu.status() and "dtr_hangups=1" in emu.status(), emu.status()

    asyncio.run(go())


def test_operator_hangup_stops_a_redial_wait(emu_factory):
    emu = emu_factory(["busy"])

    async def go() -> None:
        lk = link.make_link(link_config(emu, {"modem.redial": 5, "modem.redial_delay": 30}))
        task = asyncio.create_task(lk.up())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "dials=1" in emu.status():
                break
        await asyncio.sleep(0.2)
        await lk.down()
        assert await asyncio.wait_for(task, 3) == modem.BUSY
        assert lk.state == "down"

    asyncio.run(go())


def test_console_dial_status_hangup(tmp_path, emu_factory):
    """`dial` asks the session owner for a call; `hangup` ends it mid-flush (a
    smarthost that accepts and then says nothing keeps the queue run waiting)."""
    emu = emu_factory(["answer"], bps=33600)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    over = {"link.type": "emulated", "modem.port": emu.url, "modem.connect_timeout": 3, "modem.guard_ms": 50,
            "link.smtp": f"127.0.0.1:{silent.getsockname()[1]}"}  # (not through the line: not its test)
    gw = Gateway(tmp_path, over)
    try:
        ok, lines, _ = gw.command("dial")
        assert ok and lines[0].startswith("call requested"), lines
        state = ""
        for _ in range(100):
            ok, lines, _ = gw.command("status")
            state = next(x for x in lines if x.startswith("link:"))
            if "up" in state.split(":", 1)[1][:4]:
                break
            time.sleep(0.05)
        assert state.startswith("link: up 33600 bps"), state
        assert gw.command("dial")[1][0].startswith("call 1 in progress")
        ok, lines, _ = gw.command("hangup")
        assert ok and lines == ["hanging up call 1"], lines
        for _ in range(100):
            state = next(x for x in gw.command("status")[1] if x.startswith("link:"))
            if state == "link: down (emulated)":
                break
            time.sleep(0.05)
        assert state == "link: down (emulated)"
        assert "STATUS command" in emu.status()
        ok, lines, _ = gw.command("stats calls")
        assert ok and lines[0].startswith("#1 ") and "end operator, ok" in lines[0], lines
    finally:
        silent.close()
        gw.stop()
        with contextlib.suppress(Exception):
            print(gw.output())


def test_console_dial_under_micropython(tmp_path, emu_factory):
    """The unix port has no pyserial: emu:// uses plain sockets there."""
    emu = emu_factory(["answer"], bps=33600)
    over = {"link.type": "emulated", "modem.port": emu.url, "modem.connect_timeout": 3, "modem.guard_ms": 50}
    gw = Gateway(tmp_path, over, runtime="upy", heap="512K")  # a functional test: heap is measured elsewhere
    try:
        assert gw.command("dial")[0]
        state = ""
        for _ in range(100):
            state = next(x for x in gw.command("status")[1] if x.startswith("link:"))
            if state.startswith("link: up"):
                break
            time.sleep(0.05)
        assert state.startswith("link: up 33600 bps"), state
        assert "STATUS online" in emu.status()
        assert gw.command("hangup")[0]
        for _ in range(100):
            if "STATUS command" in emu.status():
                break
            time.sleep(0.05)
        assert "STATUS command" in emu.status()
    finally:
        gw.stop()


def test_dial_through_a_ringing_line(emu_factory):
    emu = emu_factory(["answer"], scale=0.001, extra=["--ring-every", "20"])  # RING every 20 ms
    got, lk = dial(emu)
    assert got == link.UP  # RINGs between the commands are ignored


def test_control_channel_missing_is_no_port(emu_factory):
    emu = emu_factory()
    url = f"emu://127.0.0.1:{emu.serial}?control={free_port()}"
    lk = link.make_link(link_config(emu, {"modem.port": url}))
    assert asyncio.run(lk.up()) == link.NO_PORT
