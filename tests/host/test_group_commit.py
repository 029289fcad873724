"""Group commit on CPython (issue #11, docs/storage.md "Commit"): SMTP sessions
that finish DATA while another commit's fsync is in flight share one directory
fsync; no 250 goes out before the fsync behind it has returned, and the event
loop serves the other sessions meanwhile; a failed fsync answers 451 to every
message that waited for it and leaves nothing behind. A message a multidrop
collection fetched from the ISP commits the same way, and its DELE waits for it."""

import asyncio
import os
import shutil
import threading

import smtpfakes

import fwtest
from dialgate import compat, net
from dialgate.spool import Spool

N = 4  # sessions
ENVELOPE = b"EHLO pc\r\nMAIL FROM:<a@office.test>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\n"


class Held:
    """compat.sync_dir, but the first `hold` fsyncs of directory `path` wait for
    release() (and then raise `error` if set): a slow flash the test controls."""

    def __init__(self, path, hold=1, error=None):
        self.path = path
        self.hold = hold
        self.error = error
        self.calls = []  # every directory fsync'd, in order
        self.entered = threading.Event()
        self._go = threading.Event()
        self._real = compat.sync_dir

    def __call__(self, path):
        self.calls.append(path)
        if path == self.path and self.hold:
            self.hold -= 1
            self.entered.set()
            self._go.wait(20)
        if path == self.path and self.error is not None:
            raise self.error
        self._real(path)

    def release(self):
        self._go.set()


async def _until(cond, what):
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out waiting for " + what)


async def _client(port, i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(ENVELOPE)
    lines = []
    while not lines or not lines[-1].startswith(b"354"):
        lines.append(await r.readline())
    w.write(b"Subject: %d\r\n\r\nmessage %d\r\n.\r\n" % (i, i))
    await w.drain()
    return r, w


def _listed(sp, user="alice"):
    """How many messages POP3 would list in `user`'s maildrop now."""
    md = sp.maildrops.open(user)
    try:
        return len(md.messages())
    finally:
        md.close()


def _serve(root, held, client_side):
    """A spool in `root` whose maildrop fsyncs go through `held`, an SMTP service
    over one Net on a loopback port: asyncio.run(client_side(net, port, spool)) -> its result, the spool."""
    sp = Spool(root, 0)
    sp.recover()
    os.mkdir(sp.mail_dir("alice"))
    held.path = sp.mail_dir("alice")
    svc = smtpfakes.service(spool=sp)
    n = net.Net(1024, 16, 16)
    saved = compat.sync_dir
    compat.sync_dir = held

    async def main():
        srv = await n.listen("smtp", "127.0.0.1", 0, svc.session)
        return await client_side(n, srv.sockets[0].getsockname()[1], sp)

    try:
        return asyncio.run(main()), sp
    finally:
        compat.sync_dir = saved
        held.release()


def _run(held, check_while_held):
    async def clients(n, port, sp):
        first = await _client(port, 0)
        await _until(held.entered.is_set, "the first maildrop fsync")
        # the loop is not blocked by it: the others get their 354 and commit
        others = [await _client(port, i) for i in range(1, N)]
        await _until(lambda: len(n._commits._new) == N - 1, "the other commits to queue")
        await check_while_held(sp, first[0])
        held.release()
        replies = []
        for r, w in [first, *others]:
            replies.append(await asyncio.wait_for(r.readline(), 20))
            w.close()
        await n.close()
        return replies

    root = fwtest.tempdir("gc")
    try:
        replies, sp = _serve(root, held, clients)
        return replies, sp, root
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def test_sessions_share_one_maildrop_fsync_and_250_waits_for_it():
    async def while_held(sp, r):
        # the first message is renamed into the maildrop but not yet durable:
        # no 250 on the wire, and POP3 does not show it
        try:
            line = await asyncio.wait_for(r.readline(), 0.3)
        except TimeoutError:
            line = b""
        assert line == b"", line
        assert len(os.listdir(sp.mail_dir("alice"))) == 1
        assert _listed(sp) == 0

    held = Held(None)
    replies, sp, root = _run(held, while_held)
    try:
        assert all(r.startswith(b"250 2.0.0 Ok: queued as ") for r in replies), replies
        maildir = sp.mail_dir("alice")
        assert sorted(os.listdir(maildir)) == sorted(r.split()[-1].decode() for r in replies)
        # one fsync for the first message, one shared by the N - 1 that came while it was held
        assert held.calls.count(maildir) == 2, held.calls
        assert not sp.inflight and os.listdir(sp.path("tmp")) == []
        assert _listed(sp) == N
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_failed_shared_fsync_is_451_for_each_and_leaves_nothing():
    async def while_held(sp, r):
        pass

    held = Held(None, hold=2, error=OSError(5, "EIO"))
    replies, sp, root = _run(held, while_held)
    try:
        assert replies == [b"451 4.3.0 Local error in processing\r\n"] * N, replies
        assert os.listdir(sp.mail_dir("alice")) == [] and os.listdir(sp.path("tmp")) == []
        assert not sp.inflight
        assert held.calls.count(sp.mail_dir("alice")) == 2, held.calls
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_every_commit_shape_through_the_group_committer():
    """One maildrop, several (hard links and stubs), remote only, local + remote:
    committed together through CommitGroup, the spool ends as commit() leaves it."""
    from dialgate.compat_cpython import CommitGroup
    from dialgate.delivery import Route

    shapes = [
        [Route("local", "alice@office.test", ["alice"])],
        [Route("local", "team@office.test", ["alice", "bob", "carol"])],
        [Route("remote", "x@example.com", []), Route("remote", "y@example.com", [])],
        [Route("local", "bob@office.test", ["bob"]), Route("remote", "z@example.com", [])],
    ]
    for links in (True, False):
        root = fwtest.tempdir("gcs")
        try:
            sp = Spool(root, 0, links=links)
            sp.recover()
            group = CommitGroup()
            jobs = []
            for routes in shapes * 2:
                w = sp.writer()
                w.write(b"Subject: shape\r\n\r\nbody\r\n")
                jobs.append(w.start_commit("s@isp.test", routes))

            async def main(group, jobs):
                await asyncio.gather(*[group.complete(j) for j in jobs])

            asyncio.run(main(group, jobs))
            assert [j.error for j in jobs] == [None] * len(jobs)
            assert group.rounds < len(jobs)  # they went through together
            ids = [j.id for j in jobs]
            users = {"alice": [0, 1], "bob": [1, 3], "carol": [1]}
            for user, which in users.items():
                want = sorted(ids[i] for i in range(len(ids)) if i % 4 in which)
                md = sp.maildrops.open(user)
                try:
                    assert sorted(u for u, _size in md.messages()) == want, (user, links)
                finally:
                    md.close()
            assert sorted(sp.queue.ids()) == sorted(ids[i] for i in range(len(ids)) if i % 4 in (2, 3))
            assert os.listdir(sp.path("tmp")) == [] and os.listdir(sp.path("new")) == [] and not sp.inflight
            assert sp.recover() == {"tmp": 0, "fanout": 0, "orphans": 0, "queue": 4}
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_a_stop_during_a_commit_sends_its_250_first():
    """The gateway stopping (SIGTERM, the console's shutdown: net.close) while a
    message's fsync is in flight: the commit finishes and its 250 goes out before
    the connection closes. Cut instead, the message would be on flash unacknowledged
    and its client would send it again (a duplicate)."""
    async def client(n, port, sp):
        r, w = await _client(port, 0)
        await _until(held.entered.is_set, "the maildrop fsync")
        closing = asyncio.create_task(n.close())
        await asyncio.sleep(0.3)
        assert not closing.done()  # close waits for the commit in flight
        held.release()
        reply = await asyncio.wait_for(r.readline(), 20)
        await asyncio.wait_for(closing, 20)
        rest = await asyncio.wait_for(r.read(), 20)  # then the connection is closed
        w.close()
        return reply, rest

    root = fwtest.tempdir("gcstop")
    held = Held(None)
    try:
        (reply, rest), sp = _serve(root, held, client)
        assert reply.startswith(b"250 2.0.0 Ok: queued as "), reply
        assert rest == b"", rest
        assert _listed(sp) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Isp:
    """A POP3 mailbox at the ISP holding one message for alice: answers one
    command at a time (no PIPELINING) and records the commands in order."""

    BODY = b"X-Original-To: alice@office.test\r\nSubject: held\r\n\r\nfrom the ISP\r\n"

    def __init__(self):
        self.commands = []

    async def serve(self, r, w):
        replies = {b"CAPA": b"+OK\r\nUSER\r\nUIDL\r\n.\r\n", b"STAT": b"+OK 1 %d\r\n" % len(self.BODY),
                   b"UIDL": b"+OK\r\n1 u1\r\n.\r\n", b"LIST": b"+OK\r\n1 %d\r\n.\r\n" % len(self.BODY),
                   b"RETR": b"+OK\r\n" + self.BODY + b".\r\n", b"QUIT": b"+OK bye\r\n"}
        w.write(b"+OK ready\r\n")
        while True:
            line = await r.readline()
            if not line:
                break
            word = line.split()[0].upper()
            self.commands.append(word)
            w.write(replies.get(word, b"+OK\r\n"))
            await w.drain()
            if word == b"QUIT":
                break
        w.close()


def test_a_multidrop_commit_waits_in_the_group_committer_and_dele_waits_for_it():
    """A message collected from the ISP mailbox commits like an SMTP one on
    CPython: its fsyncs in the group committer, so the LAN is served while the
    flash is slow, and the DELE that gives up the ISP's copy goes only after
    the message is durable and its UIDL journaled (docs/inbound.md)."""
    from dialgate.delivery import Router
    from dialgate.multidrop import Collection
    from dialgate.net_out import connect
    from dialgate.pop3_client import DONE, Pop3Client
    from dialgate.pop3_journal import UidlJournal

    class Users:
        def expand(self, name):
            return [name] if name in ("alice", "office") else []

    isp = _Isp()
    held = Held(None)
    cfg = fwtest.host_config({"isp.pop3.host": "pop.isp.test", "isp.pop3.user": "office",
                              "isp.pop3.default_user": "office"})
    out = {}

    async def collect(n, port, sp):
        pop = await asyncio.start_server(isp.serve, "127.0.0.1", 0)
        journal = UidlJournal(sp.path("pop3.uidl"), sp.path("pop3.uidl.tmp"), sp.flash, 100)
        col = Collection(cfg, sp, Router(cfg, Users()), journal, "office@pop.isp.test", "pop.isp.test")
        c = Pop3Client("office", "secret", col, "none", None, True, ("127.0.0.1", 110), bytearray(1024))
        call = asyncio.create_task(connect(n, "multidrop", "127.0.0.1", pop.sockets[0].getsockname()[1], c))
        await _until(held.entered.is_set, "the maildrop fsync")
        # the flash is slow: the loop still greets a LAN client, the ISP has
        # not been told to delete, and the journal has only the "P" line
        r, w = await asyncio.open_connection("127.0.0.1", port)
        out["greeting"] = await asyncio.wait_for(r.readline(), 5)
        out["while_held"] = list(isp.commands)
        with open(sp.path("pop3.uidl"), "rb") as f:
            out["journal_held"] = [ln.split(b" ")[0] for ln in f.read().split(b"\n")[:-1]]
        w.close()
        held.release()
        await asyncio.wait_for(call, 20)
        pop.close()
        await n.close()
        return c, col

    root = fwtest.tempdir("gcm")
    try:
        (c, col), sp = _serve(root, held, collect)
        assert out["greeting"].startswith(b"220 "), out
        assert out["while_held"] == [b"CAPA", b"USER", b"PASS", b"STAT", b"UIDL", b"LIST", b"RETR"], out
        assert out["journal_held"] == [b"P"], out
        assert isp.commands[-2:] == [b"DELE", b"QUIT"], isp.commands
        assert c.result[0] == DONE and col.collected == 1 and col.dels == 1, (c.result, col.collected)
        with open(sp.path("pop3.uidl"), "rb") as f:
            assert [ln.split(b" ")[0] for ln in f.read().split(b"\n")[:-1]] == [b"P", b"C"]
        assert _listed(sp) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_round_whose_loop_closed_meanwhile_keeps_every_worker():
    """An fsync that returns after its event loop has closed (a test's loop, or a
    stop that did not wait) has no one to tell: the worker that finished it lives
    on. Before, call_soon_threadsafe's RuntimeError ended the worker thread, and
    a process that lost all of them would wait for its next commit forever."""
    from dialgate import compat_cpython as cc

    d = fwtest.tempdir("gc-closed")
    gate = threading.Event()
    real = compat.sync_dir

    def slow(path):
        gate.wait(10)
        real(path)

    def workers():
        return [t for t in threading.enumerate() if t.name.startswith("dialgate-fsync-") and t.is_alive()]

    compat.sync_dir = slow
    try:
        async def start():
            asyncio.ensure_future(cc._syncer().run([d] * cc._WORKERS))
            await asyncio.sleep(0.1)  # every worker inside its fsync

        loop = asyncio.new_event_loop()
        loop.run_until_complete(start())
        for t in asyncio.all_tasks(loop):
            t.cancel()
        loop.close()
        assert len(workers()) == cc._WORKERS
        gate.set()  # the fsyncs return, to a closed loop
        threading.Event().wait(0.3)
        assert len(workers()) == cc._WORKERS, "a worker died reporting to a closed loop"
        compat.sync_dir = real
        got = asyncio.run(asyncio.wait_for(cc._syncer().run([d] * cc._WORKERS), 5))
        assert got == [None] * cc._WORKERS
    finally:
        compat.sync_dir = real
        gate.set()
        shutil.rmtree(d, ignore_errors=True)
