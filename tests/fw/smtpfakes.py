"""Small stand-ins for the spool, router and user store, for SMTP session tests."""

import fwtest
from dialgate import compat
from dialgate.smtp_server import SmtpService


class Route:
    """Shape of delivery.Route (not imported: heap at 128K)."""

    def __init__(self, kind, address, users):
        self.kind = kind
        self.address = address
        self.users = users


# One buffer for the message being written, reused by every test, allocated at
# import while the 128K heap is still in one piece (MicroPython does not compact).
_store = [bytearray(2048)]


def _buffer():
    return _store[0]


class FakeWriter:
    def __init__(self, spool):
        self.spool = spool
        self.data = _buffer() if spool.keep else None
        self.size = 0
        self.closed = False

    def write(self, data):
        sp = self.spool
        n = len(data)
        if sp.full_at is not None and self.size + n > sp.full_at:
            raise OSError(28, "no space left")  # like spool.SpoolFull
        if self.data is not None:
            if self.size + n > len(self.data):
                raise OSError(28, "FakeWriter keeps 2048 octets at most")
            self.data[self.size : self.size + n] = data
        self.size += n

    def commit(self, sender, routes):
        sp = self.spool
        if sp.commit_error is not None:
            raise sp.commit_error
        self.closed = True
        sp.open -= 1
        sp.seq += 1
        msg_id = "M%d" % sp.seq
        if len(sp.committed) < 8:  # the first few are enough to check; bounded RAM
            sp.committed.append(
                (
                    msg_id,
                    sender,
                    [(r.kind, r.address, r.users) for r in routes],
                    self._kept(),
                    self.size,
                )
            )
        return msg_id

    def start_commit(self, sender, routes):
        """The spool commit job's face to a session is the writer itself: run() commits
        (error: what it raised; the writer is then aborted, as a real commit
        cleans up after itself)."""
        self.job = (sender, routes)
        self.id = self.error = None
        return self

    def run(self, err=None):  # (also step(): net's group committer on CPython; no syncs asked for)
        try:
            self.id = self.commit(*self.job)
        except Exception as e:
            self.error = e
            self.abort()

    step = run

    def _kept(self):
        """The message, or for one over 512 octets its first 256 and last 64 (RAM at 128K)."""
        if self.data is None:
            return b""
        mv = memoryview(self.data)
        n = self.size
        if n <= 512:
            return bytes(mv[:n])
        return bytes(mv[:256]) + b"<...>" + bytes(mv[n - 64 : n])

    def abort(self):
        if not self.closed:
            self.closed = True
            self.spool.open -= 1
            self.spool.aborted += 1


class FakeSpool:
    """`open` counts writers neither committed nor aborted: 0 = nothing half-written."""

    def __init__(self, keep=True):
        self.keep = keep
        self.room = True
        self.full_at = None  # SpoolFull once a message passes this many octets
        self.commit_error = None
        self.committed = []
        self.aborted = 0
        self.open = 0
        self.seq = 0
        self.sizes_asked = []

    def has_room(self, size=0):
        if len(self.sizes_asked) < 8:
            self.sizes_asked.append(size)
        return self.room

    def writer(self):
        if not self.room:
            raise OSError(28, "no space left")  # like spool.SpoolFull
        self.open += 1
        return FakeWriter(self)


class FakeRouter:
    """office.test: alice, bob, postmaster; everything else remote."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.users = ("alice", "bob", "postmaster")

    def route(self, address):
        at = address.rfind("@")
        local, domain = address[:at], address[at + 1 :]
        if not self.cfg.is_local_domain(domain):
            return Route("remote", address, [])
        if local.lower() in self.users:
            return Route("local", address, [local.lower()])
        return None


class FakeUsers:
    def __init__(self):
        self.passwords = {"alice": "wonderland", "bob": "builder"}

    def check_password(self, name, password):
        return self.passwords.get(name) == password


_configs = {}


def config(over=None):
    """host_config(over): the default one and the last other one are kept (RAM at 128K)."""
    key = repr(sorted(over.items())) if over else ""
    cfg = _configs.get(key)
    if cfg is None:
        for k in list(_configs):
            if k:
                del _configs[k]
        cfg = _configs[key] = fwtest.host_config(over)
    return cfg


config()  # the default one, built at import for the same reason as _store


def service(over=None, tls=None, users=True, spool=None):
    cfg = config(over)
    sp = spool or FakeSpool()
    return SmtpService(cfg, sp, FakeRouter(cfg), FakeUsers() if users else None, tls)


LAN = ("127.0.0.1", 40000)
OUTSIDE = ("127.0.0.2", 40001)


G = b"220 gw.office.test ESMTP dialgate\r\n"


OK = b"250 2.0.0 Ok\r\n"


SENDER_OK = b"250 2.1.0 Sender ok\r\n"


RCPT_OK = b"250 2.1.5 Recipient ok\r\n"


GO = b"354 End data with <CR><LF>.<CR><LF>\r\n"


BYE = b"221 2.0.0 gw.office.test closing connection\r\n"


RELAY = b"554 5.7.1 Relay access denied\r\n"


def ehlo_reply(peer, auth_line=True, starttls=False, name="x"):
    lines = [
        "250-gw.office.test Hello %s [%s]" % (name, peer[0]),
        "250-PIPELINING",
        "250-SIZE 10485760",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
    ]
    if auth_line:
        lines.append("250-AUTH PLAIN LOGIN")
    if starttls:
        lines.append("250-STARTTLS")
    lines.append("250 HELP\r\n")
    return "\r\n".join(lines).encode()


class Run:
    """Fresh service + session per split; keeps the last of each for checks."""

    def __init__(self, peer=LAN, **kw):
        self.peer = peer
        self.kw = kw
        self.svc = None
        self.s = None

    def __call__(self):
        self.svc = self.s = None
        if compat.mem_free() >= 0:
            compat.gc_collect()  # MicroPython: keep the 128K heap in few pieces between splits
        self.svc = service(**self.kw)
        self.s = self.svc.session(self.peer)
        return self.s

    def check(self, data, expect, pieces=None):
        got = fwtest.every_split(self, data, None, pieces)
        if got != expect:
            raise AssertionError("\n%r\n!=\n%r" % (got, expect))
        return self.svc.spool


PREAMBLE = b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\n"


def message(body, peer=LAN, over=None, spool=None, pieces=None):
    """EHLO, MAIL, RCPT alice, DATA, then `body` (which must end the data) split
    at every byte (or at `pieces`); returns (output after 354, spool) and checks
    every split gave the same. The preamble goes in one read: other tests split it."""
    r = Run(peer, over=over, spool=spool)
    first = None
    for piece in pieces or range(1, len(body) + 2):
        s = r()
        head = fwtest.drive(s, PREAMBLE, 64)
        if not head.endswith(GO):
            raise AssertionError(head)
        out = fwtest.drive(s, body, piece)[len(G) :]  # drive() repeats the greeting
        if first is None:
            first = out
        elif out != first:
            raise AssertionError("piece %d differs:\n%r\n!=\n%r" % (piece, out, first))
    return first, r.svc.spool
