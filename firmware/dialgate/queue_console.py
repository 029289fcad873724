"""Console commands for the outbound queue: queue list/show/retry/delete/flush."""

from . import compat, log
from .compat import const
from .console import CommandError, need

_MAX_LIST = const(200)  # lines `queue list` prints before summarising the rest
_ERR_LIST = const(80)  # characters of the last error `queue list` shows
_HDR_LINES = const(40)  # header lines `queue show` prints
_HDR_WIDTH = const(200)  # characters of each
_HDR_OCTETS = const(16384)  # octets of the message it reads looking for the end of the header


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
        raise CommandError("no queued message %s" % mid[:64])


def _next(rec, now):
    if not compat.clock_ok(now) or rec.next_attempt <= now:
        return "now"
    return "in " + _span(rec.next_attempt - now)


def _last_error(rec):
    """The last reply that did not deliver: a pending recipient's, else a failed one's."""
    for want in ("pending", "failed"):
        for r in rec.rcpts:
            if r.state == want and r.reply:
                return r.reply
    return ""


def _list_line(rec, now):
    """`ID AGE SIZE <sender> -> <first rcpt> and N more, P/N pending, T tries, next WHEN; last: ERROR`."""
    age = _span(max(0, now - rec.created)) if compat.clock_ok(now) and compat.clock_ok(rec.created) else "?"
    n = len(rec.rcpts)
    first = rec.rcpts[0].address if n else ""
    err = _last_error(rec)
    return "%s %6s %8d <%s> -> <%s>%s, %d/%d pending, %d tries, next %s%s" % (
        rec.id, age, rec.size, rec.sender, first, (" and %d more" % (n - 1)) if n > 1 else "",
        len(rec.pending()), n, rec.attempts, _next(rec, now), ("; last: " + err[:_ERR_LIST]) if err else "")


def cmd_list(gw, args):
    now = compat.wall_time()
    ids = gw.outq.ids()
    out = []
    for mid in ids[:_MAX_LIST]:
        try:
            rec = gw.outq.load(mid)
        except KeyError:
            continue
        out.append(_list_line(rec, now))
    if len(ids) > _MAX_LIST:
        out.append("... and %d more" % (len(ids) - _MAX_LIST))
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
    if rec.local:
        out.append("also delivered to: %s" % " ".join(rec.local))
    for r in rec.rcpts:
        out.append("rcpt <%s> %s, %d tries%s" % (r.address, r.state, r.attempts, (": " + r.reply) if r.reply else ""))
    out.append("headers:")
    compat.gc_collect()  # the list grows by up to _HDR_LINES lines: room in one piece on a board
    try:
        f = gw.outq.open_body(rec.id)
    except OSError as e:
        out.append("  (body unreadable: %s)" % compat.exc_text(e))
        return out
    try:
        _headers(f, out)
    finally:
        f.close()
    return out


def _printable(b):
    """Header bytes (a bytearray, changed in place) -> text: tabs and printable
    ASCII kept, anything else "?" (no list of characters: heap on a board)."""
    for i in range(len(b)):
        c = b[i]
        if not (32 <= c < 127 or c == 9):
            b[i] = 63
    return b.decode()


def _headers(f, out):
    """Append the message's header lines (RFC 5322 §2.2, up to the empty line)
    to `out`, each "  " + at most _HDR_WIDTH characters, reading the body in
    256-octet chunks: at most _HDR_LINES lines and _HDR_OCTETS octets."""
    cur = bytearray()
    seen = 0
    n = 0
    while seen < _HDR_OCTETS:
        chunk = f.read(256)
        if not chunk:
            break
        seen += len(chunk)
        i = 0
        while True:
            j = chunk.find(b"\n", i)
            room = _HDR_WIDTH - len(cur)
            if room > 0:
                cur.extend(chunk[i : (len(chunk) if j < 0 else j)][:room])
            if j < 0:
                break
            if cur and cur[-1] == 13:
                cur = cur[:-1]
            if not cur:
                return
            if n == _HDR_LINES:
                out.append("  ... (more header lines not shown)")
                return
            out.append("  " + _printable(cur))
            n += 1
            cur = bytearray()
            i = j + 1
    if cur and cur[-1] == 13:
        cur = cur[:-1]
    if cur:
        out.append("  " + _printable(cur))
    if seen >= _HDR_OCTETS:
        out.append("  ... (more header lines not shown)")


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
