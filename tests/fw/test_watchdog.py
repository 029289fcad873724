"""The hardware watchdog (board.watchdog_ms): machine.WDT where a board has it,
fed by the gateway's once-a-second tick; nothing on a PC. A fake `machine`
module stands in for a board's on both runtimes."""

import asyncio
import sys

from dialgate import compat_wdt


class FakeWDT:
    made = []

    def __init__(self, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        self.fed = asyncio.Event()
        FakeWDT.made.append(self)

    def feed(self):
        self.feeds += 1
        if self.feeds >= 3:
            self.fed.set()


class FakeMachine:
    WDT = FakeWDT


def with_fake_machine(fn):
    real = sys.modules.get("machine")
    sys.modules["machine"] = FakeMachine
    try:
        return fn()
    finally:
        if real is None:
            del sys.modules["machine"]
        else:
            sys.modules["machine"] = real


def test_a_board_gets_machine_wdt_with_the_profile_timeout():
    FakeWDT.made = []
    wdt = with_fake_machine(lambda: compat_wdt.watchdog(8000))
    assert isinstance(wdt, FakeWDT) and wdt.timeout == 8000 and FakeWDT.made == [wdt]
    assert with_fake_machine(lambda: compat_wdt.watchdog(0)) is None and len(FakeWDT.made) == 1  # off: never started


def test_no_watchdog_without_machine_wdt():
    """CPython has no `machine`; the unix port has one without WDT."""
    assert compat_wdt.watchdog(8000) is None


async def _tick_until_fed(gw):
    """Run gw._tick until the watchdog was fed 3 times, then cancel it -> the feeds by then."""
    tick = asyncio.create_task(gw._tick())
    try:
        await asyncio.wait_for(gw.wdt.fed.wait(), 30)
    finally:
        tick.cancel()
    fed = gw.wdt.feeds
    await asyncio.sleep(0)
    return fed


def test_the_event_loop_feeds_the_watchdog():
    """Gateway._tick feeds it before each one-second sleep; a loop that stops
    running tasks stops feeding (and the board resets)."""
    from dialgate.app import Gateway

    class Gw(Gateway):
        def __init__(self):  # only what _tick uses
            self.cfg = {"board.unload_after": 0}
            self.wdt = FakeWDT(8000)

    gw = Gw()
    assert asyncio.run(_tick_until_fed(gw)) >= 3
    stopped = gw.wdt.feeds

    async def later():
        await asyncio.sleep(1.5)  # a tick would have fed again by now

    asyncio.run(later())
    assert gw.wdt.feeds == stopped  # the tick is gone: nobody feeds


def test_a_failing_tick_goes_on_feeding():
    """The idle unloading imports app_unload (10 KB) when the heap is tight, the
    log flush writes to flash: either may raise. Before, that ended the tick
    task: no feeding (a board reset by its watchdog for a MemoryError), and on
    a PC no log flushes and no unloading for the rest of the run."""
    from dialgate.app import Gateway

    class Gw(Gateway):
        def __init__(self):
            self.cfg = {"board.unload_after": 1}
            self.wdt = FakeWDT(8000)
            self.tries = 0

        def unload_idle(self, now, after_ms):
            self.tries += 1
            raise MemoryError("memory allocation failed, allocating 10816 bytes")

    gw = Gw()
    assert asyncio.run(_tick_until_fed(gw)) >= 3 and gw.tries >= 2, (gw.wdt.feeds, gw.tries)
