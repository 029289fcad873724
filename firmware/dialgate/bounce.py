"""Delivery status notifications (RFC 3464) from the null sender to a local sender.

A DSN is a multipart/report (RFC 6522) with a human part, a
message/delivery-status part and the original header (text/rfc822-headers),
streamed into the spool in bounded chunks. A message from <> never gets one.
"""

from . import compat
from .retry import rfc5322_date

# Octets of the original header copied into a DSN (RFC 3462 §3 allows a subset).
MAX_HEADER_COPY = compat.const(16384)

FAILED = "failed"
DELAYED = "delayed"

def status_of(reply, default):
    """RFC 3463 status code from "550 5.1.1 text" (or "4.4.7 text"), else `default` ("5.0.0")."""
    for s in reply.split(" ", 2)[:2]:
        bits = s.split(".")
        if len(bits) == 3 and bits[0] in ("2", "4", "5") and bits[1].isdigit() and bits[2].isdigit():
            return s
    return default


def _clean(text):
    """One header-safe line: no CR/LF/control characters, at most 400 characters.
    Copies only when something must change (RAM: replies are usually clean)."""
    text = text[:400]
    for ch in text:
        if not " " <= ch <= "~":
            break
    else:
        return text
    b = bytearray(text.encode())  # in place: no list of one-character strings on a board
    for i in range(len(b)):
        if not 32 <= b[i] <= 126:
            b[i] = 32
    return b.decode()


class Notice:
    """What one DSN says. `rcpts`: list of (address, reply text) for `action`
    ("failed" or "delayed"); `remote`: the MTA that answered ("" if none)."""

    def __init__(self, msg_id, sender, created, action, rcpts, remote="", retry_until=0):
        self.msg_id = msg_id
        self.sender = sender
        self.created = created
        self.action = action
        self.rcpts = rcpts
        self.remote = remote
        self.retry_until = retry_until


def write_head(w, notice, hostname, now, boundary):
    """The DSN up to the original header, one short line per write (no big string)."""

    def put(line):
        w.write(line.encode() + b"\r\n")

    n = notice
    failed = n.action == FAILED
    subject = "Undelivered Mail Returned to Sender" if failed else "Delayed Mail (still being retried)"
    date = rfc5322_date(now)
    for line in (
        "From: Mail Delivery System <MAILER-DAEMON@%s>" % hostname,
        "To: <%s>" % _clean(n.sender),
        "Subject: %s" % subject,
        "Date: %s" % date,
        "Message-ID: <dsn.%s.%d@%s>" % (n.msg_id, now, hostname),
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="%s"' % boundary,  # RFC 6522
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        "--" + boundary,
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is the mail gateway at %s." % hostname,
        "",
    ):
        put(line)
    if failed:
        put("Your message could not be delivered to the recipients below. It was not sent again.")
    else:
        put("Your message has not been delivered yet to the recipients below. This is only a warning;")
        put("the gateway keeps trying until %s." % rfc5322_date(n.retry_until))
    put("")
    for addr, reply in n.rcpts:
        put("<%s>: %s" % (_clean(addr), _clean(reply) or "no reply"))
    for line in (
        "",
        "--" + boundary,
        "Content-Type: message/delivery-status",  # RFC 3464 §2
        "",
        "Reporting-MTA: dns; %s" % hostname,
        "X-Dialgate-Queue-ID: %s" % n.msg_id,
    ):
        put(line)
    if n.created:
        put("Arrival-Date: %s" % rfc5322_date(n.created))
    default = "5.0.0" if failed else "4.0.0"
    for addr, reply in n.rcpts:
        put("")
        put("Final-Recipient: rfc822; %s" % _clean(addr))  # RFC 3464 §2.3.2
        put("Action: %s" % n.action)
        st = status_of(reply, default)
        if not failed and st[0] == "5":
            st = default
        put("Status: %s" % st)
        if n.remote:
            put("Remote-MTA: dns; %s" % _clean(n.remote))
        if reply and reply[:3].isdigit():
            put("Diagnostic-Code: smtp; %s" % _clean(reply))
        put("Last-Attempt-Date: %s" % date)
        if not failed and n.retry_until:
            put("Will-Retry-Until: %s" % rfc5322_date(n.retry_until))
    for line in ("", "--" + boundary, "Content-Type: text/rfc822-headers", ""):
        put(line)


def write_dsn(w, notice, hostname, now, body, rbuf):
    """Stream the whole DSN to `w.write(bytes)`: head, the original header read
    from `body` (binary file or None) through `rbuf`, closing boundary.
    RAM: the head text plus `rbuf`; the header copy is capped at MAX_HEADER_COPY."""
    boundary = "=_dialgate_dsn_" + notice.msg_id + "_" + "".join(["%02x" % b for b in compat.urandom(4)])
    write_head(w, notice, hostname, now, boundary)
    ends_nl = copy_header(w, body, rbuf)
    tail = "--%s--\r\n" % boundary
    w.write((tail if ends_nl else "\r\n" + tail).encode())


def copy_header(w, body, rbuf):
    """Copy the header of `body` to `w`: every header line, without the blank
    line that ends it (RFC 5322 §2.1). Returns True if the copy ends with a line
    end. Line-end state is carried across chunks of `rbuf`."""
    if body is None:
        return True
    mv = memoryview(rbuf)
    copied = 0
    at_bol = True  # the copy so far ends a line (or is empty)
    held = False  # a CR right after a line end, written only if no LF follows
    while copied < MAX_HEADER_COPY:
        n = body.readinto(rbuf)
        if not n:
            break
        n = min(n, MAX_HEADER_COPY - copied)
        copied += n
        if held:
            if rbuf[0] == 10:
                return True
            w.write(b"\r")
            held = False
            at_bol = False
        elif at_bol:
            if rbuf[0] == 10 or (n >= 2 and rbuf[0] == 13 and rbuf[1] == 10):
                return True
            if n == 1 and rbuf[0] == 13:
                held = True
                continue
        i = rbuf.find(b"\n\r\n", 0, n)
        j = rbuf.find(b"\n\n", 0, n)
        if i < 0 or 0 <= j < i:
            i = j
        if i >= 0:
            w.write(mv[: i + 1])
            return True
        end = n
        if n >= 2 and rbuf[n - 2] == 10 and rbuf[n - 1] == 13:
            end = n - 1
            held = True
        w.write(mv[:end])
        at_bol = rbuf[end - 1] == 10
    if held:
        w.write(b"\r")
        at_bol = False
    return at_bol


def send_dsn(spool, router, hostname, notice, now, rbuf):
    """Write the DSN into the spool addressed to the original sender (a local
    maildrop, or the outbound queue for a remote sender), from <>.

    Returns the new message id, or None when no DSN is due: the original came
    from <> (never bounce a bounce, RFC 3464 §2 / RFC 5321 §4.5.5) or its sender
    has no route. Raises SpoolFull/OSError (nothing half-written remains).
    """
    if not notice.sender:
        return None
    route = router.route(notice.sender)
    if route is None:
        return None
    body = None
    w = spool.writer()
    try:
        try:
            body = spool.queue.open_body(notice.msg_id)
        except OSError:
            body = None
        write_dsn(w, notice, hostname, now, body, rbuf)
        return w.commit("", [route])
    except BaseException:
        w.abort()
        raise
    finally:
        if body is not None:
            body.close()
