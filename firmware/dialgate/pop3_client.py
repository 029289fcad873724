"""POP3 client (RFC 1939) for multidrop collection, sans-IO: logs in to the ISP's
mailbox, lists it, fetches each message the collection wants and deletes it
once the collection has committed it (and journaled its UIDL).

    greeting -> CAPA (RFC 2449) -> [STLS (RFC 2595) -> CAPA] -> APOP | AUTH CRAM-MD5
    | AUTH PLAIN | USER/PASS -> STAT, UIDL, LIST -> { RETR n -> [DELE n] } -> QUIT

Passwords go in clear (AUTH PLAIN, USER/PASS) only inside TLS unless the caller
allows it. With PIPELINING (RFC 2449 §6.6) the listing commands go together and
each DELE rides with the next RETR. RETR is streamed in raw mode through the
SMTP DATA dot-decoder (smtp_data.DotDecoder: the same multi-line framing,
RFC 1939 §3) into the collection, in constant RAM.

The collection (multidrop.Collection) decides and stores: `begin_listing(count)`,
`listed(n, uid)`, `sized(n, octets)`, `listing_done()`, `next()` -> (RETR|DELE,
n) or None, `begin(n)` -> sink with write(), `retrieved(n, error)` -> a spool
commit job or None, `committed(job)` once that job has finished (net's group
committer on CPython, at once on a board: proto.Session.job), `deleted(n, ok)`,
`quit(ok)`, `abort()`. No sockets, no clock, no files here.
"""

import binascii

from . import auth, limits
from .compat import const
from .proto import Session

# What the reply at the head of the queue answers.
GREET = 0
_CAPA = const(1)
_STLS = const(2)
_APOP = const(3)
_AUTH = const(4)  # AUTH CRAM-MD5: "+ challenge" first
_AUTH_DONE = const(5)
USER = 6
_PASS = const(7)
_STAT = const(8)
_UIDL = const(9)
_LIST = const(10)
RETR = 11
DELE = 12
_QUIT = const(13)

# How a collection ended (`result[0]`), for the dial session and the log.
DONE = "collected"  # logged in, listed, fetched what it could: a success
LATER = "retry"  # a dropped line, a timeout, [IN-USE], [SYS/TEMP]: the next call goes on
CONFIG = "refused"  # login refused, no UIDL, no TLS where required: only the operator can fix it


def apop_digest(stamp, secret):
    """RFC 1939 §7: lowercase hex MD5 of the greeting's timestamp and the secret."""
    import hashlib

    return binascii.hexlify(hashlib.md5(stamp + secret.encode()).digest())


class Pop3Client(Session):
    """One POP3 connection to the ISP mailbox.

    `tls`: "stls" (required), "opportunistic" (when offered), "implicit" (TLS
    from the first octet: net_out.connect got the context) or "none";
    `tls_context()` makes the context for STLS. `plaintext`: may a password go
    in clear without TLS (AUTH PLAIN, USER/PASS)? `box`: the collection.
    `scratch`: a bytearray for the RETR dot-decoder to scan in.
    `result` = (DONE | LATER | CONFIG, text (bytes), key to check or "").
    """

    max_line = limits.POP3_REPLY_LINE
    timeout_ms = limits.POP3_CLIENT_TIMEOUT_MS

    def __init__(self, user, password, box, tls="stls", tls_context=None, plaintext=False, peer=("", 0),
                 scratch=None):
        Session.__init__(self, peer)
        self.user = user
        self.password = password
        self.box = box
        self.tls_policy = tls
        self.tls_context = tls_context
        self.plaintext = plaintext
        self.tls_active = tls == "implicit"
        self.pending = [(GREET, 0)]  # (kind, message index) per reply awaited, oldest first
        self.greeted = False
        self.multi = 0  # kind of the multi-line reply being read (CAPA, UIDL, LIST), 0: none
        self.capa = None  # None: no CAPA (an RFC 1939 server); else {NAME: "ARGS"}
        self.stamp = b""
        self.tried = ""  # login methods tried, one letter each
        self.pipelining = False
        self.decoder = None
        self._retr = -1  # index of the message RETR is streaming
        self.reply = None
        self.result = None
        self.quit_sent = False
        # the dot-decoder's scan buffer (board.buffer octets; its content never outlives one read)
        self.scratch = scratch if scratch is not None else bytearray(512)

    # ---- proto.Session ------------------------------------------------------

    def on_line(self, line):
        if self.tls is not None:
            return None
        if self.multi:
            return self._item(line)
        if not self.pending:
            return self._end(LATER, b"unexpected reply: " + bytes(line[:60]), "", False)
        kind, i = self.pending.pop(0)
        if line.startswith(b"+OK"):
            return self._ok(kind, i, line)
        if line.startswith(b"+ ") and kind == _AUTH:  # RFC 5034 §4: a SASL challenge
            return self._send(auth.cram_md5(self.user, self.password, bytes(line[2:])) + b"\r\n", _AUTH_DONE)
        if line.startswith(b"-ERR"):
            return self._err(kind, i, bytes(line[:200]))
        return self._end(LATER, b"malformed reply: " + bytes(line[:60]), "", False)

    def on_data(self, mv):
        n = self.decoder.feed(mv)
        if self.decoder.done:
            self.raw = False
            err = self.decoder.error
            self.decoder = None
            job = self.box.retrieved(self._retr, err)
            if job is not None:
                self.job = job  # the next command once it is durable (on_job)
            else:
                self.reply = self._go()
        return n

    def on_job(self, job):
        self.box.committed(job)
        return self._go()

    def take_reply(self):
        r = self.reply
        self.reply = None
        return r

    def on_overflow(self):
        self._end(LATER, b"reply line too long", "", False)
        return b""  # nothing to say (the Framer writes what this returns)

    def on_timeout(self):
        self._end(LATER, b"no reply in time", "", False)
        return None

    def on_eof(self):
        self._end(LATER, b"connection lost", "", False)

    def on_close(self):
        self.decoder = None
        self.box.abort()  # a message cut off mid-RETR: nothing of it is kept

    def early_data(self):
        self._end(LATER, b"data after the STLS reply", "", False)  # RFC 2595 §4 (cf. RFC 3207 §5)
        return False

    def on_tls(self):
        self.tls = None
        self.tls_active = True
        self.capa = None  # RFC 2595 §4: forget what was said before TLS
        return self._send(b"CAPA\r\n", _CAPA)

    # ---- replies ------------------------------------------------------------

    def _ok(self, kind, i, line):
        if kind == GREET:
            self.greeted = True
            lt = line.find(b"<")
            gt = line.find(b">", lt + 1)
            if lt > 0 and gt > lt:  # RFC 1939 §7: the APOP timestamp, <...@...>
                self.stamp = bytes(line[lt : gt + 1])
            return self._send(b"CAPA\r\n", _CAPA)
        if kind == _CAPA:
            self.capa = {}
            self.multi = _CAPA
            return None
        if kind == _STLS:
            try:
                if self.tls_context is None:
                    raise ValueError("no TLS context")
                self.tls = self.tls_context()
            except (OSError, ValueError) as e:
                return self._end(CONFIG, ("TLS: %s" % e).encode(), "relay.ca_file", False)
            return None
        if kind in (_APOP, _AUTH_DONE, _PASS):
            return self._listing()
        if kind == USER:
            return self._send(b"PASS " + self.password.encode() + b"\r\n", _PASS)
        if kind == _STAT:
            w = line.split()
            self.box.begin_listing(int(w[1]) if len(w) > 1 and w[1].isdigit() else 0)
            return self._pipelined_listing(_UIDL)
        if kind == _UIDL or kind == _LIST:
            self.multi = kind
            return None
        if kind == RETR:
            from .smtp_data import DotDecoder  # RFC 1939 §3: the same framing as SMTP DATA

            sink = self.box.begin(i)
            big = self.box.max_size + 65536  # a LIST size a little off must not cut a message
            self.decoder = DotDecoder(sink, big, big, self.scratch, None, self.box.sink_error)
            self._retr = i
            self.raw = True
            return None
        if kind == DELE:
            self.box.deleted(i, True)
            return self._go() if not self.pending else None
        if kind == _QUIT:
            self.box.quit(True)
            return self._end(DONE, b"", "", False)
        return None

    def _err(self, kind, i, line):
        if kind == GREET:
            return self._end(LATER, line, "isp.pop3.host", False)
        if kind == _CAPA:  # RFC 1939-only server: no capabilities to go by
            return self._after_capa()
        if kind == _STLS:
            if self.tls_policy == "stls":
                return self._end(CONFIG, b"STLS refused: " + line, "isp.pop3.tls")
            return self._login()
        if kind in (_APOP, _AUTH, _AUTH_DONE, USER, _PASS):
            code = line[5:].upper()
            if code.startswith(b"[IN-USE]") or code.startswith(b"[SYS/TEMP]") or code.startswith(b"[LOGIN-DELAY]"):
                return self._end(LATER, line, "")  # RFC 2449 §8.1.2, RFC 3206 §4: not the password
            return self._login(line)
        if kind == _STAT:
            return self._end(LATER, line, "")
        if kind == _UIDL:  # RFC 1939 §7 UIDL is optional, and nothing works without it
            return self._end(CONFIG, b"no UIDL: " + line, "isp.pop3.host")
        if kind == _LIST:
            return self._end(LATER, line, "")
        if kind == RETR:  # gone meanwhile (another client): it stays for the box's count
            self.box.retrieved(i, line)
            return self._go()
        if kind == DELE:
            self.box.deleted(i, False)
            return self._go() if not self.pending else None
        if kind == _QUIT:  # RFC 1939 §6: "some deleted messages not removed"
            self.box.quit(False)
            return self._end(LATER, line, "", False)
        return None

    def _item(self, line):
        """One line of a multi-line reply (RFC 1939 §3: "." ends it, ".." is a dot)."""
        if line == b".":
            k = self.multi
            self.multi = 0
            if k == _CAPA:
                return self._after_capa()
            if k == _UIDL:
                return self._pipelined_listing(_LIST) if not self.pending else None
            self.box.listing_done()
            return self._go()
        if line.startswith(b"."):
            line = line[1:]
        k = self.multi
        if k == _CAPA:
            try:
                w = bytes(line).decode().split(None, 1)
            except UnicodeError:  # CAPA tags are ASCII (RFC 2449 §5): a line that is not, is ignored
                return None
            if w:
                self.capa[w[0].upper()] = w[1].upper() if len(w) > 1 else ""
            return None
        sp = line.find(b" ")
        if sp > 0 and line[:sp].isdigit():
            n = int(line[:sp])
            if k == _UIDL:
                self.box.listed(n, bytes(line[sp + 1 :]).strip())
            elif line[sp + 1 :].strip().isdigit():
                self.box.sized(n, int(line[sp + 1 :].strip()))
        return None

    # ---- the dialogue -----------------------------------------------------------

    def _after_capa(self):
        c = self.capa
        self.pipelining = c is not None and "PIPELINING" in c
        pol = self.tls_policy
        offered = c is not None and "STLS" in c
        if not self.tls_active and (pol == "stls" or (pol == "opportunistic" and offered)):
            if not offered:  # RFC 2595 §2.1: a required STLS that is missing ends it
                return self._end(CONFIG, b"STLS required but not offered", "isp.pop3.tls")
            return self._send(b"STLS\r\n", _STLS)
        return self._login()

    def _login(self, why=b""):
        """The next login method not tried yet: APOP (the secret never leaves),
        AUTH CRAM-MD5, then in clear only inside TLS (or where allowed): AUTH
        PLAIN (RFC 5034, initial response), USER/PASS. `why`: the last refusal."""
        c = self.capa
        mechs = c.get("SASL", "").split() if c is not None else []
        clear = self.tls_active or self.plaintext
        t = self.tried
        if self.stamp and "a" not in t:
            self.tried += "a"
            return self._send(b"APOP " + self.user.encode() + b" " + apop_digest(self.stamp, self.password) + b"\r\n",
                              _APOP)
        if "CRAM-MD5" in mechs and "c" not in t:
            self.tried += "c"
            return self._send(b"AUTH CRAM-MD5\r\n", _AUTH)
        if clear and "PLAIN" in mechs and "p" not in t:
            self.tried += "p"
            cred = b"\0" + self.user.encode() + b"\0" + self.password.encode()
            return self._send(b"AUTH PLAIN " + auth.b64encode(cred) + b"\r\n", _AUTH_DONE)
        if clear and (c is None or "USER" in c) and "u" not in t and "p" not in t:
            self.tried += "u"
            return self._send(b"USER " + self.user.encode() + b"\r\n", USER)
        if why:
            return self._end(CONFIG, b"login refused: " + why, "isp.pop3.user/password")
        return self._end(CONFIG, b"no login without sending the password in clear", "isp.pop3.tls or isp.pop3.plaintext")

    def _listing(self):
        self.tried = ""
        if not self.pipelining:
            return self._send(b"STAT\r\n", _STAT)
        self.pending.append((_STAT, 0))
        self.pending.append((_UIDL, 0))
        self.pending.append((_LIST, 0))
        return b"STAT\r\nUIDL\r\nLIST\r\n"

    def _pipelined_listing(self, kind):
        if self.pipelining:
            return None  # already sent
        return self._send(b"UIDL\r\n" if kind == _UIDL else b"LIST\r\n", kind)

    def _go(self):
        """Send what the collection wants next: DELEs (all of them together
        with PIPELINING), then one RETR; QUIT when it wants nothing more."""
        if self.result is not None:
            return None
        out = b""
        box = self.box
        while True:
            act = box.next()
            if act is None:
                self.quit_sent = True
                self.pending.append((_QUIT, 0))
                return out + b"QUIT\r\n"
            kind, i = act
            self.pending.append((kind, i))
            out += (b"DELE %d\r\n" if kind == DELE else b"RETR %d\r\n") % box.number(i)
            if kind == RETR or not self.pipelining:
                return out

    def _send(self, data, kind):
        self.pending.append((kind, 0))
        return data

    def _end(self, how, text, key, polite=True):
        """The collection is over: QUIT if the line is still sane, then close."""
        if self.result is None:
            self.result = (how, text, key)
        if self.quit_sent or not polite:
            self.closing = True
            return None
        self.quit_sent = True
        self.pending = [(_QUIT, 0)]
        return b"QUIT\r\n"
