"""On-Demand Mail Relay client (RFC 2645), sans-IO: the office connects out to
the provider, authenticates, says ATRN, and on 250 the roles reverse on the same
connection: our SMTP server session takes it over (net's handover) and the
provider delivers the held mail into it until its QUIT. Works from a dynamic
address behind NAT, which ETRN (RFC 1985) cannot.

    EHLO -> [STARTTLS -> EHLO] -> AUTH CRAM-MD5 -> ATRN [d1,d2] -> 250: reversed
                                                                -> 453: no mail
                                                                -> 451: try next call
                                                                -> 450/502/530: configuration

`net_out.connect` drives it like any client session; `result` says how it ended.
No sockets, no clock, no files here.
"""

from . import auth
from .compat import const
from .proto import Session

# Replies expected (one command in flight at a time: RFC 2645 §5 has no pipelining)
GREET = 0
_EHLO = const(1)
_STARTTLS = const(2)
_AUTH = const(3)  # AUTH CRAM-MD5 / LOGIN: 334 challenge
_AUTH_PASS = const(4)  # AUTH LOGIN: 334 asking for the password
_AUTH_DONE = const(5)
_ATRN = const(6)
_QUIT = const(7)

# RFC 2645 §5.2.1: the provider may take a while to set up the reversed session
# ("the client SHOULD wait at least 10 minutes" for the reply to ATRN).
_ATRN_WAIT_MS = const(600000)

# How an ATRN ended (`result[0]`): what the dial session and the console say.
REVERSED = "reversed"  # 250: the provider delivered (or tried to) over the same connection
NO_MAIL = "no mail"  # 453: nothing held, a success
LATER = "retry"  # 451, a 4xx, a broken connection: the next call asks again
CONFIG = "refused"  # 450, 502, 530, 5xx: only the operator can fix it

_PLAIN_WORDS = {
    450: "the provider refused ATRN for these domains: check isp.odmr.domains",
    451: "the provider cannot process ATRN now: the next call asks again",
    453: "no mail held",
    502: "the provider does not implement ATRN: check isp.odmr.host/port",
    530: "the provider wants authentication first: check isp.odmr.user/password",
}


def plain_words(code):
    """The console's and the log's sentence for an ATRN reply code."""
    return _PLAIN_WORDS.get(code, "")


class OdmrClient(Session):
    """One ODMR connection. `make_server(peer, tls_active)` builds the SMTP server
    session that takes over after `250` (the gateway's own SmtpSession, so the
    mail goes through the same core, spool and limits as LAN mail).

    `tls`: relay.tls's policy ("starttls": required; "opportunistic": when
    offered; "none"); `tls_context()` makes the client context when needed.
    Results: `result` = (REVERSED | NO_MAIL | LATER | CONFIG, code, text);
    `server` = the session that took over, if any.
    """

    max_line = 1000
    timeout_ms = 300000  # RFC 5321 §4.5.3.2 for the commands before ATRN

    def __init__(self, helo, user, password, domains, tls="starttls", tls_context=None, make_server=None,
                 peer=("", 0)):
        Session.__init__(self, peer)
        self.helo = helo
        self.user = user
        self.password = password
        self.domains = list(domains or [])
        self.tls_policy = tls
        self.tls_context = tls_context
        self.make_server = make_server
        self.tls_active = False
        self.expect = GREET
        self.code = 0  # multi-line reply being collected
        self.text = b""
        self.ext = {}
        self.result = None
        self.server = None
        self.quit_sent = False
        self.mech = ""

    # ---- proto.Session ------------------------------------------------------

    def on_line(self, line):
        if len(line) < 3 or not line[:3].isdigit():
            return self._end(LATER, 0, b"malformed reply: " + bytes(line[:60]), False)
        code = int(line[:3])
        cont = len(line) > 3 and line[3] == 45  # "-": RFC 5321 §4.2.1
        if self.expect == _EHLO and code == 250 and self.code:
            self._ext_line(line)  # RFC 5321 §4.1.1.1: one extension a line after the first
        if cont:
            if not self.code:
                self.code = code
                self.text = bytes(line[4:204])
            return None
        if not self.code:
            self.text = bytes(line[4:204])
        self.code = 0
        return self._reply(code, self.text)

    def on_overflow(self):
        self._end(LATER, 0, b"reply line too long", False)
        return b""  # the Framer writes what this returns (None would break the write)

    def on_timeout(self):
        if self.result is None:
            self.result = (LATER, 0, b"no reply in time")
        self.closing = True
        return None

    def on_eof(self):
        if self.result is None:
            self.result = (LATER, 0, b"connection lost")
        self.closing = True

    def early_data(self):
        self._end(LATER, 0, b"data after STARTTLS reply", False)  # RFC 3207 §5
        return False

    def on_tls(self):
        self.tls = None
        self.tls_active = True
        self.ext = {}  # RFC 3207 §4.2: forget what was said before, EHLO again
        return self._send(b"EHLO " + self.helo + b"\r\n", _EHLO)

    # ---- replies --------------------------------------------------------------

    def _ext_line(self, line):
        try:
            words = bytes(line[4:]).decode().split(None, 1)
        except UnicodeError:  # not ASCII, so no ehlo-keyword (RFC 5321 §4.1.1.1): ignored
            return
        if words:
            key = words[0].upper()
            self.ext[key] = (words[1] if len(words) > 1 else "").upper()

    def _reply(self, code, text):
        k = self.expect
        if code == 421 and k != _QUIT:  # RFC 5321 §3.8: the provider is closing
            return self._end(LATER, code, text, False)
        if k == GREET:
            if code != 220:
                return self._end(LATER, code, text)
            return self._send(b"EHLO " + self.helo + b"\r\n", _EHLO)
        if k == _EHLO:
            if code != 250:
                return self._end(CONFIG if code // 100 == 5 else LATER, code, text)
            return self._after_ehlo()
        if k == _STARTTLS:
            if code != 220:
                return self._end(LATER if code // 100 == 4 else CONFIG, code, text)
            make = self.tls_context
            try:
                if make is None:
                    raise ValueError("no TLS context")
                self.tls = make()
            except (OSError, ValueError) as e:
                return self._end(CONFIG, 0, ("TLS: %s" % e).encode(), False)
            return None
        if k == _AUTH:
            if code != 334:
                return self._auth_failed(code, text)
            if self.mech == "CRAM-MD5":  # RFC 2195: user SP hex(HMAC-MD5(secret, challenge))
                return self._send(auth.cram_md5(self.user, self.password, text) + b"\r\n", _AUTH_DONE)
            return self._send(auth.b64encode(self.user.encode()) + b"\r\n", _AUTH_PASS)
        if k == _AUTH_PASS:
            if code != 334:
                return self._auth_failed(code, text)
            return self._send(auth.b64encode(self.password.encode()) + b"\r\n", _AUTH_DONE)
        if k == _AUTH_DONE:
            if code != 235:
                return self._auth_failed(code, text)
            return self._atrn()
        if k == _ATRN:
            return self._atrn_reply(code, text)
        if k == _QUIT:
            self.closing = True
        return None

    def _after_ehlo(self):
        if "ATRN" not in self.ext:  # RFC 2645 §5.1.1
            return self._end(CONFIG, 0, b"the provider does not offer ATRN")
        offered = "STARTTLS" in self.ext
        pol = self.tls_policy
        if not self.tls_active and (pol == "starttls" or (pol == "opportunistic" and offered)):
            if not offered:  # RFC 3207 §4.1: a required STARTTLS that is missing ends it
                return self._end(CONFIG, 0, b"STARTTLS required (relay.tls) but not offered")
            return self._send(b"STARTTLS\r\n", _STARTTLS)
        if not self.user:
            return self._atrn()  # RFC 2645 §5.1.2 wants AUTH; a provider may know us otherwise
        mechs = self.ext.get("AUTH", "").split()
        if "CRAM-MD5" in mechs:  # RFC 2645 §5.1.2: the mechanism every ODMR server has
            self.mech = "CRAM-MD5"
            return self._send(b"AUTH CRAM-MD5\r\n", _AUTH)
        if not self.tls_active:
            return self._end(CONFIG, 0, b"no AUTH CRAM-MD5 offered, and no TLS to send a password over")
        if "PLAIN" in mechs:  # RFC 4616, initial response (RFC 4954 §4)
            self.mech = "PLAIN"
            cred = b"\0" + self.user.encode() + b"\0" + self.password.encode()
            return self._send(b"AUTH PLAIN " + auth.b64encode(cred) + b"\r\n", _AUTH_DONE)
        if "LOGIN" in mechs:
            self.mech = "LOGIN"
            return self._send(b"AUTH LOGIN\r\n", _AUTH)
        return self._end(CONFIG, 0, b"the provider offers no AUTH mechanism we have")

    def _auth_failed(self, code, text):
        return self._end(LATER if code // 100 == 4 else CONFIG, code, b"AUTH " + self.mech.encode() + b": " + text)

    def _atrn(self):
        self.timeout_ms = _ATRN_WAIT_MS
        cmd = b"ATRN"
        if self.domains:
            cmd += b" " + ",".join(self.domains).encode()  # RFC 2645 §5.2.1: comma, no spaces
        return self._send(cmd + b"\r\n", _ATRN)

    def _atrn_reply(self, code, text):
        self.timeout_ms = Session.timeout_ms
        if code == 250:
            # RFC 2645 §4: roles reverse; we are now the SMTP server and greet first.
            make = self.make_server
            if make is None:  # nobody to take the mail: do not reverse half-way
                return self._end(LATER, 0, b"no SMTP server session to reverse into", False)
            self.result = (REVERSED, code, text)
            s = self.server = make(self.peer, self.tls_active)
            # The provider's address may fall in `lan` (a provider on the LAN, a
            # tunnel): it still gets no relaying and no AUTH, only local domains.
            s.lan = False
            s.reversed = True
            self.handover = ("smtp", self.server)
            return None
        if code == 453:
            return self._end(NO_MAIL, code, text)
        if code // 100 == 4 and code != 450:
            return self._end(LATER, code, text)
        return self._end(CONFIG, code, text)  # 450 access denied, 502, 530, other 5xx

    def outcome(self):
        """`result`, once the connection is over. A reversed session counts only if
        it ended with the provider's QUIT (RFC 2645 §4, RFC 5321 §4.1.1.10): one that
        stops without it (a dropped line, a provider that gave up) may have left
        mail behind, so the call fails and the next one asks again."""
        r = self.result or (LATER, 0, b"no reply")
        s = self.server
        if r[0] == REVERSED and s is not None and not s.quit_seen:
            return (LATER, r[1], b"the reversed session ended without the provider's QUIT")
        return r

    def _send(self, data, kind):
        self.expect = kind
        return data

    def _end(self, how, code, text, polite=True):
        """The ask is over: say QUIT (if the line is still sane) and close."""
        if self.result is None:
            self.result = (how, code, text)
        if self.quit_sent or not polite:
            self.closing = True
            return None
        self.quit_sent = True
        self.expect = _QUIT
        return b"QUIT\r\n"
