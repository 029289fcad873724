"""Small fakes for the POP3 protocol tests: users and maildrops kept in memory
(or pointing at real files), with the mailbox.Maildrops / users.UserStore shape."""

import io

import fwtest
from dialgate.auth import AuthThrottle
from dialgate.mailbox import Locked, MessageList
from dialgate.pop3_service import Pop3Service


class FakeUsers:
    def __init__(self, apop=True):
        self.apop = apop
        self.pw = {"alice": "wonder land", "bob": "builder"}
        self.secrets = {"alice": "tanstaaf", "bob": "bobsecret"}

    def check_password(self, name, password):
        return self.pw.get(name) == password

    def apop_secret(self, name):
        return self.secrets.get(name) if self.apop else None

    def exists(self, name):
        return name in self.pw


class FakeDrop:
    def __init__(self, store, user):
        self.store = store
        self.user = user
        self.closed = False

    def messages(self):
        """The real maildrop's MessageList, so the session reads what it would read."""
        box = self.store.boxes[self.user]
        out = MessageList(len(box), sum(len(uid) for uid, _ in box))
        for uid, body in box:
            out.add(uid, len(body) if isinstance(body, bytes) else body.size, False)
        return out

    def open_body(self, index):
        body = self.store.boxes[self.user][index][1]
        if isinstance(body, bytes):
            return io.BytesIO(body)
        return open(body.path, "rb")

    def expunge(self, indexes):
        self.store.expunged.append(list(indexes))
        box = self.store.boxes[self.user]
        self.store.boxes[self.user] = [box[i] for i in range(len(box)) if i not in indexes]

    def close(self):
        if not self.closed:
            self.closed = True
            del self.store.locks[self.user]


class FileBody:
    def __init__(self, path, size):
        self.path = path
        self.size = size


class FakeMaildrops:
    def __init__(self, boxes):
        self.boxes = boxes  # user -> list of (uid, bytes or FileBody)
        self.locks = {}
        self.expunged = []

    def open(self, user):
        if user in self.locks:
            raise Locked(user)
        if user not in self.boxes:
            self.boxes[user] = []
        d = FakeDrop(self, user)
        self.locks[user] = d
        return d


MSG1 = b"From: a@x\r\nSubject: one\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n"
MSG2 = b"Subject: two\r\n\r\n.\r\n..\r\nend\r\n"
MSG3 = b"Subject: three\r\n\r\nbody\r\n"


def boxes():
    return {"alice": [("uid-a1", MSG1), ("uid-a2", MSG2), ("uid-a3", MSG3)], "bob": []}


def service(drops=None, over=None, apop=False, tls_ok=False, throttle=None):
    """`tls_ok`: offer STLS (a stand-in object plays the ssl context)."""
    cfg = fwtest.host_config(over)
    if drops is None:
        drops = FakeMaildrops(boxes())
    th = throttle or AuthThrottle(delay_ms=100, max_delay_ms=800, lockout_after=3, lockout_ms=60000)
    return Pop3Service(cfg, drops, FakeUsers(apop), th, (lambda: TLS_CONTEXT) if tls_ok else None, "test")


TLS_CONTEXT = object()
LAN = ("127.0.0.1", 4000)
WAN = ("127.0.0.2", 4000)


# ---- transcript helpers shared by test_pop3 and test_pop3_trans ----

GREET = b"+OK dialgate POP3 server ready\r\n"
LOGIN = b"USER alice\r\nPASS wonder land\r\n"
LOGGED = b"+OK send PASS\r\n+OK alice has 3 messages (%d octets)\r\n" % (len(MSG1) + len(MSG2) + len(MSG3))


def split(data, expect, peer=LAN, pieces=None, **kw):
    """Every split of `data` against a fresh service; returns the transcript."""

    def make():
        return service(apop=kw.get("apop", False), tls_ok=kw.get("tls_ok", False), over=kw.get("over")).session(peer)

    return fwtest.every_split(make, data, expect, pieces)


def one(svc, data, peer=LAN, piece=7):
    s = svc.session(peer)
    return s, fwtest.drive(s, data, piece)
