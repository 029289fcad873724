"""The owner of the line (`gw.sessions`): one task asks the scheduler when to call,
drives a session.DialSession through the link and the relay, and writes its cost
record (docs/sessions.md). The console's `dial`, `hangup`, `schedule` and
`status` ask it; nothing else raises or drops the line.
"""

import asyncio

from . import compat, log, scheduler
from .compat import const

_TICK_MS = const(1000)  # how often the scheduler is asked
_HEAD_SCAN = const(2048)  # header octets looked at for an urgent mark
_DAY_MS = const(86400000)


class SessionRunner:
    """The calls of one gateway. `run()` is its task; `request()` and `hangup()`
    are the console's way in; `current` is the DialSession of the call in
    progress (None offline)."""

    def __init__(self, gw):
        self.gw = gw
        cfg = gw.cfg
        self.cfg = cfg
        self.plan = scheduler.parse_plan(cfg)
        if cfg["link.type"] == "always-on":
            # nothing to dial and nothing billed per minute: every due message
            # starts a "call" at once (a flush and an ask; no line to raise)
            self.plan.queue_count = 1
            self.plan.min_gap = 0
        self.current = None
        self.requested = ""
        self.boot = compat.ticks_ms()
        self.last_start = None
        self.last_end = None
        self.last_slot = 0
        self.fails = 0
        self.fail_why = ""
        self.last_result = "no call since boot"
        self.next = (None, "", "not planned yet")
        self.n = -1  # the last session number: from the cost log at the first call
        self.seen = {}  # queued id -> [ticks first seen, urgent?]
        self.qlen = -1
        self.recent = []  # [(ticks start, wall start or 0, online s)] of calls in the last day
        self.stop_why = ""  # set by hangup(): session_call stops the call
        self._head = None
        self._none_queued = not compat.listdir(gw.spool.path("queue"))
        if self.plan.daily_calls or self.plan.daily_seconds:
            self._seed_today()  # the limits hold across a reboot (reads the cost log)

    # ---- the console's way in ------------------------------------------------

    def request(self, why="operator"):
        """The operator's `dial`: a call now, whatever the schedule and the limits say."""
        self.requested = why

    def hangup(self, why="operator"):
        """Hang up the call in progress (returns False if there is none)."""
        if self.current is None:
            return False
        self.stop_why = why
        return True

    # ---- the task ------------------------------------------------------------

    async def run(self):
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bad record must not stop the calls
                log.exception("session", e)
            await asyncio.sleep(_TICK_MS / 1000)

    async def step(self):
        """Ask the scheduler; call if it says now."""
        now = self.situation()
        secs, kind, why = scheduler.next_call(self.plan, now)
        self.next = (secs, kind, why)
        if secs == 0:
            await self.call(kind, why)
            self.next = scheduler.next_call(self.plan, self.situation())  # what `status` shows from now on

    def situation(self):
        """What the scheduler needs to know (scheduler.Now)."""
        t = compat.ticks_ms()
        wall = compat.wall_time()
        trusted = compat.clock_trusted()
        due, oldest, urgent = self.queue_state(t, wall)
        calls, secs = self.today(t, wall if trusted else 0)
        return scheduler.Now(wall=wall if trusted else None, ticks=t, boot=self.boot, due=due, oldest=oldest,
                             urgent=urgent, requested=bool(self.requested), last_start=self.last_start,
                             last_end=self.last_end, last_slot=self.last_slot, fails=self.fails,
                             fail_why=self.fail_why, calls_today=calls, seconds_today=secs)

    # ---- one call (session_call: loaded for a call, not at boot) ------------------

    async def call(self, kind, why):
        from .session_call import run_call

        await run_call(self, kind, why)

    # ---- activity and the queue --------------------------------------------------

    def queue_state(self, t, wall):
        """(due messages, ms the oldest due one waited or -1, urgent due ones).
        Due by the records' own retry times (on the runtime's clock even while it
        is untrusted: they were computed on it). Ages are on ticks from when this
        boot first saw a message, or from its record once the clock is trusted."""
        sp = self.gw.spool
        if not sp.queue_loaded() and self._none_queued:
            return 0, -1, 0  # nothing queued since boot: do not load the queue to say so
        q = self.gw.outq
        if len(q) != self.qlen:
            self._rescan(q, t, wall)
        due = q.due(wall)
        oldest = -1
        urgent = 0
        for mid in due:
            e = self.seen.get(mid)
            if e is None:
                continue
            age = compat.ticks_diff(t, e[0])
            if age > oldest:
                oldest = age
            if e[1]:
                urgent += 1
        return len(due), oldest, urgent

    def _rescan(self, q, t, wall):
        ids = q.ids()
        self.qlen = len(ids)
        keep = {}
        for mid in ids:
            e = self.seen.get(mid)
            if e is None:
                e = [t, self._urgent(q, mid)]
                if compat.clock_trusted():
                    try:
                        created = q.load(mid).created
                        if compat.clock_ok(created) and wall > created:
                            e[0] = compat.ticks_add(t, -min(wall - created, 86400) * 1000)
                    except KeyError:
                        pass
            keep[mid] = e
        self.seen = keep

    def _urgent(self, q, mid):
        """Does the message's header carry a `schedule.urgent_headers` mark?"""
        marks = self.cfg["schedule.urgent_headers"]
        if not self.cfg["schedule.urgent"] or not marks:
            return False
        if self._head is None:
            self._head = bytearray(_HEAD_SCAN)
        try:
            with q.open_body(mid) as f:
                n = f.readinto(self._head)
        except (OSError, KeyError):
            return False
        head = bytes(self._head[:n or 0])
        end = head.find(b"\r\n\r\n")
        head = (head if end < 0 else head[:end]).lower().replace(b"\r\n", b"\n")
        for mark in marks:
            name, _, value = mark.lower().partition(":")
            for line in head.split(b"\n"):
                if line.startswith(name.strip().encode() + b":") and value.strip().encode() in line:
                    return True
        return False

    # ---- limits and reports ------------------------------------------------------

    def _seed_today(self):
        """Today's calls from the cost log, so the daily limits hold across a reboot."""
        if not compat.clock_trusted():
            return
        wall = compat.wall_time()
        today = scheduler.local_day(self.plan, wall)
        t = compat.ticks_ms()
        for r in self.gw.costlog.records(50):
            st = r.get("start", 0)
            if compat.clock_ok(st) and scheduler.local_day(self.plan, st) == today:
                self.recent.append((compat.ticks_add(t, -min(wall - st, 86400) * 1000), st, r.get("online", 0)))

    def today(self, t, wall):
        """(calls, online seconds) today: the local day when the clock is trusted,
        else the last 24 hours on ticks."""
        keep = [c for c in self.recent if compat.ticks_diff(t, c[0]) < _DAY_MS]
        self.recent = keep
        calls = 0
        secs = 0
        day = scheduler.local_day(self.plan, wall) if wall else None
        for c in keep:
            if day is not None and c[1] and scheduler.local_day(self.plan, c[1]) != day:
                continue
            calls += 1
            secs += c[2]
        return calls, secs
