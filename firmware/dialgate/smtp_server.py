"""ESMTP server (RFC 5321) as a sans-IO session: LAN submission and inbound mail.

Dispatch on state, then verb, from one table; DATA streams through
smtp_data.DotDecoder into the spool writer. `net` drives it; STARTTLS is done
by `net` when the session sets `tls` (see proto.Session).
"""

import binascii

from . import compat, limits, log
from .compat import const
from .proto import Session
from .smtp_addr import BadPath, needs_relay, parse_path, valid_domain
from .smtp_data import ERR_FULL, ERR_IO, DotDecoder, rfc5322_date

# Session states (bit masks, so a table entry can allow several).
S_GREET = 1  # connected, no HELO/EHLO yet
S_READY = 2  # after HELO/EHLO, no transaction
_S_MAIL = const(4)  # MAIL accepted
_S_RCPT = const(8)  # at least one RCPT accepted
_ANY = const(15)

_CLOCK_SET = const(1577836800)  # 2020-01-01: a wall clock before this was never set
_ENOSPC = const(28)  # spool.SpoolFull and a full filesystem both carry it: 452 4.3.1
_NOT_IN_TRACE = b"()\\;\""  # octets a HELO name may not carry into Received (_greet)


class SmtpService:
    """What all SMTP sessions share: config, spool, router, users, throttle, TLS.

    `tls`: a function giving the server-side ssl context, made when a client
    first says STARTTLS (offered while set; None from it: 454), or None: no
    STARTTLS. `users`: a
    users.UserStore, or None (AUTH not offered). `session(peer)` is the
    factory `net.listen` wants.
    """

    def __init__(self, cfg, spool, router, users=None, tls=None, throttle=None):
        self.cfg = cfg
        self.spool = spool
        self.router = router
        self.users = users
        self.tls = tls
        self._throttle = throttle  # a function giving the shared auth.AuthThrottle, or None: our own
        self.hostname = cfg["hostname"]
        self.max_size = cfg["smtp.max_size"]
        self.max_rcpts = cfg["smtp.max_recipients"]
        self.auth_plaintext = cfg["smtp.auth_plaintext"]
        self.scan_size = compat.io_buffer(cfg["board.buffer"])
        self.scratch = None  # DATA scan buffer, shared (see scan_buffer)

    def session(self, peer):
        return SmtpSession(peer, self)

    def throttle(self):
        """The failed-login throttle, made (or fetched from the gateway) on the first AUTH."""
        if self._throttle is None:
            from .auth import AuthThrottle

            t = AuthThrottle()
            self._throttle = lambda: t
        return self._throttle()

    def scan_buffer(self):
        """The DotDecoder's scratch bytearray, one for all sessions: feed() copies a
        chunk in and scans it without yielding, so no two sessions ever use it at once."""
        if self.scratch is None:
            self.scratch = bytearray(self.scan_size)
        return self.scratch


class SmtpSession(Session):
    max_line = limits.SMTP_COMMAND_LINE
    timeout_ms = limits.SMTP_COMMAND_TIMEOUT_MS
    # The whole session's bounds (limits.SMTP_SESSION_MS, _OCTETS), the same for
    # LAN clients, an ISP connecting after ETRN and the ODMR-reversed session.
    lifetime_ms = limits.SMTP_SESSION_MS  # net sets `expired` past it
    max_octets = limits.SMTP_SESSION_OCTETS
    # The ODMR-reversed session (odmr_client): the provider is never the LAN and
    # never authenticates to us (RFC 2645 §4: it only delivers the domain's mail).
    reversed = False
    quit_seen = False  # the peer said QUIT: ODMR's reversed session ended as it should

    def __init__(self, peer, svc):
        Session.__init__(self, peer)
        self.svc = svc
        self.tls = None  # proto.Session: set to an ssl context to have net start TLS
        self.lan = svc.cfg.is_lan(peer[0])
        self.tls_active = False
        self.state = S_GREET
        self.helo = ""
        self.esmtp = False
        self.user = None
        self.sasl = None  # pending SASL step: "plain", "user", "pass"
        self.sasl_name = None
        self.bogus = 0
        self.messages = 0
        self.octets = 0  # DATA octets received, for max_octets
        self.reply = None
        self.writer = None
        self.decoder = None
        self.sender = None
        self.routes = []

    # ---- proto.Session ---------------------------------------------------------

    def greeting(self):
        return ("220 %s ESMTP dialgate\r\n" % self.svc.hostname).encode()

    def on_line(self, line):
        if self.tls is not None:
            return None  # RFC 3207 §4.2: whatever followed STARTTLS is discarded
        if self.sasl is not None:
            from .smtp_auth import sasl_line

            return sasl_line(self, line)
        sp = line.find(b" ")
        verb = (line if sp < 0 else line[:sp]).upper()
        entry = COMMANDS.get(verb)
        if entry is None:
            return self._bogus(b"500 5.5.2 Command not recognized\r\n")
        if not entry[0] & self.state:
            return self._bogus(self._out_of_order(verb))
        spent = self.expired or self.octets >= self.max_octets
        if spent and not self.state & (_S_MAIL | _S_RCPT) and verb != b"QUIT":
            self.closing = True  # between transactions: no transaction is cut short
            return b"421 4.7.0 Session time or size limit reached, closing connection\r\n"
        return entry[1](self, b"" if sp < 0 else line[sp + 1 :])

    def on_data(self, mv):
        d = self.decoder
        n = d.feed(mv)
        self.octets += n
        if d.done:
            self.raw = False
            self.timeout_ms = limits.SMTP_COMMAND_TIMEOUT_MS
            self.reply = self._end_of_data()
        return n

    def take_reply(self):
        r = self.reply
        self.reply = None
        return r

    def on_overflow(self):
        if self.tls is not None:
            return b""
        if self.sasl is not None:
            self.sasl = None
            self.max_line = limits.SMTP_COMMAND_LINE
            return b"500 5.5.6 Authentication exchange line is too long\r\n"  # RFC 4954 §4
        return self._bogus(b"500 5.5.2 Line too long\r\n")  # RFC 5321 §4.5.3.1.4

    def on_timeout(self):
        return ("421 4.4.2 %s Timeout, closing connection\r\n" % self.svc.hostname).encode()

    def on_eof(self):
        self._drop_message()

    def on_close(self):
        self._drop_message()

    def on_tls(self):
        """net finished the TLS handshake: RFC 3207 §4.2, forget all the client told us."""
        self._drop_message()
        self.tls = None
        self.tls_active = True
        self.state = S_GREET
        self.helo = ""
        self.esmtp = False
        self.user = None
        self.sasl = None

    # ---- helpers -----------------------------------------------------------

    def _bogus(self, reply):
        """A protocol error: after limits.SMTP_BOGUS_COMMANDS of them, 421 and close."""
        self.bogus += 1
        if self.bogus < limits.SMTP_BOGUS_COMMANDS:
            return reply
        self.closing = True
        log.warn("smtp %s: too many bad commands, closing", self.peer[0])
        return reply + ("421 4.7.0 %s Too many errors, closing connection\r\n" % self.svc.hostname).encode()

    def _out_of_order(self, verb):
        st = self.state
        if st == S_GREET:
            return b"503 5.5.1 Send HELO or EHLO first\r\n"
        if verb == b"MAIL":
            return b"503 5.5.1 Sender already given\r\n"
        if verb in (b"AUTH", b"STARTTLS"):
            return b"503 5.5.1 Not during a mail transaction\r\n"
        if verb == b"DATA" and st == _S_MAIL:
            return b"503 5.5.1 No valid recipients\r\n"
        return b"503 5.5.1 Need MAIL command first\r\n"

    def _reset(self):
        self._drop_message()
        self.sender = None
        self.routes = []
        if self.state != S_GREET:
            self.state = S_READY

    def _drop_message(self):
        w = self.writer
        self.writer = None
        self.decoder = None
        if w is not None:
            try:
                w.abort()
            except Exception as e:
                log.exception("smtp abort", e)

    def _auth_allowed(self):
        if self.reversed or self.svc.users is None:
            return False
        p = self.svc.auth_plaintext
        return self.tls_active or p == "always" or (p == "lan" and self.lan)

    def _may_relay(self):
        return self.lan or self.user is not None

    # ---- verbs (RFC 5321 §4.1.1 unless noted) --------------------------------------

    def smtp_EHLO(self, arg):
        if not arg:
            return self._bogus(b"501 5.5.4 Syntax: EHLO hostname\r\n")
        self._greet(arg, True)
        svc = self.svc
        lines = [
            "250-%s Hello %s [%s]" % (svc.hostname, self.helo, self.peer[0]),
            "250-PIPELINING",  # RFC 2920
            "250-SIZE %d" % svc.max_size,  # RFC 1870
            "250-8BITMIME",  # RFC 6152
            "250-ENHANCEDSTATUSCODES",  # RFC 2034
        ]
        if self._auth_allowed() and self.user is None:
            lines.append("250-AUTH PLAIN LOGIN")  # RFC 4954
        if svc.tls is not None and not self.tls_active:
            lines.append("250-STARTTLS")  # RFC 3207
        lines.append("250 HELP\r\n")
        return "\r\n".join(lines).encode()

    def smtp_HELO(self, arg):
        if not arg:
            return self._bogus(b"501 5.5.4 Syntax: HELO hostname\r\n")
        self._greet(arg, False)
        return ("250 %s\r\n" % self.svc.hostname).encode()

    def _greet(self, arg, esmtp):
        # §4.1.4: HELO/EHLO mid-transaction resets it like RSET
        self._reset()
        self.state = S_READY
        self.esmtp = esmtp
        # The name goes into our Received field's "from" clause (RFC 5321 §4.4),
        # where "(", ")" and "\\" would open or escape an RFC 5322 comment, ";"
        # would end the clauses and '"' start a quoted string: a HELO holding one
        # must not leave a trace field a parser reads wrongly. Printable ASCII
        # otherwise, at most 64 octets; nothing left is "unknown".
        name = bytes([c for c in arg.split(b" ")[0][:64] if 33 <= c <= 126 and c not in _NOT_IN_TRACE])
        self.helo = name.decode() or "unknown"

    def smtp_MAIL(self, arg):
        try:
            addr, params = parse_path(arg, "FROM:")
        except BadPath as e:
            return self._bogus(e.reply)
        svc = self.svc
        size = 0
        for k, v in params:
            if k == "SIZE" and v is not None and v.isdigit():  # RFC 1870 §6
                size = int(v)
                if size > svc.max_size:
                    return b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
            elif k == "BODY" and v is not None and v.upper() in ("7BIT", "8BITMIME"):  # RFC 6152
                pass
            elif k == "AUTH" and v:  # RFC 4954 §5: accepted, not trusted
                pass
            else:
                return self._bogus(b"555 5.5.4 Unsupported MAIL parameter\r\n")  # §4.1.1.11
        if not svc.spool.has_room(size):
            return b"452 4.3.1 Insufficient system storage\r\n"  # RFC 1870 §6.1, RFC 3463
        self.sender = "" if addr is None else addr.text()
        self.routes = []
        self.state = _S_MAIL
        return b"250 2.1.0 Sender ok\r\n"

    def smtp_RCPT(self, arg):
        svc = self.svc
        if len(self.routes) >= svc.max_rcpts:
            return b"452 4.5.3 Too many recipients\r\n"  # §4.5.3.1.10
        try:
            addr, params = parse_path(arg, "TO:")
        except BadPath as e:
            return self._bogus(e.reply)
        if addr is None:
            return self._bogus(b"501 5.1.3 Bad recipient address syntax\r\n")
        if params:
            return self._bogus(b"555 5.5.4 Unsupported RCPT parameter\r\n")
        if needs_relay(svc.cfg, addr) and not self._may_relay():
            log.warn("smtp %s: relay denied for <%s>", self.peer[0], addr.text())
            # counted as a protocol error: a relay prober is cut off after a few tries
            return self._bogus(b"554 5.7.1 Relay access denied\r\n")
        text = addr.text()
        d = addr.domain
        if d is not None and not addr.literal and not valid_domain(d[:-1] if d.endswith(".") else d):
            return self._bogus(b"501 5.1.3 Bad recipient address syntax\r\n")
        if d is None:
            if addr.local.lower() != "postmaster":
                return self._bogus(b"501 5.1.3 Address needs a domain\r\n")
            text = addr.local + "@" + svc.cfg["domains"][0]  # §4.1.1.3
        try:
            route = svc.router.route(text)
        except Exception as e:
            log.exception("smtp route", e)
            return b"451 4.3.0 Local error in processing\r\n"
        if route is None:
            return b"550 5.1.1 No such user here\r\n"
        self.routes.append(route)
        self.state = _S_RCPT
        return b"250 2.1.5 Recipient ok\r\n"

    def smtp_DATA(self, arg):
        if arg:
            return self._bogus(b"501 5.5.4 Syntax: DATA\r\n")
        svc = self.svc
        try:
            w = svc.spool.writer()  # SpoolFull (452) if flash is full: one statvfs, not two
            self.writer = w
            w.write(self._received())
        except Exception as e:
            self._drop_message()
            return self._refusal(e)
        fix = self._head_fix if (self.lan or self.user is not None) else None
        self.decoder = DotDecoder(w, svc.max_size, limits.SMTP_TEXT_LINE, svc.scan_buffer(), fix, self._refusal)
        self.raw = True
        self.timeout_ms = limits.SMTP_DATA_TIMEOUT_MS
        return b"354 End data with <CR><LF>.<CR><LF>\r\n"

    def _refusal(self, e):
        if isinstance(e, OSError) and e.args and e.args[0] == _ENOSPC:
            return ERR_FULL
        log.exception("smtp spool", e)
        return ERR_IO

    def _end_of_data(self):
        """End of DATA: start the spool commit (proto.Session.job). The reply
        comes from on_job() once it has finished: 250 only when the message is
        on stable storage (RFC 5321 §4.1.1.4, §6.1), 451/452 if it failed."""
        reply = self.decoder.error
        if reply is None:
            try:
                self.job = self.writer.start_commit(self.sender, self.routes)
                self.writer = None  # the job owns it now: nothing to abort
                return None  # (the transaction is reset in on_job)
            except Exception as e:
                reply = self._refusal(e)
        else:
            log.warn("smtp %s: message refused: %s", self.peer[0], reply[:-2].decode())
        self._reset()
        return reply

    def on_job(self, job):
        e = job.error
        if e is None:
            self.messages += 1
            log.info("smtp %s: accepted %s from <%s>, %d recipients, %d octets", self.peer[0], job.id,
                     self.sender, len(self.routes), self.decoder.size)
            reply = ("250 2.0.0 Ok: queued as %s\r\n" % job.id).encode()
        else:
            reply = self._refusal(e)
        self._reset()
        return reply

    def _received(self):
        """RFC 5321 §4.4 trace header; protocol names from RFC 3848."""
        proto = "ESMTP" if self.esmtp else "SMTP"
        if self.tls_active:
            proto += "S"
        if self.user is not None:
            proto += "A"
        svc = self.svc
        rcpt = ""
        if len(self.routes) == 1:
            rcpt = "\r\n\tfor <%s>" % self.routes[0].address
        return (
            "Received: from %s ([%s])\r\n\tby %s (dialgate) with %s%s;\r\n\t%s\r\n"
            % (self.helo, self.peer[0], svc.hostname, proto, rcpt, rfc5322_date(compat.wall_time()))
        ).encode()

    def _head_fix(self, need_date, need_id):
        """RFC 6409 §8.2-8.3: a submission server may add Date and Message-ID."""
        now = compat.wall_time()
        out = []
        if need_date and now >= _CLOCK_SET:  # no Date at all beats a 1970 one
            out.append("Date: %s\r\n" % rfc5322_date(now))
        if need_id:
            tag = binascii.hexlify(compat.urandom(8)).decode()
            out.append("Message-ID: <%d.%s@%s>\r\n" % (now, tag, self.svc.hostname))
        return "".join(out).encode()

    def smtp_RSET(self, arg):
        if arg:
            return self._bogus(b"501 5.5.4 Syntax: RSET\r\n")
        self._reset()
        return b"250 2.0.0 Ok\r\n"

    def smtp_NOOP(self, arg):
        return b"250 2.0.0 Ok\r\n"

    def smtp_QUIT(self, arg):
        self.closing = True
        self.quit_seen = True
        return ("221 2.0.0 %s closing connection\r\n" % self.svc.hostname).encode()

    def smtp_VRFY(self, arg):
        if not arg:
            return self._bogus(b"501 5.5.4 Syntax: VRFY address\r\n")
        return b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"  # §3.5.3

    def smtp_HELP(self, arg):
        return b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP AUTH STARTTLS\r\n"

    def smtp_STARTTLS(self, arg):
        if arg:
            return self._bogus(b"501 5.5.4 Syntax: STARTTLS\r\n")
        if self.svc.tls is None:
            return self._bogus(b"502 5.5.1 STARTTLS not offered\r\n")
        if self.tls_active:
            return self._bogus(b"503 5.5.1 TLS already active\r\n")
        ctx = self.svc.tls()  # the certificate, loaded on first use (app: the LAN state)
        if ctx is None:
            return b"454 4.7.0 TLS not available now\r\n"  # RFC 3207 §4
        self.tls = ctx  # net drains, upgrades, then calls on_tls()
        return b"220 2.0.0 Ready to start TLS\r\n"

    # ---- AUTH (RFC 4954): smtp_auth, imported on the first AUTH --------------------

    def smtp_AUTH(self, arg):
        from .smtp_auth import command

        return command(self, arg)


# verb -> (states it is allowed in, method). Wrong state: 503 from on_line.
COMMANDS = {
    b"EHLO": (_ANY, SmtpSession.smtp_EHLO),
    b"HELO": (_ANY, SmtpSession.smtp_HELO),
    b"MAIL": (S_READY, SmtpSession.smtp_MAIL),
    b"RCPT": (_S_MAIL | _S_RCPT, SmtpSession.smtp_RCPT),
    b"DATA": (_S_RCPT, SmtpSession.smtp_DATA),
    b"RSET": (_ANY, SmtpSession.smtp_RSET),
    b"NOOP": (_ANY, SmtpSession.smtp_NOOP),
    b"QUIT": (_ANY, SmtpSession.smtp_QUIT),
    b"VRFY": (_ANY, SmtpSession.smtp_VRFY),
    b"HELP": (_ANY, SmtpSession.smtp_HELP),
    b"AUTH": (S_READY, SmtpSession.smtp_AUTH),
    b"STARTTLS": (S_READY, SmtpSession.smtp_STARTTLS),
}
