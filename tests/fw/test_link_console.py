"""The link interface as the console and the queue runner see it: always-on, the
`dial` / `hangup` commands, describe() lines, a second up() waiting for the first."""

import asyncio

import fwtest
from dialgate import link, link_console
from dialgate.console import Commands


class FakeGateway:
    def __init__(self, lk):
        self.link = lk
        self.tasks = []
        self.commands = Commands()
        link_console.add_commands(self.commands)


class SlowLink(link.Link):
    """A link whose dial takes a while and then gives `result`."""

    kind = "test"

    def __init__(self, result):
        link.Link.__init__(self, fwtest.host_config())
        self.result = result
        self.dials = 0
        self.hangups = 0

    async def _up(self):
        self.dials += 1
        await asyncio.sleep(0.05)
        if self.result == link.UP:
            self.speed = 33600
        return self.result

    async def _down(self):
        self.hangups += 1


def test_always_on():
    lk = link.make_link(fwtest.host_config())
    assert lk.kind == "always-on" and lk.is_up()
    assert asyncio.run(lk.up()) == link.UP
    gw = FakeGateway(lk)
    assert gw.commands.run(gw, "dial")[0].startswith("link already up")
    assert gw.commands.run(gw, "hangup") == ["ERR an always-on link cannot hang up"]
    assert lk.describe().startswith("up 0 bps")


def test_make_link_types_without_io():
    for kind, cls in (("emulated", "EmulatedLink"), ("ppp", "PPPLink")):
        lk = link.make_link(fwtest.host_config({"link.type": kind, "modem.port": "uart:1"}))
        assert type(lk).__name__ == cls and lk.state == "down" and not lk.is_up()
        assert lk.describe() == "down (%s)" % kind
    lk = link.make_link(fwtest.host_config({"link.type": "emulated", "link.smtp": "127.0.0.1:2526"}))
    assert lk.smtp_addr == ("127.0.0.1", 2526) and lk.pop3_addr is None


def test_dial_and_hangup_commands():
    lk = SlowLink(link.UP)
    gw = FakeGateway(lk)

    async def go():
        out = gw.commands.run(gw, "dial")
        assert out[0].startswith("dialling (test link)") and out[-1] == "OK"
        await asyncio.sleep(0)
        assert lk.describe() == "dialling (test)"
        assert gw.commands.run(gw, "dial")[0] == "already dialling"
        await asyncio.sleep(0.1)
        assert lk.describe().startswith("up 33600 bps, 0 min")
        assert gw.commands.run(gw, "hangup") == ["hanging up", "OK"]
        await asyncio.sleep(0.05)
        assert lk.describe() == "down (test)" and lk.hangups == 1
        assert gw.commands.run(gw, "hangup") == ["link already down", "OK"]

    asyncio.run(go())


def test_failed_dial_is_described():
    lk = SlowLink("busy")
    assert asyncio.run(lk.up()) == "busy"
    assert lk.describe() == "down, last attempt: busy (test)"


def test_second_caller_waits_for_the_first_attempt():
    lk = SlowLink(link.UP)

    async def go():
        a = asyncio.create_task(lk.up())
        b = asyncio.create_task(lk.up())
        assert await a == link.UP and await b == link.UP
        assert lk.dials == 1

    asyncio.run(go())


class FakeSessions:
    """session_run.SessionRunner as the console sees it."""

    def __init__(self):
        self.current = None
        self.hung = []

    def hangup(self, why):
        self.hung.append(why)
        return self.current is not None


class Call:
    n = 4
    phase = "lingering"


def test_dial_and_hangup_go_through_the_session_owner():
    lk = SlowLink(link.UP)
    gw = FakeGateway(lk)
    asked = []
    gw.request_session = asked.append
    gw.sessions = FakeSessions()
    assert gw.commands.run(gw, "dial")[0] == "call requested: dialling within a second; `status` shows it"
    assert asked == ["operator"] and lk.dials == 0  # the session dials, not the console
    gw.sessions.current = Call()
    assert gw.commands.run(gw, "dial")[0] == "call 4 in progress (lingering)" and asked == ["operator"]
    lk.state = "up"
    assert gw.commands.run(gw, "hangup") == ["hanging up call 4", "OK"]
    assert gw.sessions.hung == ["operator"] and lk.hangups == 0


def test_no_link():
    gw = FakeGateway(None)
    assert gw.commands.run(gw, "dial") == ["ERR no link configured"]
    assert gw.commands.run(gw, "hangup") == ["ERR no link configured"]
