"""SMTP client core (sans-IO): relay queued messages to a smarthost or MX, driven by reply codes.

The transport (`net_out.connect`) feeds reply lines to `on_line()`, writes what it
returns, streams `producer` (a message body, dot-stuffed from flash) and runs
the TLS handshake when `tls` is set (proto.Session). No sockets, no clock, no
files here.
"""

import binascii

from . import dotstuff
from .compat import const
from .envelope import Envelope, outcome  # noqa: F401  (the client's data type; re-exported)
from .proto import Session

# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; we accept more, bounded.
_MAX_REPLY_LINE = const(1000)
# Reply text kept per recipient for the queue record and the DSN (octets).
_MAX_TEXT = const(200)

# Expected-reply kinds (one entry per command sent, in order: RFC 2920 §3.1).
GREET = 0
_EHLO = const(1)
_HELO = const(2)
_STARTTLS = const(3)
_AUTH = const(4)
_AUTH_USER = const(5)  # AUTH LOGIN: 334 asking for the user name
_AUTH_PASS = const(6)  # AUTH LOGIN: 334 asking for the password
_AUTH_DONE = const(14)  # AUTH LOGIN: the final 235
_MAIL = const(7)
RCPT = 8
DATA = 9
_DOT = const(10)
_RSET = const(11)
_QUIT = const(12)
_ETRN = const(13)
_BDAT = const(15)  # RFC 3030 §2: "BDAT n LAST", the whole message in one chunk

# RFC 3030 §4.2 with RFC 2920: messages whose BDAT LAST may be unanswered at once.
# Enough to keep a 33.6 kbps line busy over a 600 ms round trip with 300-octet
# messages; bounds the RAM of the envelopes in flight and the copies a dropped
# line can leave (sent, 250 lost: RFC 1047).
BDAT_WINDOW = 8

# TLS policies (config relay.tls)
_TLS_NONE = const("none")
_TLS_OPPORTUNISTIC = const("opportunistic")
_TLS_STARTTLS = const("starttls")
TLS_IMPLICIT = "implicit"


class SmtpClient(Session):
    """One client connection. `source.next_envelope()` -> Envelope or None hands
    messages over one at a time (asked for early when pipelining);
    `source.envelope_done(env)` is called when a transaction is decided.

    Session results: `failed` (code, text) when the session itself failed
    (greeting, EHLO, STARTTLS, AUTH, 421); `round_trips` counts client turns
    (each time the client sends and then must wait for the server).

    With PIPELINING and CHUNKING offered, each message goes as MAIL, RCPT...,
    `BDAT <size> LAST` and its octets, and the next message follows at once,
    up to `window` messages ahead of their replies (RFC 3030 §4.2): no wait for
    354 nor for the 250 of the message before. Replies are matched in order; a
    message counts as delivered only at its own 250.
    """

    max_line = _MAX_REPLY_LINE
    timeout_ms = 300000  # RFC 5321 §4.5.3.2: 5 min for most replies; 10 min after "."

    def __init__(self, source, helo, tls=_TLS_STARTTLS, user="", password="", pipelining=True,
                 etrn=None, rbuf=None, tls_context=None, peer=("", 0), chunking=True, window=BDAT_WINDOW):
        Session.__init__(self, peer)
        self.source = source
        self.helo = helo
        self.tls_policy = tls
        self.tls_context = tls_context  # () -> client ssl context, made when STARTTLS is said yes to
        self.tls_active = tls == TLS_IMPLICIT
        self.user = user
        self.password = password
        self.allow_pipelining = pipelining
        self.allow_chunking = chunking
        self.window = window
        self.in_flight = 0  # BDAT LAST sent, its reply not yet read
        self.need_rset = False  # a BDAT failed: RSET before the next MAIL
        self.drained = False  # the source is empty: ETRN/QUIT went (or goes) out
        self.etrn = list(etrn or [])
        self.etrn_results = []
        self.rbuf = rbuf or bytearray(1024)
        self.expect = []  # (kind, envelope, index) per command in flight
        self.code = 0  # multi-line reply being collected
        self.text = b""
        self.banner = b""
        self.ext = {}  # EHLO keyword -> parameter string
        self.esmtp = False
        self.authed = False
        self.failed = None
        self.round_trips = 0
        self.sent_messages = 0
        self.in_txn = False  # MAIL accepted, transaction not yet ended
        self.after_body = None  # commands to send right after the producer
        self.quit_sent = False
        self.expect.append((GREET, None, 0))

    # ---- the proto.Session side ---------------------------------------------

    def on_line(self, line):
        """One reply line without CRLF -> bytes to send, or None."""
        if len(line) < 3 or not line[:3].isdigit():
            return self._fail(0, b"malformed reply: " + bytes(line[:60]), False)
        code = int(line[:3])
        cont = len(line) > 3 and line[3] == 45  # "-": RFC 5321 §4.2.1 multiline
        if code == 250 and self.expect and self.expect[0][0] == _EHLO:
            self._ehlo_line(line)
        if cont:
            if not self.code:
                self.code = code
                self.text = bytes(line[4 : 4 + _MAX_TEXT])
            return None
        if not self.code:
            self.text = bytes(line[4 : 4 + _MAX_TEXT])
        self.code = 0
        if not self.expect:
            return self._fail(code, b"unexpected reply: " + self.text, False)
        kind, env, i = self.expect.pop(0)
        if code == 421 and kind != _QUIT:
            # RFC 5321 §3.8: the server is closing; whatever is in flight stays pending.
            self.failed = (code, self.text)
            self.closing = True
            return None
        return self._dispatch(kind, env, i, code, self.text)

    def on_overflow(self):
        self._fail(0, b"reply line too long", False)
        return None

    def on_eof(self):
        lost = not self.quit_sent
        for e in self.expect:
            lost = lost or e[0] != _QUIT
        if lost and self.failed is None:
            self.failed = (0, b"connection lost")
        self.closing = True

    def take_reply(self):
        """Commands to send once the producer (a message body) has been streamed;
        with CHUNKING this may set the next producer (the transport streams it too)."""
        r = self.after_body
        self.after_body = None
        if r is None and self.chunking() and not self.drained and not self.closing:
            if self.in_flight < self.window and self.failed is None:
                r = self._next_transaction(b"", counted=True)
        return r

    def on_timeout(self):
        """No reply within `timeout_ms` (relay.timeout): what was in flight stays pending."""
        if self.failed is None:
            self.failed = (0, b"timeout")
        self.closing = True
        return None

    def on_close(self):
        p = self.producer
        if p is not None:
            self.producer = None
            p.close()

    def early_data(self):
        """RFC 3207 §5 / CVE-2011-0411: nothing may follow the 220 to STARTTLS."""
        self._fail(0, b"data after STARTTLS reply", False)
        return False

    def on_tls(self):
        """The transport finished the TLS handshake: RFC 3207 §4.2, forget and EHLO again."""
        self.tls = None
        self.tls_active = True
        self.ext = {}
        return self._send(b"EHLO " + self.helo + b"\r\n", _EHLO)

    # ---- replies ------------------------------------------------------------

    def _dispatch(self, kind, env, i, code, text):
        ok = code // 100 == 2
        if kind == GREET:
            self.banner = text  # may carry the ISP's date (a board sets its clock from it)
            if code != 220:
                return self._fail(code, text)
            return self._send(b"EHLO " + self.helo + b"\r\n", _EHLO)
        if kind == _EHLO:
            if ok:
                self.esmtp = True
                return self._after_hello()
            if code // 100 == 5:  # RFC 5321 §3.2: fall back to HELO
                return self._send(b"HELO " + self.helo + b"\r\n", _HELO)
            return self._fail(code, text)
        if kind == _HELO:
            if not ok:
                return self._fail(code, text)
            self.esmtp = False
            self.ext = {}
            return self._after_hello()
        if kind == _STARTTLS:
            if code != 220:
                return self._fail(code, text)
            # the context only now: a smarthost that offers no STARTTLS to an
            # opportunistic client needs none (nor a CA file on a board)
            make = self.tls_context
            try:
                if make is None:
                    raise ValueError("no TLS context")
                self.tls = make()
            except (OSError, ValueError) as e:
                return self._fail(0, ("TLS: %s" % e).encode(), False)
            return None
        if kind == _AUTH or kind == _AUTH_DONE:
            if code != 235:
                return self._fail(code, text)
            self.authed = True
            return self._next_transaction(b"")
        if kind == _AUTH_USER or kind == _AUTH_PASS:  # RFC 4954 §4: 334 challenges
            if code != 334:
                return self._fail(code, text)
            if kind == _AUTH_USER:
                return self._send(_b64(self.user.encode()) + b"\r\n", _AUTH_PASS)
            return self._send(_b64(self.password.encode()) + b"\r\n", _AUTH_DONE)
        if kind == _MAIL:
            env.mail_ok = ok
            self.in_txn = ok
            if not ok and not (code == 503 and self.chunking()):
                _decide_all(env, code, text)
            # 503 behind a failed BDAT (a server that kept that transaction):
            # a sequence error, no verdict on this message; it stays queued
            return self._maybe_next(env)
        if kind == _BDAT:
            return self._on_bdat_reply(env, ok, code, text)
        if kind == RCPT:
            if env.mail_ok:
                if ok:
                    env.accepted[i] = True
                else:
                    env.results[i] = (code, text)
            return self._maybe_next(env)
        if kind == DATA:
            return self._on_data_reply(env, code, text)
        if kind == _DOT:
            self.in_txn = False
            for j in range(len(env.rcpts)):
                if env.accepted[j]:
                    env.results[j] = (code, text)
            if ok:
                self.sent_messages += 1
            self._done(env)
            return self._maybe_send_after_dot()
        if kind == _RSET:
            return None if self.pipelining() else self._next_transaction(b"")
        if kind == _ETRN:
            self.etrn_results.append((code, text))
            return self._next_etrn()
        if kind == _QUIT:
            self.closing = True
            return None
        return None

    def _ehlo_line(self, line):
        """RFC 5321 §4.1.1.1: one extension per line after the first."""
        if not self.code:
            return  # first line is the greeting text, not an extension
        try:
            words = bytes(line[4:]).decode().split(None, 1)
        except UnicodeError:  # not ASCII, so no ehlo-keyword (RFC 5321 §4.1.1.1): ignored
            return
        if not words:
            return
        key = words[0].upper()
        param = words[1] if len(words) > 1 else ""
        if key.startswith("AUTH="):  # pre-RFC 4954 form
            param = key[5:] + " " + param
            key = "AUTH"
        if key == "AUTH" and "AUTH" in self.ext:
            param = self.ext["AUTH"] + " " + param
        self.ext[key] = param.upper() if key == "AUTH" else param

    def _after_hello(self):
        offered = "STARTTLS" in self.ext
        pol = self.tls_policy
        if not self.tls_active and (pol == _TLS_STARTTLS or (pol == _TLS_OPPORTUNISTIC and offered)):
            if not offered:  # RFC 3207 §4.1: a required STARTTLS that is missing ends the session
                return self._fail(0, b"STARTTLS required but not offered")
            return self._send(b"STARTTLS\r\n", _STARTTLS)
        if self.user and not self.authed:
            if not self.tls_active and pol != _TLS_NONE:
                return self._fail(0, b"refusing to send a password without TLS")
            mechs = self.ext.get("AUTH", "").split()
            if "PLAIN" in mechs:  # RFC 4954 §4 initial response, RFC 4616
                cred = b"\0" + self.user.encode() + b"\0" + self.password.encode()
                return self._send(b"AUTH PLAIN " + _b64(cred) + b"\r\n", _AUTH)
            if "LOGIN" in mechs:
                return self._send(b"AUTH LOGIN\r\n", _AUTH_USER)
            return self._fail(0, b"server offers no AUTH PLAIN or LOGIN")
        return self._next_transaction(b"")

    def _on_data_reply(self, env, code, text):
        if code != 354:
            # RFC 5321 §3.3: no data without 354; accepted rcpts take this reply.
            for j in range(len(env.rcpts)):
                if env.accepted[j] and env.results[j] is None:
                    env.results[j] = (code, text)
                    env.accepted[j] = False
            self._done(env)
            return self._next_transaction(b"RSET\r\n" if self.in_txn else b"")
        # 354: stream the body (or, with no accepted recipient, an empty one: RFC 2920 §3.1).
        self.expect.append((_DOT, env, 0))
        if True in env.accepted:
            self.producer = dotstuff.MessageProducer(env.opener(), self.rbuf)
        else:
            self.producer = _Bytes(b".\r\n")
        self.round_trips += 1 if len(self.expect) == 1 else 0
        if self.pipelining():
            # RFC 2920 §3.1: message content may start a group; pipeline the next envelope.
            self.after_body = self._next_transaction(b"", counted=True)
        return None

    def _on_bdat_reply(self, env, ok, code, text):
        """RFC 3030 §2: the reply to BDAT LAST ends the transaction (the server
        discards the octets of a refused chunk); its accepted recipients take it."""
        self.in_flight -= 1
        self.in_txn = False
        if env.mail_ok:
            for j in range(len(env.rcpts)):
                if env.accepted[j]:
                    env.results[j] = (code, text)
            if ok:
                self.sent_messages += 1
            else:
                self.need_rset = True  # RFC 3030 §2: the transaction failed; start clean
        self._done(env)
        if self.drained or self.quit_sent or self.producer is not None or self.in_flight >= self.window:
            return None
        # the window had closed (or this was the last reply): open the next
        return self._next_transaction(b"")

    def _maybe_next(self, env):
        """After MAIL/RCPT replies without pipelining: send the next command of env."""
        if self.pipelining() or self.expect:
            return None
        if not env.mail_ok:
            self._done(env)
            return self._next_transaction(b"")
        i = env.next_rcpt
        if i < len(env.rcpts):
            env.next_rcpt = i + 1
            return self._send(_rcpt(env.rcpts[i]), RCPT, env, i)
        if True not in env.accepted:
            self._done(env)
            return self._next_transaction(b"RSET\r\n")
        return self._send(b"DATA\r\n", DATA, env)

    def _maybe_send_after_dot(self):
        if self.pipelining():
            return None  # the next group already went out behind the body
        return self._next_transaction(b"")

    # ---- transactions ----------------------------------------------------------

    def pipelining(self):
        return self.allow_pipelining and "PIPELINING" in self.ext

    def chunking(self):
        """RFC 3030 BDAT, used only with RFC 2920 pipelining (the point is not to wait)."""
        return self.allow_chunking and "CHUNKING" in self.ext and self.pipelining()

    def _next_transaction(self, prefix, counted=False):
        """Commands opening the next message (RSET first if `prefix`), or ETRN/QUIT.

        Without pipelining a RSET goes alone; its reply calls us again."""
        if not counted and not self.expect:
            self.round_trips += 1  # whatever follows, the client now waits
        if self.need_rset and self.chunking():
            self.need_rset = False
            prefix = b"RSET\r\n"
        if prefix:
            self.in_txn = False
            self.expect.append((_RSET, None, 0))
            if not self.pipelining():
                return prefix
        while True:
            env = self.source.next_envelope()
            if env is None:
                break
            limit = _size_limit(self.ext.get("SIZE", ""))
            if limit and env.size > limit:
                # RFC 1870 §6: the server's fixed limit; do not send, bounce.
                t = "5.3.4 message size %d exceeds the server's limit of %d octets (RFC 1870)" % (env.size, limit)
                _decide_all(env, 552, t.encode())
                self._done(env)
                continue
            if not env.rcpts:
                self._done(env)
                continue
            return self._open(env, prefix)
        self.drained = True
        if self.etrn and self.esmtp:
            self.expect.append((_ETRN, None, 0))
            return prefix + self._etrn_cmd()
        self.quit_sent = True
        self.expect.append((_QUIT, None, 0))
        return prefix + b"QUIT\r\n"

    def _open(self, env, prefix):
        mail = b"MAIL FROM:<" + env.sender.encode() + b">"
        if "SIZE" in self.ext:
            mail += (" SIZE=%d" % env.size).encode()  # RFC 1870 §3
        if "8BITMIME" in self.ext:
            mail += b" BODY=8BITMIME"  # RFC 6152 §3: content may contain 8-bit octets
        mail += b"\r\n"
        if not self.pipelining():
            self.expect.append((_MAIL, env, 0))
            return mail
        parts = [prefix, mail]
        for r in env.rcpts:
            parts.append(_rcpt(r))
        chunk = self.chunking()
        if chunk:
            # RFC 3030 §2: the exact octet count, no dot-stuffing, no end marker
            parts.append(("BDAT %d LAST\r\n" % env.size).encode())
            self.producer = ChunkProducer(env.opener(), env.size)
            self.in_flight += 1
        else:
            parts.append(b"DATA\r\n")  # RFC 2920 §3.1: DATA ends the group
        self.expect.append((_MAIL, env, 0))
        for i in range(len(env.rcpts)):
            self.expect.append((RCPT, env, i))
        self.expect.append((_BDAT if chunk else DATA, env, 0))
        return b"".join(parts)

    def _send(self, data, kind, env=None, i=0):
        if not self.expect:
            self.round_trips += 1
        self.expect.append((kind, env, i))
        return data

    def _etrn_cmd(self):
        d = self.etrn.pop(0)
        return b"ETRN " + d.encode() + b"\r\n"  # RFC 1985 §3

    def _next_etrn(self):
        if self.etrn:
            return self._send(self._etrn_cmd(), _ETRN)
        self.quit_sent = True
        return self._send(b"QUIT\r\n", _QUIT)

    def _done(self, env):
        self.source.envelope_done(env)

    def _fail(self, code, text, polite=True):
        """The session cannot go on: say QUIT (if the line is still sane) and close."""
        if self.failed is None:
            self.failed = (code, text)
        if self.quit_sent or not polite:
            self.closing = True
            return None
        self.quit_sent = True
        self.expect = [(_QUIT, None, 0)]
        return b"QUIT\r\n"


class ChunkProducer:
    """The octets of a BDAT chunk: exactly `size` octets of the stored message,
    read straight into the transport's buffer (no copy, no stuffing). A file
    shorter than its record says raises OSError: the connection is dropped
    rather than let the server read our next command as message data."""

    def __init__(self, f, size):
        self.f = f
        self.left = size

    def fill(self, buf):
        left = self.left
        if left <= 0:
            self.close()
            return 0
        n = len(buf)
        if n > left:
            n = left
        got = self.f.readinto(memoryview(buf)[:n])
        if not got:
            self.close()
            raise OSError("message file shorter than its queue record")
        self.left = left - got
        return got

    def close(self):
        f = self.f
        if f is not None:
            self.f = None
            f.close()


class _Bytes:
    """A producer for a short constant (the lone "." ending an empty DATA)."""

    def __init__(self, data):
        self.data = data

    def fill(self, buf):
        d = self.data
        if not d:
            return 0
        n = len(d)
        buf[:n] = d
        self.data = b""
        return n

    def close(self):
        pass


def _rcpt(addr):
    return b"RCPT TO:<" + addr.encode() + b">\r\n"


def _b64(data):
    return binascii.b2a_base64(data)[:-1]


def _decide_all(env, code, text):
    for j in range(len(env.rcpts)):
        if env.results[j] is None:
            env.results[j] = (code, text)
        env.accepted[j] = False


def _size_limit(param):
    """RFC 1870 §4: SIZE with an optional limit; 0 means no fixed limit."""
    p = param.strip()
    return int(p) if p.isdigit() else 0
