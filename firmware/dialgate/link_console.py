"""The console's `dial`, `hangup` and `schedule` (app.LAZY_COMMANDS): a command
group of their own, so a call keeps only the link itself resident (link.py) and
the console's idle unloading can drop these while the line is up."""

import asyncio


def cmd_dial(gw, args):
    """`dial`: the session owner makes a whole call (dial, flush, ask, linger,
    hang up); the scheduler's limits do not hold the operator back."""
    from .console import CommandError

    link = gw.link
    if link is None:
        raise CommandError("no link configured")
    dial = getattr(gw, "request_session", None)
    if dial is not None:
        cur = gw.sessions.current
        if cur is not None:
            return ["call %d in progress (%s)" % (cur.n, cur.phase)]
        dial("operator")
        return ["call requested: dialling within a second; `status` shows it"]
    if link.is_up():  # a gateway without the session owner (tests of the link alone)
        return ["link already up: %s" % link.describe()]
    if link.state == "dialling":
        return ["already dialling"]
    _spawn(gw, link.up())
    return ["dialling (%s link); `status` shows the outcome" % link.kind]


def cmd_hangup(gw, args):
    from .console import CommandError

    link = gw.link
    if link is None:
        raise CommandError("no link configured")
    if link.kind == "always-on":
        raise CommandError("an always-on link cannot hang up")
    if getattr(gw, "request_session", None) is not None and gw.sessions.hangup("operator"):
        return ["hanging up call %d" % gw.sessions.current.n]
    if link.state == "down":
        return ["link already down"]
    _spawn(gw, link.down())
    return ["hanging up"]


def cmd_schedule(gw, args):
    """`schedule`: the next call and why, the next slots, the limits."""
    from . import scheduler
    from .compat import clock_trusted, wall_time

    sr = gw.sessions
    plan = sr.plan
    now = sr.situation()
    secs, kind, why = scheduler.next_call(plan, now)
    sr.next = (secs, kind, why)
    from .console_base import next_call_text

    out = ["next call: %s" % next_call_text(sr)]
    if clock_trusted():
        wall = wall_time()
        out.append("clock: trusted, local time %s (schedule.utc_offset %+d min)" % (
            scheduler.clock_text(plan, wall), gw.cfg["schedule.utc_offset"]))
        for t, w in scheduler.upcoming(plan, wall, 6):
            out.append("  %s  %s" % (scheduler.clock_text(plan, t), w))
    else:
        out.append("clock: not set yet: time-of-day windows wait for it; calls run on schedule.interval")
    c = gw.cfg
    out.append("today: %d call(s)%s, %d min online%s" % (
        now.calls_today, (" of %d" % c["schedule.daily_calls"]) if c["schedule.daily_calls"] else "",
        now.seconds_today // 60, (" of %d" % c["schedule.daily_minutes"]) if c["schedule.daily_minutes"] else ""))
    out.append("queue: %d due, %d urgent; min gap %d s%s" % (
        now.due, now.urgent, plan.min_gap, ("; %d failed call(s): %s" % (sr.fails, sr.fail_why)) if sr.fails else ""))
    return out


def _spawn(gw, coro):
    """Run a console action in the background; the gateway cancels it on stop."""
    gw.tasks = [t for t in gw.tasks if not t.done()]
    gw.tasks.append(asyncio.create_task(coro))


def add_commands(commands):
    commands.add("dial", cmd_dial, "dial", "call the ISP now: send the queue, fetch held mail, hang up")
    commands.add("hangup", cmd_hangup, "hangup", "hang up the call now")
    commands.add("schedule", cmd_schedule, "schedule", "the next calls and why, today's use of the limits")
