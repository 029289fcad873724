"""A gateway stand-in for relay tests: real spool and queue, a fake smarthost
that decides envelopes by recipient (no SmtpClient, no sockets: the client is
tested by test_smtp_client.py, the whole path by tests/host/test_relay_postfix.py),
fake clock. Small enough for the 128K MicroPython heap."""

import fwtest

# Built once, first, while the MicroPython heap is still in one piece (a config
# dict needs a contiguous ~1 KB block); each test overrides keys in place.
CFG = fwtest.host_config({"relay.smarthost": "isp.test:587", "relay.user": "gw", "relay.password": "pw",
                          "board.buffer": 256})
_SAVED = {}  # key -> value before the current test's override
# Where maildrop() reads DSNs: made now, in one piece, and reused (no 1.5 KB
# allocation per read once the heap is fragmented).
_BUFS = [bytearray(2048), bytearray(2048)]


class Stored:
    """A message read back from a maildrop: supports `sub in msg` without copying."""

    def __init__(self, buf, n):
        self.buf = buf
        self.n = n

    def __contains__(self, sub):
        return self.buf.find(sub, 0, self.n) >= 0

import asyncio  # noqa: E402

from gwparts import wire  # noqa: E402

from dialgate import compat  # noqa: E402
from dialgate.delivery import Route  # noqa: E402

NOW = 1800000000  # a wall clock that is set


def _reply(text):
    return (int(text[:3]), text[4:].encode())


class FakeClient:
    """Stands in for SmtpClient: the relay hands it a QueueSource."""

    def __init__(self, src, etrn=None):
        self.src = src
        self.etrn = list(etrn or [])
        self.etrn_results = []
        self.failed = None
        self.round_trips = 0


class FakeSmarthost:
    """Decides each envelope like a server would. Script keys: replies
    {"RCPT:addr" | "RCPT" | "DOT": "550 5.1.1 text"}, size (SIZE limit),
    drop_in_data (index of the message during whose data the line drops)."""

    def __init__(self, host, replies=None, size=0, drop_in_data=-1):
        self.host = host
        self.replies = replies or {}
        self.size = size
        self.drop_in_data = drop_in_data
        self.messages = []  # (sender, accepted rcpts, body)
        self.commands = []
        self.in_data = False

    def talk(self, client):
        src = client.src
        n = 0
        while True:
            env = src.next_envelope()
            if env is None:
                for d in client.etrn:  # after the queue, on the same connection (RFC 1985)
                    self.commands.append("ETRN " + d)
                    client.etrn_results.append(_reply(self.replies.get("ETRN", "250 2.0.0 queuing started")))
                return
            client.round_trips += 1
            self.commands.append("MAIL FROM:<%s>" % env.sender)
            if self.size and env.size > self.size:
                for i in range(len(env.rcpts)):
                    env.results[i] = (552, b"5.3.4 message too big")
                src.envelope_done(env)
                continue
            ok = []
            for i in range(len(env.rcpts)):
                a = env.rcpts[i]
                r = _reply(self.replies.get("RCPT:" + a, self.replies.get("RCPT", "250 2.1.5 ok")))
                if r[0] // 100 == 2:
                    ok.append(i)
                else:
                    env.results[i] = r
            if ok:
                f = env.opener()
                buf = bytearray(256)
                parts = []
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    parts.append(bytes(buf[:k]))
                f.close()
                if n == self.drop_in_data:
                    self.in_data = True
                    client.failed = (0, b"connection lost")
                    return
                dot = _reply(self.replies.get("DOT", "250 2.0.0 queued"))
                for i in ok:
                    env.results[i] = dot
                if dot[0] // 100 == 2:
                    self.messages.append((env.sender, [env.rcpts[i] for i in ok], b"".join(parts)))
            n += 1
            src.envelope_done(env)


class Gw:
    """The parts of app.Gateway the relay uses."""

    def __init__(self, root, over=None):
        v = CFG._v
        for k in _SAVED:
            v[k] = _SAVED[k]
        _SAVED.clear()
        v["spool.path"] = root
        for k in over or {}:
            _SAVED[k] = v[k]
            v[k] = over[k]
        wire(self, CFG, root, net=False)
        self.commands = None  # the console test adds a table
        self.servers = []
        self.script = {}  # FakeSmarthost kwargs per host (None: any host), or an OSError to raise

    def serve(self):
        """Replace the client and its transport by FakeSmarthost (both runtimes)."""
        gw = self

        async def fake_converse(host, port, name, client):
            kw = gw.script.get(host, gw.script.get(None, {}))
            if isinstance(kw, Exception):
                raise kw
            srv = FakeSmarthost(host, **kw)
            gw.servers.append(srv)
            srv.talk(client)

        self.relay.converse = fake_converse
        self.relay.make_client = lambda src, domain, etrn=None: FakeClient(src, etrn)
        return self

    def console(self, line):
        return self.commands.run(self, line)

    def due_now(self, mid):
        """What `queue retry ID` does, without the console module."""
        rec = self.outq.load(mid)
        rec.next_attempt = 0
        self.outq.save(rec)
        self.relay.tried.pop(mid, None)


def new_gw(tag, over=None):
    return Gw(fwtest.tempdir(tag), over).serve()


def queue(gw, rcpts, sender="alice@office.test", body=None, repeat=1):
    """Queue a message (`body` written `repeat` times) for remote `rcpts`."""
    w = gw.spool.writer()
    for _ in range(repeat):
        w.write(body or b"Subject: test\r\nMessage-ID: <%d@office.test>\r\n\r\nhello\r\n.dot\r\n" % len(gw.outq.ids()))
    mid = w.commit(sender, [Route("remote", a, []) for a in rcpts])
    rec = gw.outq.load(mid)
    rec.created = NOW  # as if accepted at our fake "now"
    gw.outq.save(rec)
    return mid


def run(gw, now=NOW):
    saved = compat.wall_time
    compat.wall_time = lambda: now
    try:
        asyncio.run(gw.relay.run_once())
    finally:
        compat.wall_time = saved


def maildrop(gw, user="alice"):
    md = gw.maildrops.open(user)
    try:
        out = []
        for i in range(len(md.messages())):
            buf = _BUFS[i]
            f = md.open_body(i)
            n = 0
            while True:
                k = f.readinto(memoryview(buf)[n:])
                if not k:
                    break
                n += k
            f.close()
            out.append(Stored(buf, n))
        return out
    finally:
        md.close()


def done(gw):
    fwtest.rmtree(gw.spool.root)
