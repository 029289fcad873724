"""session_run.SessionRunner, the owner of the line, over a fake link and the fake
smarthost of relayfake (real spool, queue and cost log): the scheduler starts a
call by itself, the call flushes, asks, lingers and hangs up, and its record is
on flash; a failed dial, a carrier lost mid-flush and a gateway stopping mid-call
all end with the line down and a record. Seconds-long: idle_hangup is 1 s here.

A real spool, queue, relay, scheduler, phase machine, driver and cost log
together need about 160K on the 64-bit unix port, more than the 128K board
budget: host_tools/upy_test.py runs this file at UPY_HEAP (issue #15 is the
board-heap work; docs/sessions.md gives the figures). At 152K three or four of
its eight tests fail (4 December, this main and the one before alike); 160K
passed on a quiet machine but once failed in CI under load, where timing
changes the order of allocations: 176K leaves one 16K step of margin."""

import asyncio

from relayfake import NOW, done, new_gw, queue

from dialgate import compat, scheduler
from dialgate.costlog import CostLog
from dialgate.session_run import SessionRunner

UPY_HEAP = "176K"
FAST = {"session.idle_hangup": 1, "session.min_online": 0, "session.max_online": 60,
        "session.etrn": ["office.test"], "schedule.queue_count": 1, "schedule.min_gap": 0,
        "session.retry_delay": 10}


class FakeLink:
    """Dials in 50 ms with `outcome`; `drop_on_flush`: the carrier goes when the
    queue run starts (as if it dropped mid-DATA)."""

    kind = "emulated"

    def __init__(self, outcome="up"):
        self.outcome = outcome
        self.up_now = False
        self.state = "down"
        self.speed = 0
        self.bytes_in = self.bytes_out = 0
        self.dial_results = []
        self.dials = 0
        self.hangups = 0
        self.smtp_addr = None

    async def up(self):
        self.dials += 1
        self.state = "dialling"
        await asyncio.sleep(0.05)
        self.dial_results = ["CONNECT 33600/ARQ"] if self.outcome == "up" else [self.outcome]
        if self.outcome != "up":
            self.state = "down"
            return self.outcome
        self.state = "up"
        self.up_now = True
        self.speed = 33600
        self.bytes_out += 1200
        self.bytes_in += 800
        return "up"

    async def down(self):
        if self.state != "down":
            self.hangups += 1
        self.state = "down"
        self.up_now = False

    def is_up(self):
        return self.up_now


class Net:
    conns = []


def gateway(tag, link):
    gw = new_gw(tag, FAST)
    gw.link = link
    gw.net = Net()
    gw.costlog = CostLog(gw.spool.path("calls.log"), gw.spool.path("calls.log.tmp"), 4096, gw.spool.flash)
    return gw


async def lingering(sr, task):
    """Wait (10 s at most) until the call started by `task` lingers; fail, never hang."""
    for _ in range(200):
        if sr.current is not None and sr.current.phase == "lingering":
            return
        if task.done():
            break
        await asyncio.sleep(0.05)
    raise AssertionError("the call never lingered (see the log above)")


def run(coro):
    saved = compat.wall_time
    compat.wall_time = lambda: NOW
    try:
        return asyncio.run(coro)
    finally:
        compat.wall_time = saved


def test_queue_trigger_makes_a_whole_call_by_itself():
    lk = FakeLink()
    gw = gateway("sra", lk)
    try:
        sr = SessionRunner(gw)
        run(sr.step())
        assert lk.dials == 0 and sr.next[0] is None  # nothing queued, nothing configured: no call
        queue(gw, ["bob@example.com"])
        run(sr.step())  # the scheduler says now: the whole call runs in this step
        assert lk.dials == 1 and lk.hangups == 1 and lk.state == "down"
        assert gw.servers[0].commands == ["MAIL FROM:<alice@office.test>", "ETRN office.test"]
        assert gw.outq.ids() == []
        recs = gw.costlog.records()
        assert len(recs) == 1, recs
        r = recs[0]
        assert (r["n"], r["trigger"], r["end"], r["ok"], r["msgs_out"], r["ask"]) == (
            1, "queue", "idle", True, 1, "ETRN 250"), r
        assert r["dials"] == ["CONNECT 33600/ARQ"] and r["bytes_out"] == 1200 and r["speed"] == 33600
        assert sr.current is None and sr.fails == 0 and sr.last_result.startswith("idle: ok")
        run(sr.step())
        assert lk.dials == 1  # the queue is empty again: no second call
    finally:
        done(gw)


def test_busy_line_is_recorded_and_retried_with_backoff():
    lk = FakeLink("busy")
    gw = gateway("srb", lk)
    try:
        sr = SessionRunner(gw)
        queue(gw, ["bob@example.com"])
        run(sr.step())
        assert lk.dials == 1 and lk.hangups == 0 and lk.state == "down"
        r = gw.costlog.records()[0]
        assert (r["end"], r["ok"], r["dials"]) == ("busy", False, ["busy"]), r
        assert sr.fails == 1 and sr.fail_why == "busy"
        secs, kind, why = scheduler.next_call(sr.plan, sr.situation())
        assert kind == "retry" and 8 <= secs <= 10, (secs, kind, why)  # session.retry_delay, not at once
        assert len(gw.outq.ids()) == 1  # kept for the retry
    finally:
        done(gw)


def test_carrier_lost_mid_flush_hangs_up_keeps_the_mail_and_fails():
    lk = FakeLink()
    gw = gateway("src", lk)
    try:
        sr = SessionRunner(gw)
        queue(gw, ["bob@example.com"])
        gw.script[None] = {"drop_in_data": 0}
        real = gw.relay.converse

        async def dropping(host, port, name, client):
            lk.up_now = False  # the carrier goes while the body is on the wire
            await real(host, port, name, client)

        gw.relay.converse = dropping
        run(sr.step())
        assert lk.hangups == 1 and lk.state == "down"
        r = gw.costlog.records()[0]
        assert r["end"] == "carrier lost" and r["ok"] is False and r["msgs_out"] == 0, r
        assert len(gw.outq.ids()) == 1  # nothing lost: it goes in the next call,
        assert gw.outq.due(NOW) == gw.outq.ids()  # not after queue.retry_interval: nobody refused it
        assert sr.fails == 1 and sr.fail_why.startswith("carrier lost")
    finally:
        done(gw)


def test_connection_lost_before_the_carrier_is_seen_still_goes_in_the_next_call():
    # The order on a real line is not fixed: the relay's connection can end (reset
    # by the modem's TCP forward, PPP) before the modem's DCD is seen low. The
    # relay then defers with the link still up; the call's end by carrier loss
    # must still move that message to the next call (CI saw one wait 30 min).
    lk = FakeLink()
    gw = gateway("srf", lk)
    try:
        sr = SessionRunner(gw)
        queue(gw, ["bob@example.com"])
        gw.script[None] = {"drop_in_data": 0}
        real = gw.relay.flush

        async def dropping(etrn=None):
            res = await real(etrn)
            lk.up_now = False  # the carrier is seen gone only after the queue run deferred
            return res

        gw.relay.flush = dropping
        run(sr.step())
        r = gw.costlog.records()[0]
        assert r["end"] == "carrier lost" and r["ok"] is False and r["msgs_out"] == 0, r
        assert len(gw.outq.ids()) == 1
        assert gw.outq.due(NOW) == gw.outq.ids()  # due at the retry call, not in 30 min
    finally:
        done(gw)


def test_operator_dial_and_hangup_and_a_stopping_gateway():
    lk = FakeLink()
    gw = gateway("srd", lk)
    try:
        sr = SessionRunner(gw)
        assert not sr.hangup()  # no call to hang up
        sr.request()

        async def operator():
            task = asyncio.create_task(sr.step())
            await lingering(sr, task)
            assert sr.hangup("operator")
            await task

        run(operator())
        r = gw.costlog.records()[-1]
        assert (r["trigger"], r["end"], r["ok"]) == ("operator", "operator", True), r
        assert lk.hangups == 1
        sr.request()

        async def stopping():
            task = asyncio.create_task(sr.step())
            await lingering(sr, task)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        run(stopping())
        assert lk.hangups == 2 and lk.state == "down"  # never a line left up
        r = gw.costlog.records()[-1]
        assert r["n"] == 2 and r["end"] == "gateway stopping", r
        again = SessionRunner(gw)  # as after a reboot: the session number comes from the cost log
        again.request()
        run(again.step())
        assert gw.costlog.records()[-1]["n"] == 3
    finally:
        done(gw)


def test_urgent_mark_in_the_header_is_seen():
    lk = FakeLink()
    gw = gateway("sre", lk)
    try:
        sr = SessionRunner(gw)
        queue(gw, ["bob@example.com"], body=b"Subject: plain\r\n\r\nX-Priority: 1 (in the body)\r\n")
        queue(gw, ["bob@example.com"], body=b"Subject: fire\r\nX-Priority: 1 (Highest)\r\n\r\nhelp\r\n")
        now = sr.situation()
        assert (now.due, now.urgent) == (2, 1)
    finally:
        done(gw)


class BrokenLink(FakeLink):
    """Up, then its state cannot be read (a bug, or no heap left)."""

    def is_up(self):
        if self.up_now:
            raise RuntimeError("broken")
        return False


def test_an_error_inside_a_call_still_hangs_up_and_records_it():
    lk = BrokenLink()
    gw = gateway("srf", lk)
    try:
        sr = SessionRunner(gw)
        sr.request()
        run(sr.step())
        assert lk.hangups == 1 and lk.state == "down" and sr.current is None
        r = gw.costlog.records()[-1]
        assert (r["end"], r["ok"]) == ("internal error", False), r
        assert sr.fails == 1 and sr.fail_why == "internal error: RuntimeError: broken", sr.fail_why
    finally:
        done(gw)


def test_numbering_goes_on_from_an_older_spools_relay_json():
    lk = FakeLink()
    gw = gateway("srg", lk)
    try:
        gw.relay.state.legacy_session = 41  # what relay.json said before the cost log kept the count
        sr = SessionRunner(gw)
        sr.request()
        run(sr.step())
        assert gw.costlog.records()[-1]["n"] == 42
    finally:
        done(gw)
