"""Console commands for the outbound queue: queue list/show/retry/delete/flush."""

from . import compat, log
from .console import CommandError, need

MAX_LIST = 200  # lines `queue list` prints before summarising the rest


def _span(s):
    """Seconds -> "3d04h", "2h05m", "7m", "40s"."""
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm" % (s // 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, s // 60 % 60)
    return "%dd%02dh" % (s // 86400, s // 3600 % 24)


def _load(gw, mid):
    try:
        return gw.outq.load(mid)
    except KeyError:
        raise CommandError("no queued message %s" % mid)


def _next(rec, now):
    if not compat.clock_ok(now) or rec.next_attempt <= now:
        return "now"
    return "in " + _span(rec.next_attempt - now)


def cmd_list(gw, args):
    now = compat.wall_time()
    ids = gw.outq.ids()
    out = []
    for mid in ids[:MAX_LIST]:
        try:
            rec = gw.outq.load(mid)
        except KeyError:
            continue
        age = _span(now - rec.created) if compat.clock_ok(now) and compat.clock_ok(rec.created) else "?"
        out.append("%s %6s %8d <%s> %d/%d pending, %d tries, next %s" % (
            mid, age, rec.size, rec.sender, len(rec.pending()), len(rec.rcpts), rec.attempts, _next(rec, now)))
    if len(ids) > MAX_LIST:
        out.append("... and %d more" % (len(ids) - MAX_LIST))
    out.append("%d message(s) queued" % len(ids))
    return out


def cmd_show(gw, args):
    need(args, 1, "queue show ID")
    from .retry import rfc5322_date

    rec = _load(gw, args[0])
    now = compat.wall_time()
    out = [
        "id: %s" % rec.id,
        "sender: <%s>" % rec.sender,
        "size: %d" % rec.size,
        "created: %s" % (rfc5322_date(rec.created) if compat.clock_ok(rec.created) else "before the clock was set"),
        "tries: %d in %d online session(s)" % (rec.attempts, rec.sessions),
        "next try: %s" % _next(rec, now),
        "delay warning sent: %s" % ("yes" if rec.id in gw.relay.state.warned else "no"),
    ]
    for r in rec.rcpts:
        out.append("rcpt <%s> %s, %d tries%s" % (r.address, r.state, r.attempts, (": " + r.reply) if r.reply else ""))
    return out


def _make_due(gw, ids):
    n = 0
    for mid in ids:
        try:
            rec = gw.outq.load(mid)
        except KeyError:
            continue
        rec.next_attempt = 0
        gw.outq.save(rec)
        gw.relay.tried.pop(mid, None)
        n += 1
    return n


def cmd_retry(gw, args):
    need(args, 1, "queue retry ID|all")
    ids = gw.outq.ids() if args[0] == "all" else [_load(gw, args[0]).id]
    n = _make_due(gw, ids)
    if gw.sessions.current is not None:
        return ["%d message(s) due now; they go in the call in progress" % n]
    return ["%d message(s) due now; they go at the next call (dial calls now)" % n]


def cmd_delete(gw, args):
    need(args, 1, "queue delete ID")
    rec = _load(gw, args[0])
    gw.outq.remove(rec.id)
    if rec.id in gw.relay.state.warned:
        gw.relay.state.warned.remove(rec.id)
    log.info("queue: %s deleted by the operator (%d recipient(s) pending, no DSN)", rec.id, len(rec.pending()))
    return ["deleted %s (no bounce is sent)" % rec.id]


def cmd_flush(gw, args):
    """Everything queued is due now, and a call goes out for it (or the one in progress takes it)."""
    n = _make_due(gw, gw.outq.ids())
    if gw.sessions.current is None:
        gw.request_session("queue flush")
        return ["%d message(s) due now; call requested" % n]
    return ["%d message(s) due now; they go in the call in progress" % n]


def add_commands(commands):
    commands.add("queue list", cmd_list, "queue list", "queued outbound messages, oldest first")
    commands.add("queue show", cmd_show, "queue show ID", "one queued message and its recipients")
    commands.add("queue retry", cmd_retry, "queue retry ID|all", "make a message (or all) due now")
    commands.add("queue delete", cmd_delete, "queue delete ID", "drop a queued message without a bounce")
    commands.add("queue flush", cmd_flush, "queue flush", "make every message due and call the ISP now")
