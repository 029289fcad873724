"""The network.PPP link, boundary-tested on both runtimes: fake `machine` (a UART
wired to a scripted modem, DTR/DCD pins) and fake `network` modules."""

import asyncio
import sys

import fwtest
from dialgate import link, modem


class Line:
    """Shared state of the fake modem: what it answers, its DTR/DCD lines."""

    def __init__(self):
        self.dial_result = b"\r\nCONNECT 33600/ARQ/V34/LAPM/V42BIS\r\n"
        self.out = bytearray()
        self.inbuf = bytearray()
        self.dtr_on = False
        self.carrier = False
        self.sent = []
        self.ppp = None
        self.dcd_error = None  # raised by the next reads of DCD (a port that cannot be asked)
        self.dcd_errors = 0
        self.fail_after = None  # a command after which the port's reads fail (OSError)


LINE = Line()


class UART:
    def __init__(self, uart_id, baudrate=9600, timeout=0, tx=None, rx=None):
        self.id = uart_id
        self.baudrate = baudrate

    def any(self):
        if LINE.fail_after is not None and any(c.startswith(LINE.fail_after) for c in LINE.sent):
            raise OSError(5, "EIO")
        return len(LINE.out)

    def readinto(self, buf, n):
        k = min(n, len(buf), len(LINE.out))
        buf[:k] = LINE.out[:k]
        LINE.out[:k] = b""
        return k

    def write(self, data):
        if LINE.ppp is not None and LINE.ppp.owns:
            raise OSError("the UART belongs to PPP")
        LINE.inbuf.extend(data)
        while b"\r" in LINE.inbuf:
            i = LINE.inbuf.find(b"\r")
            cmd = bytes(LINE.inbuf[:i]).decode()
            LINE.inbuf[: i + 1] = b""
            LINE.sent.append(cmd)
            if not LINE.dtr_on:
                continue  # &D2: a modem with DTR off does not listen
            if cmd.startswith("ATD"):
                LINE.out.extend(LINE.dial_result)
                LINE.carrier = LINE.dial_result.startswith(b"\r\nCONNECT")
            elif cmd.startswith("AT"):
                LINE.out.extend(b"\r\nOK\r\n")
        return len(data)


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2

    def __init__(self, n, mode=0, pull=None, value=None):
        self.n = n
        if n == 5 and value is not None:
            self.value(value)

    def value(self, v=None):
        if self.n == 5:  # DTR through an inverting transceiver: low = on
            if v is not None:
                LINE.dtr_on = v == 0
                if not LINE.dtr_on and LINE.carrier:
                    LINE.carrier = False  # &D2: DTR off hangs up
                    LINE.out.extend(b"\r\nNO CARRIER\r\n")
            return 0 if LINE.dtr_on else 1
        if LINE.dcd_errors:
            LINE.dcd_errors -= 1
            raise LINE.dcd_error
        return 0 if LINE.carrier else 1  # DCD, low = carrier


class PPP:
    SEC_NONE = 0
    SEC_PAP = 1
    SEC_CHAP = 2
    comes_up = True
    fails = None  # connect() raises it

    def __init__(self, stream):
        self.stream = stream
        self.connected = False
        self.owns = False
        self.calls = []
        LINE.ppp = self

    def connect(self, security=0, user=None, key=None):
        self.calls.append(("connect", security, user, key))
        if PPP.fails is not None:
            raise PPP.fails
        self.owns = True
        self.connected = PPP.comes_up

    def isconnected(self):
        return self.connected and LINE.carrier

    def disconnect(self):
        self.calls.append(("disconnect",))
        self.connected = False
        self.owns = False

    def ipconfig(self, what):
        return ("10.64.64.64", "255.255.255.255")


class FakeMachine:
    UART = UART
    Pin = Pin


class FakeNetwork:
    PPP = PPP


def setup(over=None):
    global LINE
    LINE = Line()
    PPP.comes_up = True
    PPP.fails = None
    sys.modules["machine"] = FakeMachine
    sys.modules["network"] = FakeNetwork
    cfg = {"link.type": "ppp", "modem.port": "uart:1", "modem.dtr_pin": 5, "modem.dcd_pin": 6,
           "modem.number": "5550100", "modem.redial": 0, "modem.guard_ms": 10, "link.up_timeout": 1,
           "log.console": False}
    for k in over or {}:
        cfg[k] = over[k]
    return link.make_link(fwtest.host_config(cfg))


def teardown():
    for m in ("machine", "network"):
        if m in sys.modules:
            del sys.modules[m]


def run(coro):
    return asyncio.run(coro)


def test_ppp_link_up_and_down():
    lk = setup({"link.user": "office", "link.password": "pw"})
    try:

        async def go():
            assert await lk.up() == link.UP
            assert lk.is_up() and lk.speed == 33600
            assert lk.describe().startswith("up 33600 bps")
            ppp = LINE.ppp
            assert ppp.calls == [("connect", PPP.SEC_CHAP, "office", "pw")]
            assert LINE.sent[0] == "AT" and LINE.sent[-1] == "ATDT5550100"
            await lk.down()
            assert ppp.calls[-1] == ("disconnect",)
            assert not LINE.carrier and LINE.dtr_on  # hung up by a DTR drop, DTR back on
            assert not lk.is_up() and lk.describe() == "down (ppp)"

        run(go())
    finally:
        teardown()


def test_ppp_that_never_comes_up_hangs_up():
    lk = setup()
    try:
        PPP.comes_up = False

        async def go():
            assert await lk.up() == link.PPP_FAILED
            assert not LINE.carrier
            assert LINE.ppp.calls[0] == ("connect", 0, None, None)

        run(go())
    finally:
        teardown()


def test_carrier_loss_takes_the_link_down():
    lk = setup()
    try:

        async def go():
            assert await lk.up() == link.UP
            LINE.carrier = False  # the far end hung up
            assert not lk.is_up()
            for _ in range(20):
                if lk.state == "down":
                    break
                await asyncio.sleep(0.1)
            assert lk.state == "down"
            await lk.down()

        run(go())
    finally:
        teardown()


def test_a_port_that_fails_to_answer_takes_the_link_down():
    """The carrier watcher: a MemoryError in one poll costs that poll only; an
    OSError reading DCD (a USB adapter unplugged) is a lost connection, logged.
    Before, either ended the watcher and the link stayed "up" with nobody to
    notice the drop but the session's own timeouts."""
    from dialgate import link_modem

    said = []
    bugs = []
    real = link_modem.log.warn
    real_exc = link_modem.log.exception
    link_modem.log.warn = lambda msg, *args: said.append(msg % args)
    link_modem.log.exception = lambda msg, e: bugs.append("%s: %s" % (msg, type(e).__name__))
    lk = setup()
    try:

        async def until_down():
            for _ in range(30):
                if lk.state == "down":
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the link stayed " + lk.state)

        async def go():
            assert await lk.up() == link.UP
            LINE.dcd_error, LINE.dcd_errors = MemoryError("heap"), 2
            await asyncio.sleep(1)  # (the watcher polls every 0.25 s)
            assert LINE.dcd_errors == 0, "the watcher stopped polling"
            assert lk.state == "up" and not said
            LINE.carrier = False
            await until_down()
            assert said == ["link: connection lost (NO CARRIER)"], said
            await lk.down()
            del said[:]
            assert await lk.up() == link.UP
            LINE.dcd_error, LINE.dcd_errors = ValueError("a bug"), 3
            await asyncio.sleep(1)
            assert LINE.dcd_errors == 0 and lk.state == "up", "the watcher stopped polling"
            assert bugs == ["link: carrier watch: ValueError"], bugs  # once, not at each poll
            LINE.dcd_error, LINE.dcd_errors = OSError(5, "EIO"), 1000
            await until_down()
            assert len(said) == 1 and said[0].startswith("link: connection lost (modem port failed: "), said
            assert LINE.ppp.calls[-1] == ("disconnect",)
            await lk.down()

        run(go())
    finally:
        link_modem.log.warn = real
        link_modem.log.exception = real_exc
        teardown()


def test_busy_is_reported():
    lk = setup()
    try:
        LINE.dial_result = b"\r\nBUSY\r\n"
        assert run(lk.up()) == modem.BUSY
        assert LINE.ppp is None
    finally:
        teardown()


def test_hangup_while_ppp_negotiates():
    lk = setup({"link.up_timeout": 30})
    try:
        PPP.comes_up = False

        async def go():
            t = asyncio.create_task(lk.up())
            await asyncio.sleep(0.3)
            await lk.down()
            assert await t == link.PPP_FAILED
            assert not LINE.carrier and lk.state == "down"

        run(go())
    finally:
        teardown()


def test_a_dial_that_ends_by_an_exception_leaves_the_modem_on_hook():
    """The port failing under the dial after ATD, PPP's setup raising after
    CONNECT, the dial's task cancelled: each drops DTR (the modem hangs up,
    &D2) and forgets the port. Before, the port stayed open with DTR on, and a
    modem that had connected stayed online with no watcher and no session."""
    lk = setup({"modem.connect_timeout": 5})
    try:
        LINE.fail_after = "ATD"  # the modem dials; the port fails before its answer is read

        async def go():
            assert await lk.up() == link.NO_PORT
            assert not LINE.dtr_on and not LINE.carrier, "DTR left on after a failed dial"
            assert lk.port is None and lk.state == "down"
            LINE.fail_after = None
            PPP.fails = OSError(12, "ENOMEM")  # connected, then PPP cannot start
            assert await lk.up() == link.NO_PORT
            assert LINE.sent[-1].startswith("ATD"), LINE.sent
            assert not LINE.carrier, "the call stayed up after PPP failed to start"
            assert LINE.ppp.calls[-1] == ("disconnect",) and lk.ppp is None and lk.port is None
            PPP.fails = None
            LINE.dial_result = b""  # no answer yet: the dial waits for one
            t = asyncio.create_task(lk.up())
            await asyncio.sleep(0.3)
            assert LINE.dtr_on and LINE.sent[-1].startswith("ATD")
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
            assert not LINE.dtr_on and lk.port is None, "a cancelled dial left DTR on"
            assert lk.state == "down", lk.state
            LINE.dial_result = Line().dial_result
            assert await lk.up() == link.UP  # and the next call dials afresh
            await lk.down()

        run(go())
    finally:
        teardown()
