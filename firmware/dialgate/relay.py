"""Outbound queue runner (`gw.relay`): a flush-once service the dial session
calls while the line is up. One flush relays due messages to the smarthost or
the recipients' MX, records per-recipient outcomes, retries, bounces and warns
(docs/queue.md), and can ask the smarthost for held mail (ETRN) on the same
connection. When to flush, and when the line goes up and down, is
session_run's business, not this module's.

Only the state and the counters load at boot. A queue run (relay_run), the
client (smtp_client, compat_relay) and DSNs (bounce) are imported
on the first flush: ~35 KB of MicroPython heap that is idle while offline.
"""

import json

from . import compat, log


class RelayState:
    """Counters kept across reboots in SPOOL/relay.json: delivered/deferred/bounced,
    ids already sent a delay warning. (The online session number lives in the
    cost log since the dial session owns it: session_run, costlog.)"""

    def __init__(self, spool):
        self.spool = spool
        self.path = spool.path("relay.json")
        self.delivered = 0
        self.deferred = 0
        self.bounced = 0
        self.warned = []
        self.legacy_session = 0  # the session count older versions kept here
        try:
            size = compat.file_size(self.path)
            if size > 65536:
                raise ValueError("too large")
            with open(self.path) as f:
                d = json.loads(f.read(size))  # read(n) allocates n up front on MicroPython
            self.legacy_session = d.get("session", 0)
            self.delivered = d.get("delivered", 0)
            self.deferred = d.get("deferred", 0)
            self.bounced = d.get("bounced", 0)
            self.warned = d.get("warned", [])
        except (OSError, ValueError):
            pass

    def save(self):
        d = {"delivered": self.delivered, "deferred": self.deferred,
             "bounced": self.bounced, "warned": self.warned}
        try:
            self.spool.flash.put(self.path, self.spool.path("tmp", "relay.json"), json.dumps(d))
        except OSError as e:
            log.warn("relay: cannot save %s: %s", self.path, compat.exc_text(e))


class Relay:
    """The queue runner of one gateway (`gw.relay`): `flush()` is all it does."""

    def __init__(self, gw):
        self.gw = gw
        cfg = gw.cfg
        self.cfg = cfg
        self.outq = gw.outq
        self.policy = None  # retry.RetryPolicy, made for each run (relay_run.run_once)
        self.state = RelayState(gw.spool)
        self.running = False
        self.tried = {}  # ids tried in this online session
        self.this_run = {}  # ids tried in this queue run (one try, however many domains)
        self.lost = []  # ids this call deferred, no reply, link still up (relay_run.line_lost)
        self.last_run = "none yet"
        # the last run's figures, for the dial session's cost record
        self.run_delivered = 0
        self.run_deferred = 0
        self.run_bounced = 0
        self.run_error = ""  # why the last connection to the smarthost failed ("" if it did not)
        self.round_trips = 0  # client turns in the last run
        self.etrn_results = []  # [(code, text)] of the last run's ETRN commands
        self.greeting = b""  # the smarthost's last 220 text (the session may take the time from it)
        self.rbuf = None  # a run's read buffer (read_buffer), dropped when the run ends
        self.ctx = None

    def link_up(self):
        gw = self.gw
        if "link" not in gw.__dict__ and self.cfg["link.type"] != "always-on":
            return False  # never dialled since boot: do not load the link layer just to ask
        link = gw.link
        return link is not None and link.is_up()

    def begin_session(self):
        """A new online session (the dial session calls this once the line is up):
        each message counts one more session with a try (queue.min_sessions)."""
        self.tried = {}
        self.lost = []

    def due(self, now):
        """Ids to try now. With an unset clock: every id not tried in this session."""
        if compat.clock_ok(now):
            return [m for m in self.outq.due(now)]
        return [m for m in self.outq.ids() if m not in self.tried]

    async def flush(self, etrn=None):
        """Run the queue once now if the link is up. Returns the summary line.

        `etrn`: domains to ask the smarthost for (RFC 1985) on the same connection,
        after the queue; their replies land in `etrn_results` [(code, text)], an
        empty list when no connection was made. The run's counts land in
        `run_delivered` / `run_deferred` / `run_bounced`, a failed smarthost
        connection's reason in `run_error`.
        """
        self.etrn_results = []
        self.run_error = ""
        self.run_delivered = self.run_deferred = self.run_bounced = 0
        if not self.link_up():
            self.run_error = "link down"
            return "link down"
        if self.running:
            return "already running"
        await self.run_once(etrn)
        return self.last_run

    # ---- one queue run (relay_run, imported when first needed) -------------------

    async def run_once(self, etrn=None):
        from .relay_run import run_once

        await run_once(self, etrn)

    def make_client(self, src, domain, etrn=None):
        """A fresh SmtpClient for one connection (AUTH and ETRN only towards the smarthost)."""
        from .smtp_client import SmtpClient

        cfg = self.cfg
        user = cfg["relay.user"] if domain is None else ""
        return SmtpClient(src, (cfg["relay.helo"] or cfg["hostname"]).encode(), cfg["relay.tls"],
                          user, cfg["relay.password"], cfg["relay.pipelining"], etrn, self.read_buffer(),
                          self.tls_context)

    def resolve_mx(self, domain):
        """MX hosts of `domain`, best first (compat_relay; dnspython or one UDP query)."""
        from .compat_relay import resolve_mx

        return resolve_mx(domain, self.cfg["relay.resolver"])

    def read_buffer(self):
        if self.rbuf is None:
            self.rbuf = bytearray(compat.io_buffer(self.cfg["board.buffer"]))
        return self.rbuf

    def tls_context(self):
        if self.ctx is None:
            from .compat_relay import tls_client_context

            self.ctx = tls_client_context(self.cfg["relay.ca_file"], self.cfg["relay.tls_verify"])
        return self.ctx

    async def converse(self, host, port, name, client):
        """Drive `client` over one connection (relay_run.converse, over `net`)."""
        from .relay_run import converse

        await converse(self, host, port, name, client)
