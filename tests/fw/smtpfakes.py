"""Small stand-ins for the spool, router and user store, for SMTP session tests."""

import fwtest
from dialgate.delivery import Route
from dialgate.smtp_server import SmtpService
from dialgate.spool import SpoolFull


class FakeWriter:
    def __init__(self, spool):
        self.spool = spool
        self.data = bytearray()
        self.size = 0
        self.closed = False

    def write(self, data):
        sp = self.spool
        if sp.full_at is not None and self.size + len(data) > sp.full_at:
            raise SpoolFull(28, "no space left")
        if sp.keep:
            self.data.extend(data)
        self.size += len(data)

    def commit(self, sender, routes):
        sp = self.spool
        if sp.commit_error is not None:
            raise sp.commit_error
        self.closed = True
        sp.open -= 1
        sp.seq += 1
        msg_id = "M%d" % sp.seq
        sp.committed.append(
            (msg_id, sender, [(r.kind, r.address, r.users) for r in routes], bytes(self.data), self.size)
        )
        return msg_id

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
        self.sizes_asked.append(size)
        return self.room

    def writer(self):
        if not self.room:
            raise SpoolFull(28, "no space left")
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
    """host_config(over), built once per distinct `over` (a Config costs RAM on a board)."""
    key = repr(sorted(over.items())) if over else ""
    cfg = _configs.get(key)
    if cfg is None:
        cfg = _configs[key] = fwtest.host_config(over)
    return cfg


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
        self.svc = service(**self.kw)
        self.s = self.svc.session(self.peer)
        return self.s

    def check(self, data, expect, pieces=None):
        got = fwtest.every_split(self, data, None, pieces)
        if got != expect:
            raise AssertionError("\n%r\n!=\n%r" % (got, expect))
        return self.svc.spool


def message(body, peer=LAN, over=None, spool=None, pieces=None):
    """EHLO, MAIL, RCPT alice, DATA body (which must end the data); returns (output after 354, spool)."""
    r = Run(peer, over=over, spool=spool)
    data = b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\n" + body
    out = fwtest.every_split(r, data, None, pieces)
    head = G + ehlo_reply(peer, peer == LAN) + SENDER_OK + RCPT_OK + GO
    if over and "smtp.max_size" in over:
        head = head.replace(b"10485760", str(over["smtp.max_size"]).encode())
    assert out.startswith(head), out
    return out[len(head) :], r.svc.spool
