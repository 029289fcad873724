"""The whole gateway's spool traffic on littlefs, with the power cut at a random
block write (docs/reliability.md, item 1, the board's half).

MicroPython only (CPython has no littlefs; tests/host/test_reliability_crash.py
SIGKILLs the whole gateway process there). One volume (os.VfsLfs2 over
lfsdev.RamFlash, 48 KB) lives through many cuts: LAN SMTP sessions (local,
remote, fan-out to both, a recipient the ISP refuses), the ISP's SMTP sessions
delivering held mail, POP3 sessions with DELE and QUIT and queue runs against a
fake smarthost (relayfake) are interleaved step by step, each step one command
or one chunk of DATA, until the device stops writing at a random block (a
third of cuts torn: half the block written). Then the blocks as they were are
mounted again, the spool recovered, and every message accounted for: each one
that got 250 before the cut has a copy in a maildrop, the queue, the ISP (still
held, or delivered), a POP3 client, or a DSN to its sender; nothing a POP3
client did not QUIT after deleting is gone; tmp/ and new/ are empty. Then the
load goes on, on the same volume, to the next cut. At the end the office
drains (every queue record due, queue runs, the ISP's held mail, POP3 fetches
all): no losses, and duplicates only from a reply lost after the commit.

Cuts: 25 here (`make test`), 150 with DIALGATE_SOAK=1 (`make soak`), in
epochs of 25 each ending with a drain and the final count (the ledger of one
epoch is what RAM holds).

Heap: spool, queue, relay run, DSNs, SMTP server and POP3 server together, the
48 KB RAM flash and the ledger of every message: a whole office, not a
board's working set, so UPY_HEAP is far above the 128K board budget. 2048K
because MicroPython's heap does not compact: over 150 cuts the long-lived
ledger entries leave it in small pieces (at 1024K the soak ran out with 650 KB
free and no 4.7 KB block).
"""

import os
import random

import fwtest
from dialgate import compat, log
from dialgate.delivery import Router
from dialgate.pop3_service import Pop3Service
from dialgate.proto import Framer
from dialgate.smtp_server import SmtpService

UPY_HEAP = "2048K"
MNT = "/lfs"
ROOT = MNT + "/spool"
USERS = ("alice", "bob", "carol")
REJECT = "reject@example.net"
LAN = ("127.0.0.1", 40000)
ISP = ("192.0.2.25", 25)
BLOCKS = 384  # of 128 octets: a 48 KB volume


def _need_lfs():
    if not hasattr(os, "VfsLfs2"):
        fwtest.skip("littlefs (os.VfsLfs2) exists only on MicroPython; CPython: tests/host/test_reliability_crash.py")


def _soak():
    return os.getenv("DIALGATE_SOAK") not in (None, "", "0")


class Users:
    """users.UserStore's shape for the router and the POP3 server."""

    apop = False

    def expand(self, name):
        name = name.lower()
        return [name] if name in USERS else []

    def exists(self, name):
        return name in USERS

    def check_password(self, name, password):
        return name in USERS and password == name + "-pw"

    def apop_secret(self, name):
        return None


class Conn:
    """A sans-IO session fed whole lines through the real Framer."""

    def __init__(self, session):
        self.s = session
        self.fr = Framer(session, 512)
        self.obuf = bytearray(512)
        self.greeting = session.greeting()

    def send(self, data):
        out = []
        fr = self.fr
        s = self.s
        i = 0
        while i < len(data) and not s.closing:
            sp = fr.space()
            k = min(len(sp), len(data) - i)
            sp[:k] = data[i : i + k]
            fr.received(k)
            i += k
            while fr.process(out.append):
                p = s.producer
                if p is not None:
                    while True:
                        m = p.fill(self.obuf)
                        if not m:
                            break
                        out.append(bytes(self.obuf[:m]))
                    s.producer = None
                    r = s.take_reply()
                    if r:
                        out.append(r)
                s.pause_ms = 0
        return b"".join(out)

    def close(self):
        self.s.on_close()


def message(tag, rcpts, n):
    head = "From: <x@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@dialgate.test>\r\n\r\n" % (
        ", ".join(rcpts), tag, tag)
    return head.encode() + (("%s line of text\r\n" % tag).encode()) * n + b".dot line\r\n"


def what(data):
    """("msg", [tag]) or ("dsn", [tags it reports]) of a stored message."""
    head_end = data.find(b"\r\n\r\n")
    head = data[:head_end] if head_end >= 0 else data
    tags = []
    i = 0
    while True:
        j = data.find(b"@dialgate.test>", i)
        if j < 0:
            break
        k = data.rfind(b"<", 0, j)
        t = data[k + 1 : j].decode()
        if t not in tags:
            tags.append(t)
        i = j + 1
    if head.find(b"Undelivered Mail Returned") >= 0:
        return "dsn", tags
    return "msg", tags[:1]


def read_all(f):
    parts = []
    buf = bytearray(512)
    while True:
        n = f.readinto(buf)
        if not n:
            break
        parts.append(bytes(buf[:n]))
    f.close()
    return b"".join(parts)


class Ledger:
    def __init__(self):
        self.dests = {}  # tag -> ["user:bob", "ext:far@example.net", "dsn:alice"]
        self.acked = {}  # tag -> True once 250 came back before the cut
        self.held = []  # [[tag, rcpts, data, on its way]] the ISP still holds (until its 250)
        self.internet = []  # [(tag, rcpts)] the smarthost accepted (the ISP's mailbox)
        self.seen = {}  # user -> {uid: 1} listed by a POP3 client
        self.took = {}  # user -> {uid: (kind, tags)} a POP3 client retrieved
        self.may_be_gone = {}  # user -> {uid: 1} DELE then QUIT sent
        self.n = 0
        self.cuts = 0
        self.torn = 0
        self.steps = 0
        self.quits = 0
        self.runs = 0
        for u in USERS:
            self.seen[u] = {}
            self.took[u] = {}
            self.may_be_gone[u] = {}

    def tag(self, kind):
        self.n += 1
        return "T%s%d" % (kind, self.n)

    def add(self, tag, rcpts):
        out = []
        for r in rcpts:
            local, dom = r.split("@")
            out.append("user:" + local if dom == "office.test" else "dsn:alice" if r == REJECT else "ext:" + r)
        self.dests[tag] = out
        self.acked[tag] = False


class Office:
    """The gateway's parts over the spool on littlefs (relayfake's Gw wires the
    spool, queue, router and relay; SMTP and POP3 services sit on the same spool)."""

    def __init__(self, dev, led):
        from relayfake import Gw

        self.dev = dev
        self.led = led
        self.gw = Gw(ROOT).serve()  # recover() runs in wire()
        self.gw.script[None] = {"replies": {"RCPT:" + REJECT: "550 5.1.1 no such user"}}
        self.gw.users = Users()
        self.gw.router = Router(self.gw.cfg, self.gw.users)
        cfg = self.gw.cfg
        self.smtp = SmtpService(cfg, self.gw.spool, self.gw.router, self.gw.users, None)
        self.pop3 = Pop3Service(cfg, self.gw.spool.maildrops, self.gw.users)

    def cut(self):
        return self.dev.cut

    # ---- the actors: generators, one step per next() ----

    def lan(self, rng):
        led = self.led
        k = rng.randint(0, 9)
        if k < 4:
            kind, rcpts = "o", ["far@example.net"]
        elif k < 6:
            kind, rcpts = "l", ["bob@office.test"]
        elif k < 8:
            kind, rcpts = "m", ["bob@office.test", "carol@office.test", "far2@example.net"]
        else:
            kind, rcpts = "r", [REJECT]
        tag = led.tag(kind)
        led.add(tag, rcpts)
        yield from self._submit(LAN, "alice@office.test", tag, rcpts, message(tag, rcpts, rng.randint(2, 40)), None)

    def inbound(self, rng):
        """The ISP's flush: its oldest held message not already on its way."""
        led = self.led
        for h in led.held:
            if not h[3]:
                break
        else:
            return
        h[3] = True
        try:
            yield from self._submit(ISP, "far@example.net", h[0], h[1], h[2], h)
        finally:
            h[3] = False

    def _submit(self, peer, sender, tag, rcpts, data, held):
        c = Conn(self.smtp.session(peer))
        try:
            c.send(b"EHLO peer.example\r\n")
            yield
            c.send(b"MAIL FROM:<%s>\r\n" % sender.encode())
            for r in rcpts:
                c.send(b"RCPT TO:<%s>\r\n" % r.encode())
            if not c.send(b"DATA\r\n").startswith(b"354"):
                return
            yield
            data = data.replace(b"\r\n.", b"\r\n..")  # RFC 5321 §4.5.2
            half = len(data) // 2
            c.send(data[:half])
            yield
            c.send(data[half:])
            reply = c.send(b".\r\n")
            if reply.startswith(b"250") and not self.cut():
                self.led.acked[tag] = True
                if held is not None:
                    self.led.held.remove(held)  # the ISP got its 250: it forgets the message
            yield
            c.send(b"QUIT\r\n")
        finally:
            c.close()

    def pop(self, rng, u=None):
        led = self.led
        u = u or USERS[rng.randint(0, 2)]
        c = Conn(self.pop3.session(LAN))
        try:
            c.send(b"USER %s\r\n" % u.encode())
            if not c.send(b"PASS %s-pw\r\n" % u.encode()).startswith(b"+OK"):
                return
            yield
            listing = c.send(b"UIDL\r\n")
            if not listing.startswith(b"+OK"):
                return
            deleted = []
            for line in listing.split(b"\r\n")[1:]:
                if line == b"." or not line:
                    break
                n, uid = line.decode().split()
                led.seen[u][uid] = 1
                if uid not in led.took[u]:
                    r = c.send(b"RETR %s\r\n" % n.encode())
                    if not r.startswith(b"+OK"):
                        return
                    body = r[r.find(b"\r\n") + 2 : -5].replace(b"\r\n..", b"\r\n.")
                    led.took[u][uid] = what(body)
                    yield
                if rng.randint(0, 2):
                    if c.send(b"DELE %s\r\n" % n.encode()).startswith(b"+OK"):
                        deleted.append(uid)
            for uid in deleted:
                led.may_be_gone[u][uid] = 1  # QUIT goes now
            if c.send(b"QUIT\r\n").startswith(b"+OK") and not self.cut():
                led.quits += 1
        finally:
            c.close()

    def relay(self, rng):
        import asyncio

        before = len(self.gw.servers)
        try:
            asyncio.run(self.gw.relay.run_once())
        finally:
            for srv in self.gw.servers[before:]:
                for _sender, rcpts, body in srv.messages:
                    kind, tags = what(body)
                    for t in tags:
                        self.led.internet.append((t, rcpts))
            self.gw.servers = []
            self.led.runs += 1
        yield

    def hold_some(self, rng):
        """The Internet writes to the office: the ISP holds it (never cut: not our flash)."""
        led = self.led
        tag = led.tag("i")
        rcpts = [["alice@office.test"], ["bob@office.test"], ["alice@office.test", "carol@office.test"]][
            rng.randint(0, 2)]
        led.add(tag, rcpts)
        led.acked[tag] = True  # the ISP said 250 to the Internet
        led.held.append([tag, rcpts, message(tag, rcpts, rng.randint(2, 30)), False])  # [.., on its way]
        yield


def run_until_cut(office, rng, max_steps):
    """Interleave up to 4 actors until the device has lost power (or max_steps)."""
    makers = (office.lan, office.lan, office.inbound, office.pop, office.relay, office.hold_some)
    live = []
    for _ in range(max_steps):
        if office.cut():
            break
        if len(live) < 4:
            live.append(makers[rng.randint(0, len(makers) - 1)](rng))
        i = rng.randint(0, len(live) - 1)
        office.led.steps += 1
        try:
            next(live[i])
        except StopIteration:
            live.pop(i)
        except OSError:  # the cut, seen by whoever wrote next (451s after it are never seen)
            live.pop(i)
            if not office.cut():
                raise
    for g in live:
        g.close()


def account(office, final=False):
    """Copies of each (tag, destination) after recovery. Returns (losses, dups)."""
    led = office.led
    sp = office.gw.spool
    copies = {}

    def add(tag, dest):
        copies[(tag, dest)] = copies.get((tag, dest), 0) + 1

    for tag, rcpts, _data, _busy in led.held:
        for r in rcpts:
            add(tag, "user:" + r.split("@")[0])
    for tag, rcpts in led.internet:
        for r in rcpts:
            add(tag, "ext:" + r)
    for mid in sp.queue.ids():
        rec = sp.queue.load(mid)
        kind, tags = what(read_all(sp.queue.open_body(mid)))
        for r in rec.pending():
            for t in tags:
                add(t, "dsn:alice" if r.address == REJECT else "ext:" + r.address)
    for u in USERS:
        md = sp.maildrops.open(u)
        try:
            msgs = md.messages()
            have = {}
            for i in range(len(msgs)):
                uid = msgs[i][0]
                assert uid not in have, "UID %s twice in %s" % (uid, u)
                have[uid] = what(read_all(md.open_body(i)))
        finally:
            md.close()
        for uid in led.seen[u]:
            assert uid in have or uid in led.may_be_gone[u], "%s: %s gone without DELE+QUIT" % (u, uid)
        took = led.took[u]
        for uid in took:
            if uid not in have:
                have[uid] = took[uid]
        for uid in have:
            kind, tags = have[uid]
            for t in tags:
                add(t, ("dsn:" if kind == "dsn" else "user:") + u)
    losses = []
    dups = {"out": 0, "in": 0, "dsn": 0, "lan": 0}
    for tag in led.dests:
        for dest in led.dests[tag]:
            n = copies.get((tag, dest), 0)
            if n == 0 and led.acked[tag]:
                losses.append("%s -> %s" % (tag, dest))
            if n > 1:
                k = "dsn" if dest.startswith("dsn:") else "out" if dest.startswith("ext:") else \
                    "in" if tag.startswith("Ti") else "lan"
                dups[k] += n - 1
    assert os.listdir(sp.path("tmp")) == [] and os.listdir(sp.path("new")) == [], "leftovers after recovery"
    if final:
        assert sp.queue.ids() == [] and led.held == [], "did not drain"
    return losses, dups


def _mount(dev, mkfs=False):
    if mkfs:
        os.VfsLfs2.mkfs(dev)
    os.mount(os.VfsLfs2(dev), MNT)


def _umount():
    try:
        os.umount(MNT)
    except OSError:
        pass


def _epoch(dev, rng, cuts, totals):
    """`cuts` power cuts under load on the mounted `dev`, then a full drain and
    the final count. The ledger lives for one epoch (bounded RAM). Returns the device."""
    from lfsdev import RamFlash

    led = Ledger()
    office = Office(dev, led)
    while led.cuts < cuts:
        dev.arm(rng.randint(1, 600), rng.randint(0, 2) == 0)
        run_until_cut(office, rng, 400)
        if not dev.cut:
            dev.left = -1  # the load ended first: no cut this round
            continue
        led.cuts += 1
        led.torn += 1 if dev.torn else 0
        office = None
        _umount()
        dev = RamFlash(blocks=BLOCKS, data=dev.image())  # the blocks as they were at the cut
        compat.gc_collect()
        _mount(dev)
        office = Office(dev, led)  # recovery
        losses, dups = account(office)
        assert not losses, "lost after cut %d: %s" % (led.cuts, losses[:5])
        assert dups["lan"] == 0, "a LAN message twice"
    # drain: everything due, queue runs, the ISP's held mail, POP3 takes all
    for _ in range(8):  # (a full volume refuses held mail until POP3 and the queue free it)
        for mid in office.gw.outq.ids():
            office.gw.due_now(mid)
        for _step in office.relay(rng):
            pass
        for _ in range(len(led.held)):
            for _step in office.inbound(rng):
                pass
        for u in USERS:
            for _step in office.pop(_All(), u):
                pass
    losses, dups = account(office, True)
    assert not losses and dups["lan"] == 0, losses[:5]
    totals["cuts"] += led.cuts
    totals["torn"] += led.torn
    totals["steps"] += led.steps
    totals["messages"] += len(led.dests)
    totals["acked"] += len([t for t in led.acked if led.acked[t]])
    totals["runs"] += led.runs
    totals["quits"] += led.quits
    for k in dups:
        totals[k] += dups[k]
    return dev


def test_power_cuts_under_the_whole_gateways_load():
    _need_lfs()
    from lfsdev import RamFlash

    epochs = 6 if _soak() else 1
    random.seed(2024)
    compat.gc_collect()
    dev = RamFlash(blocks=BLOCKS)
    _mount(dev, True)
    totals = {"cuts": 0, "torn": 0, "steps": 0, "messages": 0, "acked": 0, "runs": 0, "quits": 0,
              "out": 0, "in": 0, "dsn": 0, "lan": 0}
    quiet = log.LOG.console
    log.LOG.console = False  # every cut logs the EIO it caused
    try:
        for _ in range(epochs):
            dev = _epoch(dev, random, 25, totals)
            compat.gc_collect()
    finally:
        log.LOG.console = quiet
        _umount()
    print("# littlefs power cuts under the whole load: %(cuts)d cuts (%(torn)d torn), %(steps)d steps, "
          "%(messages)d messages (%(acked)d got 250), %(runs)d queue runs, %(quits)d POP3 QUIT +OK; losses 0; "
          "duplicates (reply lost after the commit) out %(out)d in %(in)d dsn %(dsn)d lan %(lan)d" % totals)
    assert totals["acked"] >= totals["cuts"]


class _All:
    """A "random" source that picks the last choice: the POP3 client deletes everything."""

    def randint(self, a, b):
        return b
