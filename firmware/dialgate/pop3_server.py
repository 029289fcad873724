"""POP3 server (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN (RFC 5034)
and response codes (RFC 3206), as a sans-IO proto.Session over the maildrops.

Dispatch on state, then verb: the table POP_VERBS maps a verb to (states, method);
the wrong-state reply comes from `on_line` only. Deletions happen at QUIT only.
"""

from . import auth, compat, limits, log
from .compat import const
from .dotstuff import LinesProducer, MessageProducer
from .mailbox import Locked
from .proto import Session

# RFC 1939 §3 states. UPDATE is entered and left inside QUIT.
_AUTHORIZATION = const(1)
_TRANSACTION = const(2)
ANY = _AUTHORIZATION | _TRANSACTION

_ERR_STATE = const(b"-ERR command not valid in this state\r\n")
_ERR_UNKNOWN = const(b"-ERR unknown command\r\n")
_ERR_SYNTAX = const(b"-ERR syntax error in arguments\r\n")
_ERR_NO_MSG = const(b"-ERR no such message\r\n")
_ERR_DELETED = const(b"-ERR message already deleted\r\n")
# RFC 3206 §5: the same words whether the user is unknown or the password wrong.
_ERR_LOGIN = const(b"-ERR [AUTH] invalid user name or password\r\n")
_ERR_LOCKOUT = const(b"-ERR [AUTH] too many failed logins from your address, try again later\r\n")
_ERR_PLAIN = const(b"-ERR [AUTH] plaintext login not allowed on this connection, use STLS\r\n")
_ERR_IN_USE = const(b"-ERR [IN-USE] maildrop already locked by another session\r\n")
_ERR_TEMP = const(b"-ERR [SYS/TEMP] maildrop not available, try again later\r\n")
OK = b"+OK\r\n"


def _int(word):
    """A non-negative decimal argument -> int, or -1 (RFC 1939 §3: numbers are decimal).
    Huge numbers are capped at 999999999 (more than any maildrop or message has)."""
    if not word or not word.isdigit():
        return -1
    if len(word) > 9:
        return 999999999
    return int(word)


def _name(word):
    """A user name: printable ASCII (RFC 1939 §7 USER), else None; folded to
    lower case, as `user add` stores every name (a client set up as "Bob")."""
    if not word or len(word) > limits.POP3_USER_NAME:
        return None
    for b in word:
        if b < 0x21 or b > 0x7E:
            return None
    return word.decode().lower()


class Pop3Session(Session):
    """One POP3 conversation. `svc` is the shared pop3_service.Pop3Service."""

    max_line = limits.POP3_COMMAND_LINE  # RFC 2449 §4

    def __init__(self, peer, svc):
        Session.__init__(self, peer)
        self.svc = svc
        self.timeout_ms = svc.idle_s * 1000
        self.state = _AUTHORIZATION
        self.tls = None  # proto.Session: an ssl context asks net to start TLS after this reply
        self.tls_active = False
        self.user = None  # name given by USER, waiting for PASS
        self.sasl = False  # next line is a SASL client response (RFC 5034 §4)
        self.stamp = svc.apop_stamp() if svc.users.apop else None
        self.name = None
        self.drop = None
        self.msgs = None
        self.deleted = None
        self.rbuf = None
        self.sending = None  # the producer streaming now (closed by on_close if cut off)

    # ---- proto.Session -------------------------------------------------

    def greeting(self):
        if self.stamp:  # RFC 1939 §7 APOP: the timestamp is in the greeting
            return ("+OK dialgate POP3 server ready %s\r\n" % self.stamp).encode()
        return b"+OK dialgate POP3 server ready\r\n"

    def on_line(self, line):
        if self.tls is not None:
            return None  # RFC 2595 §4: lines pipelined behind STLS are dropped unanswered
        if self.sasl:
            return self._sasl_response(line)
        sp = line.find(b" ")
        verb = (line if sp < 0 else line[:sp]).upper()
        arg = b"" if sp < 0 else line[sp + 1 :]
        entry = self.POP_VERBS.get(verb)
        if entry is None:
            self.user = None
            return _ERR_UNKNOWN
        if not entry[0] & self.state:
            self.user = None
            return _ERR_STATE
        if verb != b"PASS":
            self.user = None  # RFC 1939 §7: PASS must follow USER directly
        return entry[1](self, arg)

    def on_overflow(self):
        self.sasl = False
        self.max_line = limits.POP3_COMMAND_LINE
        return b"-ERR line too long\r\n"

    def on_timeout(self):
        # RFC 1939 §3: autologout does not enter UPDATE; nothing is deleted.
        return b"-ERR [SYS/TEMP] autologout, idle too long\r\n"

    def on_close(self):
        """Release the maildrop lock without expunging (dropped connection, timeout, QUIT)."""
        s = self.sending
        self.sending = None
        if s is not None:
            s.close()
        d = self.drop
        self.drop = None
        if d is not None:
            try:
                d.close()
            except OSError as e:
                log.warn("pop3 %s: unlock failed: %s", self.name, compat.exc_text(e))

    # ---- AUTHORIZATION -------------------------------------------------

    def pop_CAPA(self, arg):
        # RFC 2449 §5: capabilities may differ before and after login.
        svc = self.svc
        auth = self.state == _AUTHORIZATION
        out = "+OK capability list follows\r\nTOP\r\nUIDL\r\n"
        if auth and self.plain_ok():
            out += "USER\r\nSASL PLAIN\r\n"
        out += svc.capa_common  # RESP-CODES ... IMPLEMENTATION (pop3_service)
        if auth and svc.tls is not None and not self.tls_active:
            out += "STLS\r\n"
        return (out + ".\r\n").encode()

    def plain_ok(self):
        """May a password travel in the clear here? (pop3.plaintext; RFC 2595 §2)."""
        mode = self.svc.plaintext
        if mode == "always" or self.tls_active:
            return True
        return mode == "lan" and self.svc.is_lan(self.peer[0])

    def pop_USER(self, arg):
        if not self.plain_ok():
            return _ERR_PLAIN
        if not arg:
            return _ERR_SYNTAX
        # Any name is accepted here so USER does not reveal who exists (RFC 1939 §13).
        self.user = arg
        return b"+OK send PASS\r\n"

    def pop_PASS(self, arg):
        user = self.user
        self.user = None
        if user is None:
            return b"-ERR USER first\r\n"
        name = _name(user)
        try:
            pw = arg.decode()
        except UnicodeError:
            pw = None
        return self._login(name, pw, None)

    def pop_APOP(self, arg):
        if not self.stamp:
            return b"-ERR APOP not available\r\n"
        words = arg.split()
        if len(words) != 2 or len(words[1]) != 32:
            return _ERR_SYNTAX
        return self._login(_name(words[0]), None, words[1].lower())

    def pop_AUTH(self, arg):
        if not arg:  # the listing old Outlook asks for (RFC 5034 §4 predecessor, RFC 1734 clients)
            if self.plain_ok():
                return b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"
            return b"+OK SASL mechanisms follow\r\n.\r\n"
        words = arg.split()
        if words[0].upper() != b"PLAIN" or len(words) > 2:
            return b"-ERR unsupported authentication mechanism\r\n"
        if not self.plain_ok():
            return _ERR_PLAIN
        if len(words) == 2:
            return self._sasl_response(words[1])
        self.sasl = True
        self.max_line = limits.POP3_SASL_LINE  # RFC 5034 §4
        return b"+ \r\n"

    def _sasl_response(self, line):
        self.sasl = False
        self.max_line = limits.POP3_COMMAND_LINE
        if line == auth.CANCEL:  # RFC 5034 §4: the client cancels
            return b"-ERR authentication cancelled\r\n"
        creds = auth.decode_plain(line)
        if creds is None:
            return self._failed(None)
        return self._login(_name(creds[0].encode()), creds[1], None)

    def pop_STLS(self, arg):
        if self.tls_active:
            return b"-ERR TLS already active\r\n"  # RFC 2595 §4
        if self.svc.tls is None:
            return b"-ERR STLS not available\r\n"
        ctx = self.svc.tls()  # the certificate, loaded on first use (app: the LAN state)
        if ctx is None:
            return b"-ERR [SYS/TEMP] TLS not available now\r\n"  # RFC 3206 §4
        self.tls = ctx  # net writes this reply, drains, upgrades, then calls on_tls()
        return b"+OK begin TLS negotiation\r\n"

    def on_tls(self):
        """TLS is up. RFC 2595 §4: forget what was said before it (net drops pipelined bytes)."""
        self.tls = None
        self.tls_active = True
        self.user = None

    def _login(self, name, password, digest):
        """Check credentials (password or APOP digest) and lock the maildrop."""
        svc = self.svc
        ip = self.peer[0]
        if svc.throttle.check(ip):
            self.pause_ms = svc.throttle.delay_ms  # refused unchecked, but not at full speed
            return _ERR_LOCKOUT
        ok = False
        if name is not None:
            if digest is not None:
                ok = svc.check_apop(name, self.stamp, digest)
            elif password is not None:
                ok = svc.users.check_password(name, password)
        if not ok:
            return self._failed(name)
        svc.throttle.succeeded(ip)
        return self._open(name)

    def _failed(self, name):
        svc = self.svc
        ip = self.peer[0]
        self.pause_ms = svc.throttle.failed(ip)  # RFC 1939 §13: slow down guessing
        log.info("pop3 %s: login failed for %s", ip, name or "?")
        return _ERR_LOGIN

    def _open(self, name):
        svc = self.svc
        if not svc.login_allowed(name):
            return b"-ERR [LOGIN-DELAY] logged in too recently, wait a little\r\n"  # RFC 2449 §6.5
        try:
            drop = svc.maildrops.open(name)
        except Locked:
            return _ERR_IN_USE  # RFC 1939 §8, RFC 2449 §8.1.1
        except ValueError:  # a name the maildrops cannot hold (RFC 3206 §4: not temporary)
            return b"-ERR [SYS/PERM] no maildrop for this user\r\n"
        except OSError as e:
            log.warn("pop3 %s: cannot open maildrop: %s", name, compat.exc_text(e))
            return _ERR_TEMP
        try:
            msgs = drop.messages()
        except OSError as e:
            drop.close()
            log.warn("pop3 %s: cannot list maildrop: %s", name, compat.exc_text(e))
            return _ERR_TEMP
        self.drop = drop
        self.msgs = msgs
        self.deleted = bytearray(len(msgs))
        self.name = name
        self.state = _TRANSACTION
        svc.logged_in(name)
        n, size = self._totals()
        log.info("pop3 %s: %s logged in, %d messages", self.peer[0], name, n)
        return ("+OK %s has %d messages (%d octets)\r\n" % (name, n, size)).encode()

    # ---- TRANSACTION ---------------------------------------------------

    def _totals(self):
        n = size = 0
        d = self.deleted
        msgs = self.msgs
        for i in range(len(msgs)):
            if not d[i]:
                n += 1
                size += msgs.sizes[i]
        return n, size

    def _index(self, word):
        """Message number -> (0-based index, None) or (-1, error reply)."""
        n = _int(word)
        if n < 1 or n > len(self.msgs):
            return -1, _ERR_NO_MSG
        if self.deleted[n - 1]:
            return -1, _ERR_DELETED
        return n - 1, None

    def _one_arg(self, arg, optional):
        words = arg.split()
        if len(words) > 1 or (not words and not optional):
            return None
        return words[0] if words else b""

    def pop_STAT(self, arg):
        return ("+OK %d %d\r\n" % self._totals()).encode()

    def pop_LIST(self, arg):
        return self._listing(arg, self._size_line)

    def pop_UIDL(self, arg):
        return self._listing(arg, self._uid_line)

    def _size_line(self, i):
        return None if self.deleted[i] else ("%d %d\r\n" % (i + 1, self.msgs.sizes[i])).encode()

    def _uid_line(self, i):
        return None if self.deleted[i] else ("%d %s\r\n" % (i + 1, self.msgs.uid(i))).encode()

    def _listing(self, arg, line):
        word = self._one_arg(arg, True)
        if word is None:
            return _ERR_SYNTAX
        if word:
            i, err = self._index(word)
            return err or b"+OK " + line(i)
        # A producer keeps RAM flat however many messages there are.
        self.producer = self.sending = LinesProducer(line, len(self.msgs))
        return b"+OK listing follows\r\n"

    def _message_arg(self, arg):
        """`msg` argument of RETR / DELE -> (index, None) or (-1, -ERR reply)."""
        word = self._one_arg(arg, False)
        if word is None:
            return -1, _ERR_SYNTAX
        return self._index(word)

    def pop_RETR(self, arg):
        i, err = self._message_arg(arg)
        if err:
            return err
        return self._send(i, None, ("+OK %d octets\r\n" % self.msgs.sizes[i]).encode())

    def pop_TOP(self, arg):
        words = arg.split()
        if len(words) != 2:
            return _ERR_SYNTAX
        i, err = self._index(words[0])
        if err:
            return err
        lines = _int(words[1])
        if lines < 0:
            return _ERR_SYNTAX
        return self._send(i, lines, b"+OK top of message follows\r\n")

    def _send(self, i, top, reply):
        try:
            f = self.drop.open_body(i)
        except OSError as e:
            log.warn("pop3 %s: cannot open message %d: %s", self.name, i + 1, compat.exc_text(e))
            return b"-ERR [SYS/TEMP] cannot read that message now\r\n"
        if self.rbuf is None:
            self.rbuf = bytearray(self.svc.read_size)  # one read buffer for the session's life
        self.producer = self.sending = MessageProducer(f, self.rbuf, top, reply, self.msgs.sizes[i])
        return None  # the producer sends `reply` first

    def pop_DELE(self, arg):
        i, err = self._message_arg(arg)
        if err:
            return err
        self.deleted[i] = 1
        return ("+OK message %d deleted\r\n" % (i + 1)).encode()

    def pop_NOOP(self, arg):
        return OK

    def pop_RSET(self, arg):
        d = self.deleted
        for i in range(len(d)):
            d[i] = 0
        return ("+OK maildrop has %d messages (%d octets)\r\n" % self._totals()).encode()

    def pop_QUIT(self, arg):
        self.closing = True
        if self.state == _AUTHORIZATION:
            return b"+OK dialgate POP3 server signing off\r\n"
        # RFC 1939 §6: UPDATE state — remove the marked messages, then release the lock.
        marked = [i for i in range(len(self.deleted)) if self.deleted[i]]
        reply = None
        if marked:
            try:
                self.drop.expunge(marked)
            except OSError as e:
                log.warn("pop3 %s: expunge failed: %s", self.name, compat.exc_text(e))
                reply = b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
        left = len(self.msgs) - len(marked)
        log.info("pop3 %s: %s quit, %d deleted, %d left", self.peer[0], self.name, len(marked), left)
        self.on_close()
        return reply or ("+OK dialgate POP3 server signing off (%d messages left)\r\n" % left).encode()

    # The dispatch table, built once with the class: verb -> (states where allowed, method).
    POP_VERBS = {
        b"CAPA": (ANY, pop_CAPA),
        b"QUIT": (ANY, pop_QUIT),
        b"USER": (_AUTHORIZATION, pop_USER),
        b"PASS": (_AUTHORIZATION, pop_PASS),
        b"APOP": (_AUTHORIZATION, pop_APOP),
        b"AUTH": (_AUTHORIZATION, pop_AUTH),
        b"STLS": (_AUTHORIZATION, pop_STLS),
        b"STAT": (_TRANSACTION, pop_STAT),
        b"LIST": (_TRANSACTION, pop_LIST),
        b"RETR": (_TRANSACTION, pop_RETR),
        b"DELE": (_TRANSACTION, pop_DELE),
        b"NOOP": (_TRANSACTION, pop_NOOP),
        b"RSET": (_TRANSACTION, pop_RSET),
        b"TOP": (_TRANSACTION, pop_TOP),
        b"UIDL": (_TRANSACTION, pop_UIDL),
    }
