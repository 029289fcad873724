"""What all POP3 sessions share: config, maildrops, users, the failed-login throttle,
per-user login times (RFC 2449 LOGIN-DELAY) and APOP greeting timestamps (RFC 1939 §7)."""

import binascii
import hashlib

from . import compat, limits
from .auth import AuthThrottle
from .pop3_server import Pop3Session


class Pop3Service:
    """Factory and shared state for POP3 sessions: `service.session(peer)` for net.

    `cfg`: config.Config; `maildrops`: mailbox.Maildrops; `users`: users.UserStore;
    `throttle`: auth.AuthThrottle (shared with SMTP AUTH when the gateway passes one);
    `tls`: a function giving the server ssl context STLS upgrades with (RFC 2595),
    made on the first STLS, or None: no STLS.
    """

    def __init__(self, cfg, maildrops, users, throttle=None, tls=None, version="0"):
        self.cfg = cfg
        self.maildrops = maildrops
        self.users = users
        self.throttle = throttle or AuthThrottle()
        self.tls = tls
        self.version = version
        self.hostname = cfg["hostname"]
        self.plaintext = cfg["pop3.plaintext"]
        self.idle_s = max(cfg["pop3.idle_timeout"], limits.POP3_IDLE_MIN_S)  # RFC 1939 §3
        self.expire_days = cfg["pop3.expire_days"]
        self.login_delay_s = cfg["pop3.login_delay"]
        self.read_size = compat.io_buffer(cfg["board.buffer"])
        self.boot = int.from_bytes(compat.urandom(3), "big")
        self.seq = 0
        self.last_login = {}  # user -> ticks_ms of the last login (LOGIN-DELAY only)
        # RFC 2449 §6: the CAPA lines that do not depend on the session.
        self.capa_common = "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE %s\r\nLOGIN-DELAY %d\r\n" \
            "IMPLEMENTATION dialgate-%s\r\n" % ("NEVER" if self.expire_days < 0 else str(self.expire_days),
                                                 self.login_delay_s, version)

    def session(self, peer):
        return Pop3Session(peer, self)

    def is_lan(self, ip):
        return self.cfg.is_lan(ip)

    def apop_stamp(self):
        """RFC 1939 §7: a msg-id, different for every greeting: <pid.clock@hostname>."""
        self.seq += 1
        return "<%d.%d%04d@%s>" % (self.boot, compat.wall_time(), self.seq % 10000, self.hostname)

    def check_apop(self, name, stamp, digest):
        """digest: the client's 32 lower-case hex octets (bytes)."""
        secret = self.users.apop_secret(name)
        if secret is None or not stamp:
            return False
        want = binascii.hexlify(hashlib.md5((stamp + secret).encode()).digest())
        diff = 0
        for i in range(32):  # compare all octets whatever the first mismatch
            diff |= want[i] ^ digest[i]
        return diff == 0

    def login_allowed(self, name):
        if self.login_delay_s <= 0:
            return True
        t = self.last_login.get(name)
        return t is None or compat.ticks_diff(compat.ticks_ms(), t) >= self.login_delay_s * 1000

    def logged_in(self, name):
        if self.login_delay_s > 0:
            if len(self.last_login) > 256:
                self.last_login = {}
            self.last_login[name] = compat.ticks_ms()
