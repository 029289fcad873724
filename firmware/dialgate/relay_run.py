"""One run of the outbound queue (loaded when the link first comes up, not at boot):
housekeeping (expiry, delay warnings), routes, connections, per-recipient
outcomes applied to the queue records, DSNs. `relay.Relay` is the state.
"""

from . import compat, log, outq
from .compat import const
from .envelope import Envelope, outcome
from .retry import RetryPolicy, clock_ok

_MAX_WARNED = const(500)  # ids remembered as warned (relay.json stays well under its 64 KB bound)
FAILED = "failed"  # bounce.FAILED / DELAYED, without importing bounce until needed
DELAYED = "delayed"


def _text(b):
    """Reply octets -> str for records and DSNs (never raises)."""
    try:
        return b.decode()
    except UnicodeError:
        return "".join([chr(c) if 32 <= c < 127 else "?" for c in b])


def domain_of(address):
    return address[address.rfind("@") + 1 :].lower()


class QueueSource:
    """Feeds queue records to one SmtpClient lazily (one record in RAM at a time)
    and applies each decided envelope to its record."""

    def __init__(self, relay, domain, ids, now):
        self.relay = relay
        self.domain = domain  # None: every pending recipient (smarthost)
        self.ids = ids
        self.i = 0
        self.now = now
        self.open = []  # ids handed to the client, not yet decided
        self.given = 0

    def next_envelope(self):
        q = self.relay.outq
        while self.i < len(self.ids):
            mid = self.ids[self.i]
            self.i += 1
            try:
                rec = q.load(mid)
            except KeyError:
                continue
            rcpts = [r.address for r in rec.pending() if self.domain is None or domain_of(r.address) == self.domain]
            if not rcpts:
                continue
            self.open.append(mid)
            self.given += 1
            return Envelope(mid, rec.sender, rcpts, rec.size, lambda m=mid: q.open_body(m))
        return None

    def envelope_done(self, env):
        if env.key in self.open:
            self.open.remove(env.key)
        apply(self.relay, env, self.now)

    def leftovers(self):
        """Ids handed out but undecided, then ids never handed out."""
        return self.open + self.ids[self.i :]


async def run_once(rl, etrn=None):
    """Try every due message once; counters and the summary line land on `rl` (the Relay).
    `etrn` domains are asked for on the smarthost connection, after the queue
    (one connection, one TLS handshake for both: online minutes cost money)."""
    rl.policy = RetryPolicy.from_config(rl.cfg)  # the run's own, like its buffer (dropped below)
    rl.running = True
    st = rl.state
    before = (st.delivered, st.deferred, st.bounced)
    rl.round_trips = 0
    rl.this_run = {}
    rl.etrn_results = []
    conns = 0
    try:
        now = compat.wall_time()
        ids = housekeeping(rl, rl.due(now), now)
        todo = groups(rl, ids)
        if etrn and not [g for g in todo if g[0] is None]:
            todo.append((None, []))  # nothing to send: connect for the ETRN alone
        for domain, gids in todo:
            if not rl.link_up():
                break
            conns += await deliver(rl, domain, gids, now, etrn if domain is None else None)
    finally:
        rl.running = False
        # nothing of the run stays for the rest of the call: the ISP's delivery
        # after ETRN (the call's peak) finds retry's code and the read buffer gone
        rl.policy = rl.rbuf = None
        st.save()
    rl.run_delivered = st.delivered - before[0]
    rl.run_deferred = st.deferred - before[1]
    rl.run_bounced = st.bounced - before[2]
    rl.last_run = "%d delivered, %d deferred, %d bounced; %d connection(s), %d round trips" % (
        rl.run_delivered, rl.run_deferred, rl.run_bounced, conns, rl.round_trips)
    log.info("relay: %s", rl.last_run)



def groups(rl, ids):
    """[(domain or None, ids)]: one smarthost connection, or one per recipient domain."""
    if not ids:
        return []
    if rl.cfg["relay.route"] != "mx":
        return [(None, ids)]  # the smarthost
    by = {}
    for mid in ids:
        try:
            rec = rl.outq.load(mid)
        except KeyError:
            continue
        for r in rec.pending():
            d = domain_of(r.address)
            lst = by.setdefault(d, [])
            if not lst or lst[-1] != mid:
                lst.append(mid)
    return [(d, by[d]) for d in sorted(by)]



def destinations(rl, domain):
    """[(host, port, tls name)] to try in order, or raise OSError."""
    cfg = rl.cfg
    name = cfg["relay.tls_name"]
    if domain is None:
        addr = getattr(rl.gw.link, "smtp_addr", None)
        if addr is None:
            if not cfg["relay.smarthost"]:
                raise OSError("relay.smarthost is not set")
            h, _, p = cfg["relay.smarthost"].rpartition(":")
            addr = (h, int(p))
        return [(addr[0], addr[1], name or addr[0])]
    hosts = rl.resolve_mx(domain)
    if not hosts:
        raise OSError("no mail exchanger for %s" % domain)
    return [(h, 25, h) for h in hosts[:5]]



async def converse(rl, host, port, name, client):
    """Drive `client` over one connection, on the gateway's one transport (net),
    whose watchdog keeps `relay.timeout` as the idle deadline. Raises what
    opening the connection raised (OSError, ValueError)."""
    from .net_out import connect

    client.peer = (host, port)
    client.timeout_ms = rl.cfg["relay.timeout"] * 1000
    ctx = rl.tls_context() if rl.cfg["relay.tls"] == "implicit" else None
    await connect(rl.gw.net, "relay", host, port, client, name, ctx)


async def deliver(rl, domain, ids, now, etrn=None):
    """One or more connections for `ids` (to the next MX when one fails before
    any message went). Returns the number of connections opened."""
    src = QueueSource(rl, domain, ids, now)
    why = "not tried"
    conns = 0
    try:
        dests = destinations(rl, domain)
    except (OSError, ValueError) as e:
        dests = []
        why = compat.exc_text(e)
        if domain is None:
            rl.run_error = why
    for host, port, name in dests:
        client = rl.make_client(src, domain, etrn)
        conns += 1
        try:
            await rl.converse(host, port, name, client)
        except (OSError, ValueError) as e:
            client.failed = client.failed or (0, compat.exc_text(e).encode())
        rl.round_trips += client.round_trips
        rl.etrn_results += getattr(client, "etrn_results", [])
        if domain is None:
            rl.greeting = getattr(client, "banner", b"")
        if client.failed is None:
            why = ""
            break
        code = client.failed[0]  # 0: no reply code (a local error, a lost or refused connection)
        why = "%s:%d: %s%s" % (host, port, ("%d " % code) if code else "", _text(client.failed[1]))
        log.warn("relay: %s", why)
        if domain is None:
            rl.run_error = why  # the smarthost: the dial session's cost record says why
        if src.given:
            break  # something went over this connection; the rest waits for the next run
    for mid in src.leftovers():
        defer(rl, mid, domain, why or "not tried", now)
    return conns



def _count_try(rl, rec):
    if rec.id in rl.this_run:
        return
    rl.this_run[rec.id] = True
    rec.attempts += 1
    if rec.id not in rl.tried:
        rl.tried[rec.id] = True
        rec.sessions += 1  # docs/queue.md: sessions = online sessions with a try



def apply(rl, env, now):
    """A decided envelope -> its record: delivered / retry / failed (+ DSN)."""
    try:
        rec = rl.outq.load(env.key)
    except KeyError:
        return
    _count_try(rl, rec)
    st = rl.state
    failed = []
    for i in range(len(env.rcpts)):
        r = _pending_rcpt(rec, env.rcpts[i])
        if r is None:
            continue
        res = env.results[i]
        oc = outcome(res)
        if res is not None:
            r.attempts += 1
            r.reply = ("%d %s" % (res[0], _text(res[1])))[:300]
        if oc == "delivered":
            r.state = outq.DELIVERED
            st.delivered += 1
        elif oc == "failed":
            r.state = outq.FAILED
            failed.append(r)
        else:
            st.deferred += 1
    if failed and not _bounce(rl, rec, failed, FAILED, now):
        for r in failed:
            r.state = outq.PENDING  # no room for the DSN: keep it, try again later
    _finish(rl, rec, now)



def defer(rl, mid, domain, why, now):
    """Nothing decided for `mid` on this try (connection failed/lost): retry later."""
    try:
        rec = rl.outq.load(mid)
    except KeyError:
        return
    pend = [r for r in rec.pending() if domain is None or domain_of(r.address) == domain]
    if not pend:
        return
    _count_try(rl, rec)
    for r in pend:
        r.reply = why[:300]
        rl.state.deferred += 1
    # the line itself went down (carrier lost): nobody refused it, so it goes in
    # the next call, whose timing the dial session's retry plan decides
    down = not rl.link_up()
    if not down:
        rl.lost.append(mid)  # the carrier may be seen gone only after this: line_lost()
    _finish(rl, rec, now, down)



def line_lost(rl):
    """The call ended with the carrier lost (session_call._finish): what its queue
    runs deferred for a lost connection while the link still looked up goes in
    the next call too. The order is not fixed on a real line: the connection can
    end (a reset through the modem's TCP forward, PPP) before DCD is seen low."""
    ids = rl.lost
    rl.lost = []
    now = compat.wall_time()
    for mid in ids:
        try:
            rec = rl.outq.load(mid)
        except KeyError:
            continue
        if rec.pending() and rec.next_attempt > now:
            rec.next_attempt = now
            rl.outq.save(rec)



def _finish(rl, rec, now, next_call=False):
    if rec.id in rl.state.warned and not rec.pending():
        rl.state.warned.remove(rec.id)
    try:
        if rec.pending():
            rec.next_attempt = now if next_call else rl.policy.next_attempt(rec.attempts, now)
            rl.outq.save(rec)
        else:
            rl.outq.remove(rec.id)
    except KeyError:
        pass  # `queue delete` took it while it was on the wire



def _bounce(rl, rec, rcpts, action, now):
    """DSN for `rcpts`; True if written (or none is due: null sender)."""
    from . import bounce

    n = bounce.Notice(rec.id, rec.sender, rec.created, action, [(r.address, r.reply) for r in rcpts],
                      rl.cfg["relay.smarthost"].rpartition(":")[0] if rl.cfg["relay.route"] != "mx" else "",
                      rl.policy.retry_until(rec.created))
    try:
        mid = bounce.send_dsn(rl.gw.spool, rl.gw.router, rl.cfg["hostname"], n, now, rl.read_buffer())
    except OSError as e:
        log.warn("relay: no DSN for %s yet: %s", rec.id, compat.exc_text(e))
        return False
    if action == FAILED:
        rl.state.bounced += len(rcpts)
    log.info("relay: %s %s for %d recipient(s)%s", rec.id, action, len(rcpts),
             " -> DSN " + mid if mid else " (null sender: no DSN)")
    return True



def housekeeping(rl, ids, now):
    """Expire, warn and fix unset-clock creation times; returns the ids still to try."""
    keep = []
    p = rl.policy
    for mid in ids:
        try:
            rec = rl.outq.load(mid)
        except KeyError:
            continue
        if not clock_ok(rec.created) and clock_ok(now):
            rec.created = now  # accepted before the clock was set: age counts from now
            rl.outq.save(rec)
        if p.expired(rec.created, rec.sessions, now):
            pend = rec.pending()
            for r in pend:
                r.state = outq.FAILED
                r.reply = "4.4.7 gave up after %d tries in %d online sessions (last: %s)" % (
                    rec.attempts, rec.sessions, r.reply or "none")
            if not _bounce(rl, rec, pend, FAILED, now):
                continue
            rl.outq.remove(mid)
            if mid in rl.state.warned:
                rl.state.warned.remove(mid)
            continue
        if p.warn_due(rec.created, rec.sessions, now) and mid not in rl.state.warned:
            if _bounce(rl, rec, rec.pending(), DELAYED, now):
                rl.state.warned.append(mid)
                if len(rl.state.warned) > _MAX_WARNED:
                    rl.state.warned.pop(0)  # worst case: one more warning for the oldest
        keep.append(mid)
    return keep


def _pending_rcpt(rec, address):
    for r in rec.rcpts:
        if r.address == address and r.state == outq.PENDING:
            return r
    return None
