"""The schedule keys (`schedule.*`, `session.retry_*`) parsed into a scheduler
Plan: at start-up (config checking) and when the session owner starts, then
unloaded (scheduler.parse_plan). docs/sessions.md documents the forms."""

from .compat import const
from .config import ConfigError

_DAY_NAMES = const(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
_WINDOW_FORM = const("expected [DAYS] HH:MM-HH:MM every MINUTES")
_TIME_FORM = const("expected [DAYS] HH:MM")


class Plan:
    """The schedule keys, parsed once (parse_plan). Times are minutes, gaps seconds.

    `rules`: tuples (days mask bit0=Mon, start minute, span minutes, step minutes,
    kind "window"/"time", entry text); a fixed time is a window of span 0.

    Attributes (set by parse_plan): rules, offset (s: local = UTC + offset),
    interval, min_gap, queue_count, queue_age, urgent, daily_calls,
    daily_seconds, retry_delay, retry_max. No methods: an instance must not keep
    this module's code alive once the module is unloaded (scheduler.parse_plan).
    """

    rules = []  # replaced per instance by parse_plan (never appended to here)
    offset = 0
    interval = 0
    min_gap = 300
    queue_count = 0
    queue_age = 0
    urgent = True
    daily_calls = 0
    daily_seconds = 0
    retry_delay = 120
    retry_max = 3600


def _quote(e):
    return '"%s"' % e if isinstance(e, str) else repr(e)


def _days(s):
    """'daily' | 'mon' | 'mon-fri' | 'sat,sun' | 'fri-mon' (wraps) -> 7-bit mask, 0 if bad."""
    s = s.lower()
    if s == "daily":
        return 0x7F
    mask = 0
    for part in s.split(","):
        a, _, b = part.partition("-")
        if a not in _DAY_NAMES or (b and b not in _DAY_NAMES):
            return 0
        i = _DAY_NAMES.index(a)
        j = _DAY_NAMES.index(b) if b else i
        while True:
            mask |= 1 << i
            if i == j:
                break
            i = (i + 1) % 7
    return mask


def _hhmm(s, end=False):
    """'08:00' -> 480 minutes, -1 if bad; '24:00' only as the end of a window."""
    h, _, m = s.partition(":")
    if not (h.isdigit() and m.isdigit() and len(h) <= 2 and len(m) == 2):
        return -1
    v = int(h) * 60 + int(m)
    if int(m) > 59 or v > (1440 if end else 1439):
        return -1
    return v


def _rule(key, e, window):
    """One schedule.windows / schedule.times entry -> rule tuple; ConfigError if bad."""
    form = _WINDOW_FORM if window else _TIME_FORM
    words = e.split() if isinstance(e, str) else []
    n = 4 if window else 2
    if len(words) == n - 1:
        words.insert(0, "daily")  # DAYS may be left out
    if len(words) != n:
        raise ConfigError(key, "bad entry %s (%s)" % (_quote(e), form))
    mask = _days(words[0])
    if not mask:
        raise ConfigError(key, "bad entry %s (unknown days %s: use daily, mon, mon-fri, sat,sun)"
                          % (_quote(e), _quote(words[0])))
    text = " ".join(words)
    if not window:
        t = _hhmm(words[1])
        if t < 0:
            raise ConfigError(key, "bad entry %s (%s)" % (_quote(e), form))
        return (mask, t, 0, 1, "time", text)
    a, _, b = words[1].partition("-")
    start, end = _hhmm(a), _hhmm(b, True)
    if start < 0 or end < 0 or words[2].lower() != "every" or not words[3].isdigit():
        raise ConfigError(key, "bad entry %s (%s)" % (_quote(e), form))
    step = int(words[3])
    if not 1 <= step <= 1440:
        raise ConfigError(key, "bad entry %s (every must be 1-1440 minutes)" % _quote(e))
    span = end - start if end >= start else end + 1440 - start  # end < start: runs past midnight
    return (mask, start, span, step, "window", text)


def parse_plan(cfg):
    """Config -> Plan. Raises ConfigError(key, why) naming the key and the bad entry."""
    p = Plan()
    p.rules = []
    for key, window in (("schedule.windows", True), ("schedule.times", False)):
        for e in cfg[key]:
            p.rules.append(_rule(key, e, window))
    off = cfg["schedule.utc_offset"]
    if not -720 <= off <= 840:
        raise ConfigError("schedule.utc_offset", "%d is out of range (-720..840 minutes, UTC-12 to UTC+14)" % off)
    p.offset = off * 60
    p.interval = cfg["schedule.interval"]
    p.min_gap = cfg["schedule.min_gap"]
    p.queue_count = cfg["schedule.queue_count"]
    p.queue_age = cfg["schedule.queue_age"]
    p.urgent = bool(cfg["schedule.urgent"])
    p.daily_calls = cfg["schedule.daily_calls"]
    p.daily_seconds = cfg["schedule.daily_minutes"] * 60
    p.retry_delay = cfg["session.retry_delay"]
    p.retry_max = cfg["session.retry_max"]
    return p
