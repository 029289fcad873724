"""Outbound queue runner (`gw.relay`): while the link is up, relay due messages to
the smarthost or the recipients' MX, record per-recipient outcomes, retry, bounce
and warn (docs/queue.md).

Only the task, its state and the counters load at boot. A queue run
(relay_run), the client (smtp_client, relay_conn, compat_relay) and DSNs
(bounce) are imported when the link first comes up: ~35 KB of MicroPython heap
that is idle while the office is offline.
"""

import asyncio
import json

from . import compat, log

TICK_MS = compat.const(1000)  # how often the runner looks at the link and the queue
DUE_CHECK_MS = compat.const(5000)
ETRN_TRIES = compat.const(3)
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
            size = compat.file_size(self.path)
            if size > 65536:
                raise ValueError("too large")
            with open(self.path) as f:
                d = json.loads(f.read(size))  # read(n) allocates n up front on MicroPython
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


class Relay:
    """The queue runner of one gateway (`gw.relay`). `run()` is its task."""

    def __init__(self, gw):
        self.gw = gw
        cfg = gw.cfg
        self.cfg = cfg
        self.outq = gw.outq
        self.policy = None  # retry.RetryPolicy, made on the first run
        self.state = RelayState(gw.spool)
        self.kicked = False
        self.running = False
        self.was_up = False
        self.tried = {}  # ids tried in this online session
        self.this_run = {}  # ids tried in this queue run (one try, however many domains)
        self.last_due = compat.ticks_ms() - DUE_CHECK_MS
        self.last_len = -1  # queue length at the last due check: a new message is checked at once
        self.last_run = "none yet"
        self.round_trips = 0  # client turns in the last run
        self.etrn_results = []  # [(code, text)] of the last run's ETRN commands
        self.etrn_left = 0  # tries left this online session to send relay.etrn
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
        gw = self.gw
        if "link" not in gw.__dict__ and self.cfg["link.type"] != "always-on":
            return False  # never dialled since boot: do not load the link layer just to ask
        link = gw.link
        return link is not None and link.is_up()

    async def tick(self):
        up = self.link_up()
        if up and not self.was_up:
            self.new_session()
        self.was_up = up
        if not up or self.running:
            return
        t = compat.ticks_ms()
        n = len(self.outq)
        if self.kicked or n != self.last_len or compat.ticks_diff(t, self.last_due) >= DUE_CHECK_MS:
            self.last_due = t
            self.last_len = n
            etrn = self.cfg["relay.etrn"] if self.etrn_left > 0 else None
            if self.kicked or etrn or self.due(compat.wall_time()):
                self.kicked = False
                await self.run_once(etrn)

    def new_session(self):
        """The link came up: a new online session (counted on flash)."""
        self.state.session += 1
        self.tried = {}
        # relay.etrn: once per session ask the ISP to release the office's held
        # mail (RFC 1985), on the queue run's connection; a failed try is
        # repeated at the due-check pace, ETRN_TRIES times at most
        self.etrn_left = ETRN_TRIES if self.cfg["relay.etrn"] else 0
        self.state.save()
        log.info("relay: online session %d", self.state.session)

    def due(self, now):
        """Ids to try now. With an unset clock: every id not tried in this session."""
        if compat.clock_ok(now):
            return [m for m in self.outq.due(now)]
        return [m for m in self.outq.ids() if m not in self.tried]

    async def flush(self, etrn=None):
        """Run the queue now if the link is up (the dial session calls this). Returns a summary.

        `etrn`: domains to ask the smarthost for (RFC 1985) on the same connection,
        after the queue; their replies land in `etrn_results` [(code, text)].
        """
        if not self.link_up():
            return "link down"
        if self.running:
            return "already running"
        await self.run_once(etrn)
        return self.last_run

    # ---- one queue run (relay_run, imported when first needed) -------------------

    async def run_once(self, etrn=None):
        from .relay_run import run_once

        try:
            await run_once(self, etrn)
        finally:
            if etrn:
                self._etrn_done(etrn)

    def _etrn_done(self, etrn):
        """Log the ISP's answers to ETRN; a 2xx (RFC 1985 §5: 250-253) ends the
        tries for this session, as does a 5xx (asking again will not help)."""
        res = self.etrn_results
        for i in range(len(res)):
            log.info("relay: ETRN %s: %d %s", etrn[i] if i < len(etrn) else "?", res[i][0],
                     res[i][1].decode("utf-8", "replace"))
        if res and res[0][0] // 100 in (2, 5):
            self.etrn_left = 0
        else:
            self.etrn_left -= 1
            if not res:
                log.warn("relay: ETRN not sent (no connection to the smarthost)%s",
                         "; will try again" if self.etrn_left > 0 else "")

    def make_client(self, src, domain, etrn=None):
        """A fresh SmtpClient for one connection (AUTH and ETRN only towards the smarthost)."""
        from .smtp_client import SmtpClient

        cfg = self.cfg
        user = cfg["relay.user"] if domain is None else ""
        return SmtpClient(src, (cfg["relay.helo"] or cfg["hostname"]).encode(), cfg["relay.tls"],
                          user, cfg["relay.password"], cfg["relay.pipelining"], etrn, self.read_buffer())

    def resolve_mx(self, domain):
        """MX hosts of `domain`, best first (compat_relay; dnspython or one UDP query)."""
        from .compat_relay import resolve_mx

        return resolve_mx(domain, self.cfg["relay.resolver"])

    def read_buffer(self):
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
