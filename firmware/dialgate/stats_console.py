"""Console commands for the cost log (gw.costlog): stats, stats calls [N], stats csv.

`stats` also prints the relay's counters (gw.relay.state) under the per-day sums.
"""

from .compat import const
from .console import CommandError

_DAYS_SHOWN = const(14)  # days `stats` lists (the newest)
_CALLS_DEFAULT = const(10)
_CALLS_MAX = const(500)

_DAY_HEAD = const("day         calls failed   online   bytes in  bytes out msgs in msgs out")


def _online(s):
    """Seconds -> "14m05s" (minutes are what the call is billed by)."""
    return "%dm%02ds" % (s // 60, s % 60)


def _day_line(t):
    return "%-11s %5d %6d %8s %10d %10d %7d %8d" % (t[0], t[1], t[2], _online(t[3]), t[4], t[5], t[6], t[7])


def cmd_stats(gw, args):
    if args:
        raise CommandError("usage: stats [calls [N] | csv]")
    days = gw.costlog.day_totals(gw.cfg["schedule.utc_offset"])
    out = []
    if days:
        out.append(_DAY_HEAD)
        from .costlog import UNSET

        if days[0][0] == UNSET:
            out.append(_day_line(days[0]))
            days = days[1:]
        if len(days) > _DAYS_SHOWN:
            out.append("(%d earlier day(s) not shown: stats csv has every call)" % (len(days) - _DAYS_SHOWN))
            days = days[-_DAYS_SHOWN:]
        for t in days:
            out.append(_day_line(t))
    else:
        out.append("no calls logged yet")
    r = gw.relay
    st = r.state
    out.append("delivered: %d" % st.delivered)
    out.append("deferred: %d" % st.deferred)
    out.append("bounced: %d" % st.bounced)
    out.append("queued: %d" % len(gw.outq.ids()))
    out.append("online sessions: %d" % gw.costlog.last_number())
    out.append("last run: %s%s" % (r.last_run, " (running now)" if r.running else ""))
    return out


def _call_line(d, offset):
    from .costlog import UNSET, local_time  # not at import: `help` loads this module for its rows

    when = local_time(d["start"], offset) or UNSET
    return "#%d %s %s: %s, %d bps, online %ds, in %d B/%d msgs, out %d B/%d msgs, ask %s, end %s, %s" % (
        d["n"], when, d["trigger"] or "?", "; ".join(d["dials"]) or "no dial", d["speed"], d["online"],
        d["bytes_in"], d["msgs_in"], d["bytes_out"], d["msgs_out"], d["ask"] or "-", d["end"] or "?",
        "ok" if d["ok"] else "FAILED")


def cmd_calls(gw, args):
    n = _CALLS_DEFAULT
    if len(args) > 1:
        raise CommandError("usage: stats calls [N]")
    if args:
        a = args[0]
        n = int(a) if a.isdigit() and len(a) <= 3 else 0
        if not 1 <= n <= _CALLS_MAX:
            raise CommandError("N must be a number from 1 to %d" % _CALLS_MAX)
    off = gw.cfg["schedule.utc_offset"]
    out = []  # formatted as read: a line is a quarter of a record dict's heap
    for d in gw.costlog.each():
        out.append(_call_line(d, off))
        if len(out) > n:
            out.pop(0)
    return out or ["no calls logged yet"]


def cmd_csv(gw, args):
    if args:
        raise CommandError("usage: stats csv")
    return list(gw.costlog.csv_lines(gw.cfg["schedule.utc_offset"]))


def add_commands(commands):
    commands.add("stats", cmd_stats, "stats", "calls per day (newest last) and relay counters")
    commands.add("stats calls", cmd_calls, "stats calls [N]", "the last N dial-up calls (default 10)")
    commands.add("stats csv", cmd_csv, "stats csv", "every logged call as CSV (header first)")
