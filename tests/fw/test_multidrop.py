"""POP3 multidrop collection: the envelope header scan (split at every byte),
sorting into the office's maildrops through the real Router and Spool, and the
UIDL journal that keeps a dropped call from fetching a message twice: known
UIDLs are deleted, not fetched; entries the ISP no longer lists go; a message
over isp.pop3.max_size stays at the ISP and the postmaster hears of it once;
leave_on_server with keep_days. The client is the real pop3_client, fed the
ISP's replies through the real Framer.

Runs at 160K under MicroPython: it holds the client, the collection, the
spool, maildrops and Router at once, as a call that collects does, and builds
a checked config per test (config_load and the schema: ~20 KB while it runs)
on top of the test's transcripts."""

import fwtest

BUF = bytearray(1024)  # made while the heap is in one piece
SCRATCH = bytearray(1024)

from dialgate import compat  # noqa: E402
from dialgate import pop3_client as P  # noqa: E402
from dialgate.delivery import Router  # noqa: E402
from dialgate.header_scan import HeaderScan, addresses  # noqa: E402
from dialgate.multidrop import Collection  # noqa: E402
from dialgate.pop3_journal import UidlJournal  # noqa: E402
from dialgate.spool import Spool  # noqa: E402

UPY_HEAP = "160K"

USERS = ("alice", "bob", "carol", "postmaster", "office")


class Users:
    """users.UserStore's expand() over a fixed set of names (no PBKDF2: heap and time)."""

    def expand(self, name):
        if name == "sales":
            return ["alice", "bob"]
        return [name] if name in USERS else []


def config(over=None):
    o = {"isp.pop3.host": "pop.isp.test", "isp.pop3.user": "office", "isp.pop3.default_user": "office"}
    for k in over or {}:
        o[k] = over[k]
    return fwtest.host_config(o)


class Office:
    """A spool and journal on disk, and one call's Collection + client at a time."""

    def __init__(self, over=None):
        self.root = fwtest.tempdir("mdrop")
        self.cfg = config(over)
        self.spool = Spool(self.root, 0)
        self.spool.recover()
        self.router = Router(self.cfg, Users())

    def journal(self):
        sp = self.spool
        return UidlJournal(sp.path("pop3.uidl"), sp.path("pop3.uidl.tmp"), sp.flash, 2000)

    def call(self, server, piece=1000, eof=False):
        col = Collection(self.cfg, self.spool, self.router, self.journal(), "office@pop.isp.test:110", "pop.isp.test")
        c = P.Pop3Client("office", "secret", col, "none", None, True, ("127.0.0.1", 110), SCRATCH)
        out, _ = fwtest.drive_net(c, server, piece, 1024, BUF)
        if eof:
            c.on_eof()
        c.on_close()
        return out, c, col

    def box(self, user):
        d = self.spool.maildrops.open(user)
        try:
            ms = d.messages()
            out = []
            for i in range(len(ms)):
                f = d.open_body(i)
                try:
                    out.append(f.read())
                finally:
                    f.close()
            return out
        finally:
            d.close()

    def lines(self):
        try:
            with open(self.spool.path("pop3.uidl"), "rb") as f:
                return f.read().split(b"\n")[:-1]
        except OSError:
            return []

    def close(self):
        fwtest.rmtree(self.root)


def msg(head, n):
    return head + b"Subject: m%d\r\n\r\nbody %d\r\n..dot\r\n" % (n, n)


def listing(msgs, first=1):
    """STAT, UIDL and LIST replies for [(uid, body)] numbered from `first`."""
    u = b"".join([b"%d %s\r\n" % (first + i, m[0]) for i, m in enumerate(msgs)])
    s = b"".join([b"%d %d\r\n" % (first + i, len(m[1])) for i, m in enumerate(msgs)])
    return b"+OK %d 0\r\n+OK\r\n%s.\r\n+OK\r\n%s.\r\n" % (len(msgs), u, s)


LOGIN = b"+OK ready\r\n+OK\r\nUSER\r\nUIDL\r\n.\r\n+OK\r\n+OK\r\n"  # greeting, CAPA, USER, PASS


def retr(body):
    return b"+OK\r\n" + body + b".\r\n"


def test_addresses():
    assert addresses(b" \"Smith, Al\" <al@office.test>, bob@office.test (Bob), <c@x.y>") == [
        "al@office.test", "bob@office.test", "c@x.y"]
    assert addresses(b" alice@office.test") == ["alice@office.test"]
    assert addresses(b"from isp.test by mx.isp.test (Postfix) with ESMTP id 1\r\n\tfor <bob@office.test>; Wed, 2 Dec",
                     True) == ["bob@office.test"]
    assert addresses(b"undisclosed-recipients:;") == [] and addresses(b"from x by y; date", True) == []


def test_header_scan_split_at_every_byte():
    head = (b"Return-Path: <sender@example.net>\r\nDelivered-To: office@isp.test\r\n"
            b"Received: from mx by isp.test\r\n\tfor <carol@office.test>; Wed, 2 Dec 2026\r\n"
            b"Delivered-To: alice@office.test\r\nX-Original-To: bob@office.test\r\n"
            b"X-Long: " + b"y" * 1200 + b"\r\n"  # read truncated: no field is lost after it
            b"To: Alice <alice@office.test>,\r\n Dave <dave@example.com>\r\nCc: carol@office.test\r\n"
            b"\r\nTo: body@office.test\r\n")
    cfg = config()
    for env, guess, want_env, want_guess in ((b"delivered-to", False, ["alice@office.test"], []),
                                             (b"x-original-to", True, ["bob@office.test"],
                                              ["carol@office.test", "alice@office.test"])):
        sc = HeaderScan(env, guess, cfg.is_local_domain)
        for piece in range(1, len(head) + 1):
            sc.reset()
            mv = memoryview(head)
            for i in range(0, len(head), piece):
                sc.feed(mv[i : i + piece])
            assert sc.env == want_env and sc.guessed == want_guess, (piece, sc.env, sc.guessed)
            assert sc.sender == "sender@example.net" and not sc.in_head


def test_sorting_into_maildrops_and_the_journal_before_dele():
    o = Office()
    try:
        msgs = [(b"u1", msg(b"X-Original-To: alice@office.test\r\n", 1)),
                (b"u2", msg(b"X-Original-To: sales@office.test\r\n", 2)),  # an alias: two maildrops
                (b"u3", msg(b"X-Original-To: nobody@office.test\r\n", 3)),  # no such user: the default
                (b"u4", msg(b"To: bob@office.test\r\n", 4)),  # no envelope header (and no guessing)
                (b"u5", msg(b"X-Original-To: friend@example.com\r\n", 5))]  # not ours: the default
        server = LOGIN + listing(msgs)
        for _uid, body in msgs:
            server += retr(body) + b"+OK\r\n"
        server += b"+OK bye\r\n"
        out, c, col = o.call(server, 3)
        assert out.endswith(b"LIST\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nRETR 3\r\nDELE 3\r\nRETR 4\r\nDELE 4\r\n"
                            b"RETR 5\r\nDELE 5\r\nQUIT\r\n"), out
        assert c.result[0] == P.DONE and col.collected == 5 and col.dels == 5 and col.left() == 0
        alice, bob, office = o.box("alice"), o.box("bob"), o.box("office")
        assert len(alice) == 2 and len(bob) == 1 and len(office) == 3, (len(alice), len(bob), len(office))
        assert alice[0].startswith(b"Received: from pop.isp.test\r\n\tby gw.office.test (dialgate) with POP3 id ")
        assert alice[0].endswith(b"X-Original-To: alice@office.test\r\nSubject: m1\r\n\r\nbody 1\r\n.dot\r\n")
        assert bob[0] == alice[1] and b"m2" in bob[0]
        assert [m.split(b"Subject: ")[1][:2] for m in office] == [b"m3", b"m4", b"m5"]
        lines = [ln.split(b" ") for ln in o.lines()]
        assert [w[0] + w[2] for w in lines] == [b"Pu1", b"Cu1", b"Pu2", b"Cu2", b"Pu3", b"Cu3", b"Pu4", b"Cu4",
                                                b"Pu5", b"Cu5"], lines  # "P" names the spool id before each commit
        assert all(len(w) == 4 and len(w[3]) > 8 for w in lines if w[0] == b"P"), lines
        assert col.journal.count == 5  # "P" lines do not count toward a full journal
    finally:
        o.close()


def test_guessing_from_to_and_cc_only_when_switched_on():
    for guess, box in ((False, "office"), (True, "bob")):
        o = Office({"isp.pop3.guess": guess})
        try:
            msgs = [(b"g1", msg(b"To: Bob <bob@office.test>\r\nCc: x@example.com\r\n", 1))]
            o.call(LOGIN + listing(msgs) + retr(msgs[0][1]) + b"+OK\r\n+OK bye\r\n", 5)
            assert len(o.box(box)) == 1, (guess, box)
        finally:
            o.close()
        o = None  # not held while the next Office builds its config (config_load: ~20 KB at once)
        compat.gc_collect()


def test_a_call_dropped_after_commit_or_before_quit_never_fetches_twice():
    o = Office()
    try:
        msgs = [(b"d%d" % n, msg(b"X-Original-To: carol@office.test\r\n", n)) for n in (1, 2, 3)]
        # Call 1: message 1 fetched and deleted, message 2 fetched (committed, journaled,
        # DELE 2 sent), then the line drops before its reply: the ISP keeps both (no QUIT).
        out, c, col = o.call(LOGIN + listing(msgs) + retr(msgs[0][1]) + b"+OK\r\n" + retr(msgs[1][1]), 7, eof=True)
        assert out.endswith(b"RETR 2\r\nDELE 2\r\n") and c.result[0] == P.LATER and col.collected == 2, out
        assert len(o.box("carol")) == 2
        # Call 2: the ISP still lists all three. 1 and 2 are known: DELE, no RETR.
        server = LOGIN + listing(msgs) + b"+OK\r\n+OK\r\n" + retr(msgs[2][1]) + b"+OK\r\n+OK bye\r\n"
        out, c, col = o.call(server, 11)
        assert out.endswith(b"LIST\r\nDELE 1\r\nDELE 2\r\nRETR 3\r\nDELE 3\r\nQUIT\r\n"), out
        assert col.known == 2 and col.collected == 1 and col.left() == 0 and c.result[0] == P.DONE
        got = o.box("carol")
        assert [m.split(b"Subject: ")[1][:2] for m in got] == [b"m1", b"m2", b"m3"], got
        # Call 3: the ISP lists nothing; the journal forgets all three.
        out, c, col = o.call(LOGIN + listing([]) + b"+OK bye\r\n")
        assert out.endswith(b"LIST\r\nQUIT\r\n") and o.lines() == [], (out, o.lines())
    finally:
        o.close()


def test_too_large_stays_at_the_isp_and_the_postmaster_is_told_once():
    o = Office({"isp.pop3.max_size": 1024})
    try:
        big = (b"b1", b"X-Original-To: alice@office.test\r\n" + b"x" * 2000 + b"\r\n")
        small = (b"s1", msg(b"X-Original-To: alice@office.test\r\n", 1))
        for _ in range(2):
            out, c, col = o.call(LOGIN + listing([big, small]) + retr(small[1]) + b"+OK\r\n+OK bye\r\n")
            assert b"RETR 1" not in out and b"DELE 1" not in out
        assert len(o.box("alice")) == 1  # the small one, once (the second call knew it)
        pm = o.box("postmaster")
        assert len(pm) == 1 and b"isp.pop3.max_size (1024 octets)" in pm[0] and b"UIDL b1" in pm[0], pm
        assert col.too_large == 1 and col.left() == 1
        assert [ln[:1] for ln in o.lines()] == [b"T", b"C"]
    finally:
        o.close()


def test_leave_on_server_deletes_only_after_keep_days():
    o = Office({"isp.pop3.leave_on_server": True, "isp.pop3.keep_days": 3})
    try:
        old = (b"old", msg(b"X-Original-To: bob@office.test\r\n", 1))
        new = (b"new", msg(b"X-Original-To: bob@office.test\r\n", 2))
        j = o.journal()
        j.add(67, b"old", compat.wall_time() - 4 * 86400)  # collected 4 days ago
        out, c, col = o.call(LOGIN + listing([old, new]) + b"+OK\r\n" + retr(new[1]) + b"+OK bye\r\n")
        assert out.endswith(b"LIST\r\nDELE 1\r\nRETR 2\r\nQUIT\r\n"), out  # the new one stays at the ISP
        assert len(o.box("bob")) == 1 and col.left() == 0
        out, c, col = o.call(LOGIN + listing([new]) + b"+OK bye\r\n")
        assert out.endswith(b"LIST\r\nQUIT\r\n") and col.known == 1, out
        assert [ln.split(b" ")[2] for ln in o.lines()] == [b"new"]
    finally:
        o.close()


def test_a_torn_journal_line_is_dropped_and_a_full_journal_stops_collecting():
    o = Office()
    try:
        with open(o.spool.path("pop3.uidl"), "wb") as f:
            f.write(b"C 0 k1\nC 12 k")  # a power cut mid-append
        j = o.journal()
        assert [e for e in j.entries()] == [(67, 0, b"k1")] and j.torn == 1
        msgs = [(b"k1", msg(b"", 1)), (b"k2", msg(b"", 2))]
        out, c, col = o.call(LOGIN + listing(msgs) + b"+OK\r\n" + retr(msgs[1][1]) + b"+OK\r\n+OK bye\r\n")
        assert out.endswith(b"DELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"), out
        ls = o.lines()
        assert len(ls) == 3 and ls[0] == b"C 0 k1" and ls[1].startswith(b"P ") and ls[2].endswith(b" k2"), ls
        col = Collection(o.cfg, o.spool, o.router, o.journal(), "x", "x")
        col.journal.max_entries = 2
        col.begin_listing(3)
        for n, uid in ((1, b"k1"), (2, b"k2"), (3, b"k3")):
            col.listed(n, uid)
            col.sized(n, 10)
        col.listing_done()
        assert col.next() == (P.DELE, 0) and col.next() == (P.DELE, 1) and col.next() is None
        assert col.stop == "UIDL journal full"
    finally:
        o.close()


def test_a_kill_between_the_commit_and_its_journal_line_fetches_nothing_twice():
    # The "C" line never written after the commit (the process killed in between:
    # here its write fails) leaves the "P" line naming the spool id; the next
    # listing finds that id in a maildrop (one maildrop; an alias's fan-out) and
    # deletes the message at the ISP instead of fetching it again. A "P" whose id
    # is nowhere (killed before the commit) is fetched again. "P" lines then go.
    o = Office()
    saved = UidlJournal.add

    def cut(self, kind, uid, now):
        if kind == 67:  # "C"
            raise OSError(5, "killed")
        saved(self, kind, uid, now)

    try:
        # (a 70-octet UIDL, RFC 1939 §7's longest: its "P" line with the id still fits)
        for uid, to, boxes in ((b"w" * 70, b"alice", ("alice",)), (b"w2", b"sales", ("alice", "bob"))):
            m = [(uid, msg(b"X-Original-To: " + to + b"@office.test\r\n", 1))]
            UidlJournal.add = cut
            try:
                out, c, col = o.call(LOGIN + listing(m) + retr(m[0][1]) + b"+OK bye\r\n")
            finally:
                UidlJournal.add = saved
            assert out.endswith(b"RETR 1\r\nQUIT\r\n") and col.stop.startswith("UIDL journal"), (out, col.stop)
            assert o.lines()[-1].startswith(b"P ") and b" " + uid + b" " in o.lines()[-1], o.lines()
            have = [len(o.box(u)) for u in boxes]
            out, c, col = o.call(LOGIN + listing(m) + b"+OK\r\n+OK bye\r\n")
            assert out.endswith(b"LIST\r\nDELE 1\r\nQUIT\r\n") and col.known == 1 and col.collected == 0, out
            assert [len(o.box(u)) for u in boxes] == have, boxes  # no second copy
            assert [ln[:2] for ln in o.lines()][-1:] == [b"C "] and not [x for x in o.lines() if x[:1] == b"P"]
        # killed before the commit: the id is in no maildrop, so the message comes again
        with open(o.spool.path("pop3.uidl"), "ab") as f:
            f.write(b"P 0 w3 0bcf337f-00000009-00000009\n")
        m = [(b"w3", msg(b"X-Original-To: bob@office.test\r\n", 3))]
        before = len(o.box("bob"))
        out, c, col = o.call(LOGIN + listing(m) + retr(m[0][1]) + b"+OK\r\n+OK bye\r\n")
        assert out.endswith(b"RETR 1\r\nDELE 1\r\nQUIT\r\n") and col.collected == 1, out
        assert len(o.box("bob")) == before + 1
    finally:
        UidlJournal.add = saved
        o.close()
