"""When to dial: a pure function from (clock, ticks, queue, last calls, usage) to
"seconds until the next call, and why" (Hinch's sched/cron shape). No I/O, no
clock reads: the session task passes everything in and sleeps on the answer.
"""

from .compat import clock_ok, const, ticks_diff

_DAY = const(86400)
_SLOT_GRACE = const(900)  # s: a slot missed by more than this (board off, clock just set) is skipped
_DAY_TEXT = const(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))  # no str.capitalize on MicroPython


class Now:
    """Everything next_call needs to know about this moment (see docs/sessions.md).

    wall: Unix s or None (clock not trusted); ticks/boot/last_start/last_end: ms
    ticks; oldest: ms the oldest due message waited (-1 none); last_slot: wall s
    of the last slot served (0 none)."""

    def __init__(self, wall=None, ticks=0, boot=0, due=0, oldest=-1, urgent=0, requested=False,
                 last_start=None, last_end=None, last_slot=0, fails=0, fail_why="",
                 calls_today=0, seconds_today=0):
        self.wall = wall
        self.ticks = ticks
        self.boot = boot
        self.due = due
        self.oldest = oldest
        self.urgent = urgent
        self.requested = requested
        self.last_start = last_start
        self.last_end = last_end
        self.last_slot = last_slot
        self.fails = fails
        self.fail_why = fail_why
        self.calls_today = calls_today
        self.seconds_today = seconds_today


# ---- parsing (schedule_plan, imported for it and dropped again) ----------


def parse_plan(cfg):
    """Config -> schedule_plan.Plan. Raises ConfigError(key, why) naming the key
    and the bad entry. The parsing code is needed once: it is unloaded after."""
    import sys

    from . import compat

    loaded = "dialgate.schedule_plan" in sys.modules
    from .schedule_plan import parse_plan as parse

    try:
        return parse(cfg)
    finally:
        if not loaded:
            compat.unload("dialgate.schedule_plan")


# ---- calendar (by hand: MicroPython epochs differ, so no `time`) -------------


def local_day(plan, wall):
    """Local day number (days since 1970-01-01 local) of Unix second `wall`."""
    return (wall + plan.offset) // _DAY


def weekday(day):
    """0 = Monday (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def next_midnight(plan, wall):
    """Wall s of the next local midnight: when daily limits reset."""
    return (local_day(plan, wall) + 1) * _DAY - plan.offset


def _hm(plan, wall):
    m = (wall + plan.offset) // 60 % 1440
    return "%02d:%02d" % (m // 60, m % 60)


def clock_text(plan, wall):
    """'Wed 09:00' in local time."""
    return "%s %s" % (_DAY_TEXT[weekday(local_day(plan, wall))], _hm(plan, wall))


def _scan(plan, t, after):
    """The slot nearest `t`: the first one > t if `after`, else the last one <= t.
    Returns (wall s, rule) or (0, None). Looks a week and a day each way."""
    best, rule = 0, None
    day = local_day(plan, t)
    for d in range(day - 1, day + 9) if after else range(day - 8, day + 1):
        base = d * _DAY - plan.offset  # wall s of local midnight opening day d
        wd = 1 << weekday(d)
        for r in plan.rules:
            if not r[0] & wd:
                continue
            step = r[3] * 60
            first = base + r[1] * 60
            last = first + r[2] // r[3] * step
            if after:
                if t >= last:
                    continue
                s = first if t < first else first + ((t - first) // step + 1) * step
                if rule is None or s < best:
                    best, rule = s, r
            else:
                if t < first:
                    continue
                s = last if t >= last else first + (t - first) // step * step
                if s > best:
                    best, rule = s, r
    return best, rule


def _slot_why(plan, s, r):
    if r[4] == "time":
        return "time " + r[5]
    return "window %s at %s" % (r[5], _hm(plan, s))


def slot_due(plan, wall, last_slot):
    """Wall s of the newest slot at/before `wall` later than `last_slot`, or 0.

    The session stores the answer as `last_slot` when any call starts (whatever
    its kind: that call serves the slot), so a slot is served once even if the
    clock later jumps backwards."""
    if wall is None or not plan.rules:
        return 0
    s = _scan(plan, wall, False)[0]
    return s if s > _served(wall, last_slot) else 0


def _served(wall, last_slot):
    """last_slot, unless it is over a day ahead of `wall`: then it came from a
    clock that was wrong (set far ahead, then corrected) and would block every
    slot until that date; min_gap (on ticks) still stops a quick second call."""
    return last_slot if last_slot - wall <= _DAY else 0


def upcoming(plan, wall, n):
    """Up to `n` (wall s, why) of the next slots after `wall`; [] if the clock is not trusted."""
    out = []
    while wall is not None and plan.rules and len(out) < n:
        s, r = _scan(plan, wall, True)
        out.append((s, _slot_why(plan, s, r)))
        wall = s
    return out


# ---- the decision -------------------------------------------------------------


def _dur(s):
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm" % ((s + 59) // 60)
    return "%dh%02dm" % (s // 3600, s // 60 % 60)


def _left(now, base, ms):
    """Seconds (rounded up, >= 0) until `ms` after ticks `base`."""
    d = ms - ticks_diff(now.ticks, base)
    return (d + 999) // 1000 if d > 0 else 0


def _limit(plan, now):
    """Why the daily limits forbid a call now, or ''."""
    if plan.daily_calls and now.calls_today >= plan.daily_calls:
        return "daily call cap %d reached" % plan.daily_calls
    if plan.daily_seconds and now.seconds_today >= plan.daily_seconds:
        return "daily budget %dm used" % (plan.daily_seconds // 60)
    return ""


def _retry_ms(plan, fails):
    """retry_delay * 2**(fails-1), capped at retry_max (doubling, so no big ints)."""
    d = plan.retry_delay
    while fails > 1 and d < plan.retry_max:
        d *= 2
        fails -= 1
    return min(d, plan.retry_max) * 1000


def _covered(now, wall, s):
    """True if the last call was online at or after slot `s`: it served the slot,
    whatever started it (a queue call at 09:02 serves the 09:00 slot)."""
    if now.last_start is None:
        return False
    if now.last_end is None or ticks_diff(now.last_end, now.last_start) < 0:
        return True  # still online
    return s <= wall - ticks_diff(now.ticks, now.last_end) // 1000


def _slot(plan, now, wall):
    """The calendar candidate (seconds, kind, why): a due slot now, else the next one."""
    last = _served(wall, now.last_slot)
    s, r = _scan(plan, wall, False)
    if s > last and wall - s <= max(_SLOT_GRACE, plan.min_gap) + 60 and not _covered(now, wall, s):
        return (0, r[4], _slot_why(plan, s, r))
    s, r = _scan(plan, max(wall, last), True)  # never a slot at/before last_slot again
    return (s - wall, r[4], _slot_why(plan, s, r))


def next_call(plan, now):
    """-> (seconds >= 0 until the next call, kind, why), or (None, "", why).

    Order: operator dial (overrides everything) > daily limits > retry backoff >
    urgent > queue_count / queue_age > window/time slot (clock trusted) or
    interval; the last three wait out schedule.min_gap, the earliest wins."""
    why = _limit(plan, now)
    if now.requested:
        over = []
        if why:
            over.append(why)
        if now.fails:
            over.append("retry backoff")
        if now.last_start is not None and _left(now, now.last_start, plan.min_gap * 1000):
            over.append("min gap")
        return 0, "operator", "operator dial" + (" (overrides %s)" % ", ".join(over) if over else "")
    if why:
        return None, "", why
    if now.fails > 0:
        # the line or the ISP is failing: every other trigger would only hit it sooner
        base = now.last_end if now.last_end is not None else now.last_start
        secs = _left(now, base, _retry_ms(plan, now.fails)) if base is not None else 0
        return secs, "retry", "retry %d after %s" % (now.fails, now.fail_why or "failed call")
    if plan.urgent and now.urgent > 0:
        return 0, "urgent", "%d urgent message%s" % (now.urgent, "" if now.urgent == 1 else "s")

    cands = []  # (seconds, kind, why), in priority order for ties
    if plan.queue_count and now.due >= plan.queue_count:
        cands.append((0, "queue", "%d due message%s (schedule.queue_count %d)" % (now.due, "" if now.due == 1 else "s", plan.queue_count)))
    if plan.queue_age and now.due > 0 and now.oldest >= 0:
        left = (plan.queue_age * 1000 - now.oldest + 999) // 1000
        cands.append((max(left, 0), "age", "oldest due message waited %s (schedule.queue_age %s)"
                      % (_dur(max(now.oldest // 1000, plan.queue_age)), _dur(plan.queue_age))))
    wall = now.wall if now.wall is not None and clock_ok(now.wall) else None
    if wall is not None and plan.rules:
        cands.append(_slot(plan, now, wall))  # the calendar replaces the interval
    elif plan.interval:
        base = now.last_start if now.last_start is not None else now.boot
        cands.append((_left(now, base, plan.interval * 1000), "interval",
                      ("clock not set: interval only (every %s)" if plan.rules else "every %s (schedule.interval)")
                      % _dur(plan.interval)))
    if not cands:
        return None, "", "clock not set: no schedule.interval" if plan.rules and wall is None else "nothing scheduled"

    gap = _left(now, now.last_start, plan.min_gap * 1000) if now.last_start is not None else 0
    best = None
    for c in cands:
        if c[0] < gap:
            c = (gap, c[1], "%s; min gap: %s left" % (c[2], _dur(gap)))
        if best is None or c[0] < best[0]:
            best = c
    return best
