"""scheduler: a fake clock (wall seconds and ms ticks passed in), no sleeping."""

import fwtest
from dialgate import compat
from dialgate.config import ConfigError
from dialgate.scheduler import Now, clock_text, local_day, next_call, parse_plan, slot_due, upcoming, weekday

MON = 1704067200  # 2024-01-01 00:00 UTC, a Monday
WIN = "mon-fri 08:00-18:00 every 60"


def at(day, hh, mm=0):
    """Wall seconds of day `day` after MON (UTC), hh:mm."""
    return MON + day * 86400 + hh * 3600 + mm * 60


def plan(over=None):
    return parse_plan(fwtest.host_config(over))


class Over:
    """A Config with some keys replaced, for bad values config.build may not check."""

    def __init__(self, cfg, over):
        self.cfg = cfg
        self.over = over

    def __getitem__(self, key):
        return self.over[key] if key in self.over else self.cfg[key]


def test_defaults_plan_nothing():
    p = plan()
    assert (p.interval, p.min_gap, p.retry_delay, p.retry_max, p.urgent) == (0, 300, 120, 3600, True)
    assert next_call(p, Now(wall=at(0, 9), ticks=5000)) == (None, "", "nothing scheduled")
    assert upcoming(p, at(0, 9), 3) == []


def test_window_slots():
    p = plan({"schedule.windows": [WIN, "sat 08:00-09:00 every 45"]})
    assert next_call(p, Now(wall=at(0, 7, 30))) == (1800, "window", "window " + WIN + " at 08:00")
    assert next_call(p, Now(wall=at(0, 8))) == (0, "window", "window " + WIN + " at 08:00")
    # served at 08:00 (last_slot), asked again 30 s later: the next slot is 09:00
    n = Now(wall=at(0, 8) + 30, ticks=30000, last_start=0, last_end=20000, last_slot=at(0, 8))
    assert next_call(p, n) == (3570, "window", "window " + WIN + " at 09:00")
    # 18:00 is a slot (lands exactly); after it, Tuesday 08:00
    assert [s for s, _ in upcoming(p, at(0, 16, 59), 3)] == [at(0, 17), at(0, 18), at(1, 8)]
    # every 45 from 08:00 to 09:00: 08:00 and 08:45 only; Friday 18:00 -> Saturday 08:00
    assert upcoming(p, at(4, 18), 3) == [(at(5, 8), "window sat 08:00-09:00 every 45 at 08:00"),
                                         (at(5, 8, 45), "window sat 08:00-09:00 every 45 at 08:45"),
                                         (at(7, 8), "window " + WIN + " at 08:00")]
    assert clock_text(p, at(2, 9)) == "Wed 09:00"
    assert upcoming(p, None, 3) == []


def test_weekdays_weekend_and_wrapping_range():
    p = plan({"schedule.times": ["SAT,Sun 10:00", "fri-mon 07:00"]})
    got = [s for s, _ in upcoming(p, at(0, 12), 6)]
    assert got == [at(4, 7), at(5, 7), at(5, 10), at(6, 7), at(6, 10), at(7, 7)]
    assert weekday(local_day(p, at(6, 10))) == 6
    assert upcoming(p, at(0, 12), 1)[0][1] == "time fri-mon 07:00"


def test_fixed_times():
    p = plan({"schedule.times": ["daily 22:00", "mon-fri 06:30", "12:15"]})
    got = upcoming(p, at(4, 23), 5)  # Friday night
    assert got == [(at(5, 12, 15), "time daily 12:15"), (at(5, 22), "time daily 22:00"),
                   (at(6, 12, 15), "time daily 12:15"), (at(6, 22), "time daily 22:00"),
                   (at(7, 6, 30), "time mon-fri 06:30")]
    assert next_call(p, Now(wall=at(0, 22))) == (0, "time", "time daily 22:00")


def test_overnight_window():
    p = plan({"schedule.windows": ["fri 23:00-01:00 every 60"]})
    assert [s for s, _ in upcoming(p, at(0, 0), 4)] == [at(4, 23), at(5, 0), at(5, 1), at(11, 23)]
    assert slot_due(p, at(5, 0, 30), 0) == at(5, 0)  # Saturday 00:00 belongs to Friday's window


def test_utc_offset():
    p = plan({"schedule.times": ["mon 01:00", "08:00"], "schedule.utc_offset": 120})
    assert p.offset == 7200
    # Sunday 23:00 UTC is Monday 01:00 in UTC+2
    assert clock_text(p, at(6, 23)) == "Mon 01:00"
    assert weekday(local_day(p, at(6, 23))) == 0
    assert [s for s, _ in upcoming(p, at(6, 12), 2)] == [at(6, 23), at(7, 6)]
    assert next_call(p, Now(wall=at(7, 6))) == (0, "time", "time daily 08:00")


def test_negative_utc_offset():
    p = plan({"schedule.times": ["mon 20:00"], "schedule.utc_offset": -300})
    # Monday 20:00 in UTC-5 is Tuesday 01:00 UTC
    assert upcoming(p, at(0, 0), 1) == [(at(1, 1), "time mon 20:00")]
    assert clock_text(p, at(1, 1)) == "Mon 20:00"


def test_operator_overrides_every_limit():
    p = plan({"schedule.daily_calls": 6, "schedule.daily_minutes": 30})
    n = Now(wall=at(0, 9), ticks=60000, last_start=30000, last_end=50000, requested=True,
            fails=2, fail_why="BUSY", calls_today=6, seconds_today=1800)
    secs, kind, why = next_call(p, n)
    assert (secs, kind) == (0, "operator")
    assert "overrides" in why and "daily call cap 6" in why and "min gap" in why and "retry" in why
    assert next_call(p, Now(requested=True)) == (0, "operator", "operator dial")


def test_urgent_bypasses_gap_not_limits():
    p = plan({"schedule.daily_calls": 6, "schedule.daily_minutes": 30})
    n = Now(wall=at(0, 9), ticks=20000, last_start=10000, last_end=15000, due=1, urgent=1)
    assert next_call(p, n) == (0, "urgent", "1 urgent message")
    n.calls_today = 6
    assert next_call(p, n) == (None, "", "daily call cap 6 reached")
    n.calls_today = 1
    n.seconds_today = 1800
    assert next_call(p, n) == (None, "", "daily budget 30m used")


def test_urgent_off():
    p = plan({"schedule.urgent": False})
    assert next_call(p, Now(ticks=1000, due=1, urgent=1)) == (None, "", "nothing scheduled")


def test_queue_count_and_min_gap():
    p = plan({"schedule.queue_count": 3})
    n = Now(ticks=100000, due=2)
    assert next_call(p, n) == (None, "", "nothing scheduled")
    n.due = 3
    assert next_call(p, n) == (0, "queue", "3 due messages (schedule.queue_count 3)")
    n.last_start, n.last_end = 40000, 70000  # started 60 s ago: 240 s of the 300 s gap left
    assert next_call(p, n) == (240, "queue", "3 due messages (schedule.queue_count 3); min gap: 4m left")
    n.ticks = 340000
    assert next_call(p, n)[0] == 0
    assert next_call(plan({"schedule.queue_count": 1}), Now(ticks=1000, due=1))[2] == (
        "1 due message (schedule.queue_count 1)")


def test_queue_age():
    p = plan({"schedule.queue_age": 1800})
    n = Now(ticks=5000, due=1, oldest=600000)
    assert next_call(p, n) == (1200, "age", "oldest due message waited 30m (schedule.queue_age 30m)")
    n.oldest = 2700000
    assert next_call(p, n) == (0, "age", "oldest due message waited 45m (schedule.queue_age 30m)")
    n.due, n.oldest = 0, -1
    assert next_call(p, n)[0] is None


def test_earliest_candidate_wins():
    p = plan({"schedule.queue_age": 1800, "schedule.windows": [WIN]})
    n = Now(wall=at(0, 8, 50), ticks=1000000, due=1, oldest=0, last_slot=at(0, 8))
    assert next_call(p, n) == (600, "window", "window " + WIN + " at 09:00")
    n.oldest = 1500000
    assert next_call(p, n)[:2] == (300, "age")


def test_daily_limits_hold_triggers_and_retry():
    p = plan({"schedule.daily_calls": 6, "schedule.daily_minutes": 30, "schedule.windows": [WIN]})
    n = Now(wall=at(0, 9), ticks=900000, due=5, oldest=9999999, calls_today=5, seconds_today=1799)
    assert next_call(p, n)[:2] == (0, "window")
    n.fails, n.fail_why, n.last_start, n.last_end = 1, "NO CARRIER", 100000, 200000
    n.calls_today = 6
    assert next_call(p, n) == (None, "", "daily call cap 6 reached")
    n.calls_today = 0
    n.seconds_today = 1800
    assert next_call(p, n) == (None, "", "daily budget 30m used")
    n.seconds_today = 0
    assert next_call(p, n) == (0, "retry", "retry 1 after NO CARRIER")


def test_retry_backoff_doubles_to_cap():
    p = plan({"schedule.windows": [WIN], "schedule.queue_count": 1})
    n = Now(wall=at(0, 9), ticks=1000000, due=3, urgent=1, last_start=990000, last_end=1000000,
            fail_why="BUSY")
    got = []
    for fails in (1, 2, 3, 4, 5, 6, 7, 60):
        n.fails = fails
        got.append(next_call(p, n)[0])
    assert got == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    n.fails = 2
    assert next_call(p, n) == (240, "retry", "retry 2 after BUSY")
    # counted from the failed call's end, not held back by min_gap (start 130 s ago)
    n.fails, n.last_start, n.last_end, n.ticks = 1, 0, 5000, 130000
    assert next_call(p, n)[:2] == (0, "retry")


def test_untrusted_clock_interval_then_windows():
    p = plan({"schedule.interval": 3600, "schedule.windows": [WIN]})
    n = Now(wall=None, ticks=10000, boot=0)
    assert next_call(p, n) == (3590, "interval", "clock not set: interval only (every 1h00m)")
    n.wall = 1000  # a board clock still in 1970: not trusted either
    assert next_call(p, n)[:2] == (3590, "interval")
    n.last_start, n.last_end, n.ticks = 20000, 80000, 100000  # counted from the last call's start
    assert next_call(p, n)[0] == 3520
    n.wall = at(0, 8, 30)  # the call set the clock: the windows take over, the interval is unused
    assert next_call(p, n) == (1800, "window", "window " + WIN + " at 09:00")
    assert upcoming(p, None, 2) == []
    p = plan({"schedule.windows": [WIN]})
    assert next_call(p, Now(ticks=5000)) == (None, "", "clock not set: no schedule.interval")


def test_interval_with_trusted_clock_and_no_calendar():
    p = plan({"schedule.interval": 1800})
    assert next_call(p, Now(wall=at(0, 9), ticks=600000)) == (1200, "interval", "every 30m (schedule.interval)")
    # an interval shorter than min_gap waits out the gap
    p = plan({"schedule.interval": 60})
    n = Now(wall=at(0, 9), ticks=100000, last_start=90000, last_end=95000)
    assert next_call(p, n) == (290, "interval", "every 1m (schedule.interval); min gap: 5m left")


def test_clock_jumps_backwards_slot_not_served_twice():
    p = plan({"schedule.windows": [WIN]})
    assert slot_due(p, at(0, 9), 0) == at(0, 9)
    served = slot_due(p, at(0, 9, 1), 0)  # the call at 09:00:xx records its slot
    assert served == at(0, 9)
    n = Now(wall=at(0, 8, 50), ticks=900000, last_start=0, last_end=300000, last_slot=served)
    assert slot_due(p, at(0, 9, 5), served) == 0
    assert next_call(p, n) == (4200, "window", "window " + WIN + " at 10:00")
    n.wall = at(0, 9, 0)
    assert next_call(p, n)[0] == 3600
    # a last_slot over a day ahead came from a wrong clock (later corrected): ignored
    n.last_slot = at(400, 9)
    assert slot_due(p, at(0, 9, 1), n.last_slot) == at(0, 9)
    assert next_call(p, n)[:2] == (0, "window")


def test_missed_slots_skipped_and_covered_slot_served():
    p = plan({"schedule.windows": [WIN]})
    # boot at 11:40 with no history: the 11:00 slot is stale, wait for 12:00
    assert next_call(p, Now(wall=at(0, 11, 40), ticks=2000)) == (1200, "window", "window " + WIN + " at 12:00")
    # slot at 11:00 held back by nothing, 10 minutes late: still served
    assert next_call(p, Now(wall=at(0, 11, 10), ticks=2000))[0] == 0
    # a queue call online 08:55..09:10 covered the 09:00 slot
    n = Now(wall=at(0, 9, 11), ticks=1000000, last_start=1000000 - 960000, last_end=1000000 - 60000,
            last_slot=at(0, 8))
    assert next_call(p, n) == (2940, "window", "window " + WIN + " at 10:00")
    # a queue call 09:02..09:04 (it did not record the slot) served the 09:00 slot too
    n.last_start, n.last_end, n.wall = 1000000 - 240000, 1000000 - 120000, at(0, 9, 6)
    assert next_call(p, n)[:2] == (3240, "window")
    # a call that ended before the slot: the slot waits out the gap
    n.last_start, n.last_end, n.wall = 1000000 - 200000, 1000000 - 150000, at(0, 9)
    assert next_call(p, n) == (100, "window", "window " + WIN + " at 09:00; min gap: 2m left")


def test_ticks_near_wrap():
    # MicroPython ticks wrap (period 2**30 ms on the unix port); compat.ticks_add handles it
    p = plan({"schedule.interval": 600})
    start = compat.ticks_add(0, -5000)  # just before the wrap
    n = Now(ticks=compat.ticks_add(start, 100000), boot=compat.ticks_add(start, -1000), last_start=start,
            last_end=compat.ticks_add(start, 30000))
    assert next_call(p, n)[:2] == (500, "interval")
    n.fails, n.fail_why = 3, "NO DIALTONE"  # 480 s from the end (70 s ago)
    assert next_call(p, n) == (410, "retry", "retry 3 after NO DIALTONE")
    n.fails, n.due, n.urgent = 0, 1, 1
    assert next_call(p, n)[:2] == (0, "urgent")


def test_parse_errors_name_key_and_entry():
    base = fwtest.host_config()
    cases = (
        ("schedule.windows", ["mon-fry 8-18"], '"mon-fry 8-18" (expected [DAYS] HH:MM-HH:MM every MINUTES)'),
        ("schedule.windows", ["mon-fry 08:00-18:00 every 60"], 'unknown days "mon-fry"'),
        ("schedule.windows", ["08:00-18:00 every 0"], "every must be 1-1440"),
        ("schedule.windows", ["daily 08:00-18:60 every 5"], "expected"),
        ("schedule.windows", [5], "bad entry 5"),
        ("schedule.times", ["daily 25:00"], '"daily 25:00" (expected [DAYS] HH:MM)'),
        ("schedule.times", ["sun-xyz 06:30"], "unknown days"),
        ("schedule.times", ["mon fri 06:30"], "expected"),
        ("schedule.utc_offset", 900, "900 is out of range"),
    )
    for key, value, text in cases:
        try:
            parse_plan(Over(base, {key: value}))
        except ConfigError as e:
            assert e.key == key, (key, e.key)
            assert text in str(e), str(e)
            assert str(e).startswith(key + ": ")
        else:
            raise AssertionError("no error for %s %r" % (key, value))
    p = parse_plan(Over(base, {"schedule.utc_offset": 840, "schedule.times": ["Mon-FRI 6:30"]}))
    assert p.rules[0][:2] == (0x1F, 390)
