"""Outbound queue runner: while the link is up, relay due messages to the smarthost
or the recipients' MX with smtp_client, record per-recipient outcomes, retry,
bounce and warn (docs/queue.md). The only asyncio here is the client transport.

smtp_client and bounce are imported on the first queue run, not at boot: they
cost ~20 KB of heap on MicroPython and are idle while the link is down.
"""

import asyncio
import json

from . import compat, log, outq
from .envelope import Envelope, outcome
from .retry import RetryPolicy, clock_ok

FAILED = "failed"  # bounce.FAILED / DELAYED, without importing bounce at boot
DELAYED = "delayed"

TICK_MS = compat.const(1000)  # how often the runner looks at the link and the queue
DUE_CHECK_MS = compat.const(5000)


def _text(b):
    """Reply octets -> str for records and DSNs (never raises)."""
    try:
        return b.decode()
    except UnicodeError:
        return "".join([chr(c) if 32 <= c < 127 else "?" for c in b])


def domain_of(address):
    return address[address.rfind("@") + 1 :].lower()


class RelayState:
    """Counters kept across reboots in SPOOL/relay.json: online session number,
    delivered/deferred/bounced, ids already sent a delay warning."""

    def __init__(self, spool):
        self.spool = spool
        self.path = spool.path("relay.json")
        self.session = 0
        self.delivered = 0
        self.deferred = 0
        self.bounced = 0
        self.warned = []
        try:
            with open(self.path) as f:
                d = json.loads(f.read(8192))
            self.session = d.get("session", 0)
            self.delivered = d.get("delivered", 0)
            self.deferred = d.get("deferred", 0)
            self.bounced = d.get("bounced", 0)
            self.warned = d.get("warned", [])
        except (OSError, ValueError):
            pass

    def save(self):
        d = {"session": self.session, "delivered": self.delivered, "deferred": self.deferred,
             "bounced": self.bounced, "warned": self.warned}
        try:
            self.spool.flash.put(self.path, self.spool.path("tmp", "relay.json"), json.dumps(d))
        except OSError as e:
            log.warn("relay: cannot save %s: %s", self.path, compat.exc_text(e))


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
        self.relay.apply(env, self.now)

    def leftovers(self):
        """Ids handed out but undecided, then ids never handed out."""
        return self.open + self.ids[self.i :]


class Relay:
    """The queue runner of one gateway (`gw.relay`). `run()` is its task."""

    def __init__(self, gw):
        self.gw = gw
        cfg = gw.cfg
        self.cfg = cfg
        self.outq = gw.outq
        self.policy = RetryPolicy.from_config(cfg)
        self.state = RelayState(gw.spool)
        self.kicked = False
        self.running = False
        self.was_up = False
        self.tried = {}  # ids tried in this online session
        self.this_run = {}  # ids tried in this queue run (one try, however many domains)
        self.last_due = compat.ticks_ms() - DUE_CHECK_MS
        self.last_run = "none yet"
        self.round_trips = 0  # client turns in the last run
        self.rbuf = None
        self.ctx = None
        self.last_io = 0  # ticks of the last octet moved (relay_conn)

    # ---- the task ---------------------------------------------------------------

    async def run(self):
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bad record must not stop the runner
                log.exception("relay", e)
            await asyncio.sleep(TICK_MS / 1000)

    def link_up(self):
        link = self.gw.link
        return link is not None and link.is_up()

    async def tick(self):
        up = self.link_up()
        if up and not self.was_up:
            self.new_session()
        self.was_up = up
        if not up or self.running:
            return
        t = compat.ticks_ms()
        if self.kicked or compat.ticks_diff(t, self.last_due) >= DUE_CHECK_MS:
            self.last_due = t
            if self.kicked or self.due(compat.wall_time()):
                self.kicked = False
                await self.run_once()

    def new_session(self):
        """The link came up: a new online session (counted on flash)."""
        self.state.session += 1
        self.tried = {}
        self.state.save()
        log.info("relay: online session %d", self.state.session)

    def due(self, now):
        """Ids to try now. With an unset clock: every id not tried in this session."""
        if clock_ok(now):
            return [m for m in self.outq.due(now)]
        return [m for m in self.outq.ids() if m not in self.tried]

    async def flush(self):
        """Run the queue now if the link is up (the dial session calls this). Returns a summary."""
        if not self.link_up():
            return "link down"
        if self.running:
            return "already running"
        await self.run_once()
        return self.last_run

    # ---- one queue run -------------------------------------------------------------

    async def run_once(self):
        self.running = True
        st = self.state
        before = (st.delivered, st.deferred, st.bounced)
        self.round_trips = 0
        self.this_run = {}
        conns = 0
        try:
            now = compat.wall_time()
            ids = self.housekeeping(self.due(now), now)
            for domain, gids in self.groups(ids):
                if not self.link_up():
                    break
                conns += await self.deliver(domain, gids, now)
        finally:
            self.running = False
            st.save()
        self.last_run = "%d delivered, %d deferred, %d bounced; %d connection(s), %d round trips" % (
            st.delivered - before[0], st.deferred - before[1], st.bounced - before[2], conns, self.round_trips)
        log.info("relay: %s", self.last_run)

    def groups(self, ids):
        """[(domain or None, ids)]: one smarthost connection, or one per recipient domain."""
        if not ids:
            return []
        if self.cfg["relay.route"] != "mx":
            return [(None, ids)]
        by = {}
        for mid in ids:
            try:
                rec = self.outq.load(mid)
            except KeyError:
                continue
            for r in rec.pending():
                d = domain_of(r.address)
                lst = by.setdefault(d, [])
                if not lst or lst[-1] != mid:
                    lst.append(mid)
        return [(d, by[d]) for d in sorted(by)]

    def destinations(self, domain):
        """[(host, port, tls name)] to try in order, or raise OSError."""
        cfg = self.cfg
        name = cfg["relay.tls_name"]
        if domain is None:
            addr = getattr(self.gw.link, "smtp_addr", None)
            if addr is None:
                if not cfg["relay.smarthost"]:
                    raise OSError("relay.smarthost is not set")
                h, _, p = cfg["relay.smarthost"].rpartition(":")
                addr = (h, int(p))
            return [(addr[0], addr[1], name or addr[0])]
        hosts = self.resolve_mx(domain)
        if not hosts:
            raise OSError("no mail exchanger for %s" % domain)
        return [(h, 25, h) for h in hosts[:5]]

    async def deliver(self, domain, ids, now):
        """One or more connections for `ids` (to the next MX when one fails before
        any message went). Returns the number of connections opened."""
        src = QueueSource(self, domain, ids, now)
        why = "not tried"
        conns = 0
        try:
            dests = self.destinations(domain)
        except (OSError, ValueError) as e:
            dests = []
            why = compat.exc_text(e)
        for host, port, name in dests:
            client = self.make_client(src, domain)
            conns += 1
            try:
                await self.converse(host, port, name, client)
            except (OSError, ValueError) as e:
                client.failed = client.failed or (0, compat.exc_text(e).encode())
            self.round_trips += client.round_trips
            if client.failed is None:
                why = ""
                break
            why = "%s:%d: %d %s" % (host, port, client.failed[0], _text(client.failed[1]))
            log.warn("relay: %s", why)
            if src.given:
                break  # something went over this connection; the rest waits for the next run
        for mid in src.leftovers():
            self.defer(mid, domain, why or "not tried", now)
        return conns

    def make_client(self, src, domain):
        """A fresh SmtpClient for one connection (AUTH only towards the smarthost)."""
        from .smtp_client import SmtpClient

        cfg = self.cfg
        user = cfg["relay.user"] if domain is None else ""
        return SmtpClient(src, (cfg["relay.helo"] or cfg["hostname"]).encode(), cfg["relay.tls"],
                          user, cfg["relay.password"], cfg["relay.pipelining"], None, self._rbuf())

    def resolve_mx(self, domain):
        """MX hosts of `domain`, best first (compat_relay; dnspython or one UDP query)."""
        from .compat_relay import resolve_mx

        return resolve_mx(domain, self.cfg["relay.resolver"])

    def _rbuf(self):
        if self.rbuf is None:
            self.rbuf = bytearray(self.cfg["board.buffer"])
        return self.rbuf

    def tls_context(self):
        if self.ctx is None:
            from .compat_relay import tls_client_context

            self.ctx = tls_client_context(self.cfg["relay.ca_file"], self.cfg["relay.tls_verify"])
        return self.ctx

    async def converse(self, host, port, name, client):
        """Drive `client` over one connection (relay_conn; imported when first used)."""
        from .relay_conn import converse

        await converse(self, host, port, name, client)

    # ---- records -----------------------------------------------------------------

    def _count_try(self, rec):
        if rec.id in self.this_run:
            return
        self.this_run[rec.id] = True
        rec.attempts += 1
        if rec.id not in self.tried:
            self.tried[rec.id] = True
            rec.sessions += 1  # docs/queue.md: sessions = online sessions with a try

    def apply(self, env, now):
        """A decided envelope -> its record: delivered / retry / failed (+ DSN)."""
        try:
            rec = self.outq.load(env.key)
        except KeyError:
            return
        self._count_try(rec)
        st = self.state
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
        if failed and not self._bounce(rec, failed, FAILED, now):
            for r in failed:
                r.state = outq.PENDING  # no room for the DSN: keep it, try again later
        self._finish(rec, now)

    def defer(self, mid, domain, why, now):
        """Nothing decided for `mid` on this try (connection failed/lost): retry later."""
        try:
            rec = self.outq.load(mid)
        except KeyError:
            return
        pend = [r for r in rec.pending() if domain is None or domain_of(r.address) == domain]
        if not pend:
            return
        self._count_try(rec)
        for r in pend:
            r.reply = why[:300]
            self.state.deferred += 1
        self._finish(rec, now)

    def _finish(self, rec, now):
        if rec.pending():
            rec.next_attempt = self.policy.next_attempt(rec.attempts, now)
            self.outq.save(rec)
        else:
            self.outq.remove(rec.id)
            if rec.id in self.state.warned:
                self.state.warned.remove(rec.id)

    def _bounce(self, rec, rcpts, action, now):
        """DSN for `rcpts`; True if written (or none is due: null sender)."""
        from . import bounce

        n = bounce.Notice(rec.id, rec.sender, rec.created, action, [(r.address, r.reply) for r in rcpts],
                          self.cfg["relay.smarthost"].rpartition(":")[0] if self.cfg["relay.route"] != "mx" else "",
                          self.policy.retry_until(rec.created))
        try:
            mid = bounce.send_dsn(self.gw.spool, self.gw.router, self.cfg["hostname"], n, now, self._rbuf())
        except OSError as e:
            log.warn("relay: no DSN for %s yet: %s", rec.id, compat.exc_text(e))
            return False
        if action == FAILED:
            self.state.bounced += len(rcpts)
        log.info("relay: %s %s for %d recipient(s)%s", rec.id, action, len(rcpts),
                 " -> DSN " + mid if mid else " (null sender: no DSN)")
        return True

    def housekeeping(self, ids, now):
        """Expire, warn and fix unset-clock creation times; returns the ids still to try."""
        keep = []
        p = self.policy
        for mid in ids:
            try:
                rec = self.outq.load(mid)
            except KeyError:
                continue
            if not clock_ok(rec.created) and clock_ok(now):
                rec.created = now  # accepted before the clock was set: age counts from now
                self.outq.save(rec)
            if p.expired(rec.created, rec.sessions, now):
                pend = rec.pending()
                for r in pend:
                    r.state = outq.FAILED
                    r.reply = "4.4.7 gave up after %d tries in %d online sessions (last: %s)" % (
                        rec.attempts, rec.sessions, r.reply or "none")
                if not self._bounce(rec, pend, FAILED, now):
                    continue
                self.outq.remove(mid)
                if mid in self.state.warned:
                    self.state.warned.remove(mid)
                continue
            if p.warn_due(rec.created, rec.sessions, now) and mid not in self.state.warned:
                if self._bounce(rec, rec.pending(), DELAYED, now):
                    self.state.warned.append(mid)
            keep.append(mid)
        return keep


def _pending_rcpt(rec, address):
    for r in rec.rcpts:
        if r.address == address and r.state == outq.PENDING:
            return r
    return None
