"""POP3 over the real spool and maildrops: UIDL stable across a restart, exact
octet counts, QUIT removes exactly the marked messages, a drop removes none,
[IN-USE] for a second session. (Users are the small fake: the real UserStore
and APOP are covered end to end by tests/host/test_pop3_clients.py.)"""

from pop3fake import FakeUsers

import fwtest
from dialgate import compat
from dialgate.auth import AuthThrottle
from dialgate.delivery import Route
from dialgate.pop3_service import Pop3Service
from dialgate.spool import Spool

LAN = ("127.0.0.1", 5000)
BODIES = [
    b"Subject: 1\r\n\r\nfirst\r\n",
    b"Subject: 2\r\n\r\n.leading dot\r\n.\r\n",
    b"Subject: 3\r\n\r\nthird\r\n",
]


class Box:
    """A spool with users alice and bob; `restart()` is a new boot over the same files."""

    def __init__(self):
        self.root = fwtest.tempdir("pop3md")
        self.users = FakeUsers()
        self.users.pw = {"alice": "wonderland", "bob": "builder1"}
        self.cfg = fwtest.host_config()
        self.spool = self.svc = None
        self.restart()

    def restart(self):
        self.spool = self.svc = None
        compat.gc_collect()  # the old boot's objects go first (128K heap)
        self.spool = Spool(self.root + "/spool", 0)
        self.spool.recover()
        self.svc = Pop3Service(self.cfg, self.spool.maildrops, self.users, AuthThrottle(), None, "t")

    def deliver(self, body, user="alice"):
        w = self.spool.writer()
        w.write(body)
        return w.commit("s@x.test", [Route("local", user + "@office.test", [user])])

    def talk(self, data, piece=5):
        # the last talk's garbage goes before this one allocates: interleaved with
        # live sessions it fragmented the 128K heap until 640 octets no longer fitted
        compat.gc_collect()
        s = self.svc.session(LAN)
        return s, fwtest.drive(s, data, piece, bufs=fwtest._buffers(1024))

    def close(self):
        fwtest.rmtree(self.root)


LOGIN = b"USER alice\r\nPASS wonderland\r\n"


def uidl(out):
    i = out.index(b"+OK listing follows\r\n") + len(b"+OK listing follows\r\n")
    j = out.index(b"\r\n.\r\n", i)
    return [ln.split(b" ")[1] for ln in out[i:j].split(b"\r\n")]


def test_uidl_stable_across_restart_and_quit_removes_exactly_marked():
    box = Box()
    try:
        for b in BODIES:
            box.deliver(b)
        s, out = box.talk(LOGIN + b"UIDL\r\nLIST\r\nDELE 2\r\nQUIT\r\n")
        total = sum([len(b) for b in BODIES])
        assert b"+OK alice has 3 messages (%d octets)\r\n" % total in out, out
        assert b"1 %d\r\n2 %d\r\n3 %d\r\n.\r\n" % tuple([len(b) for b in BODIES]) in out, out
        uids = uidl(out)
        assert len(set(uids)) == 3
        for u in uids:
            assert 0 < len(u) <= 70 and min(u) >= 0x21 and max(u) <= 0x7E, u  # RFC 1939 §7
        assert out.endswith(b"+OK message 2 deleted\r\n+OK dialgate POP3 server signing off (2 messages left)\r\n")
        box.restart()  # a reboot: new spool object, recovery, new boot id
        box.deliver(b"Subject: 4\r\n\r\nafter restart\r\n")
        out = box.talk(LOGIN + b"UIDL\r\nRETR 2\r\nQUIT\r\n")[1]
        after = uidl(out)
        assert after[:2] == [uids[0], uids[2]], (after, uids)
        assert after[2] not in uids  # never reused
        assert b"+OK %d octets\r\n%s.\r\n" % (len(BODIES[2]), BODIES[2]) in out, out
    finally:
        box.close()


def test_dropped_session_deletes_nothing_and_lock_is_exclusive():
    box = Box()
    try:
        for b in BODIES:
            box.deliver(b)
        s1, out = box.talk(LOGIN + b"DELE 1\r\nDELE 2\r\nDELE 3\r\n")
        assert out.endswith(b"+OK message 3 deleted\r\n"), out
        out = box.talk(LOGIN)[1]  # the session goes at once (128K heap)
        assert out.endswith(b"-ERR [IN-USE] maildrop already locked by another session\r\n"), out
        s1.on_eof()
        s1.on_close()  # connection dropped mid-transaction
        out = box.talk(LOGIN + b"STAT\r\nRETR 2\r\nQUIT\r\n")[1]
        assert b"+OK 3 %d\r\n" % sum([len(b) for b in BODIES]) in out, out
        assert b"\r\n\r\n..leading dot\r\n..\r\n.\r\n" in out, out  # stuffed on the way out
        out = box.talk(b"USER bob\r\nPASS builder1\r\nSTAT\r\nQUIT\r\n")[1]
        assert b"+OK bob has 0 messages (0 octets)\r\n+OK 0 0\r\n" in out, out
    finally:
        box.close()
