"""Spool and maildrops on littlefs (os.VfsLfs2 over a RAM block device), with power cuts.

MicroPython only: CPython has no littlefs. Each trial formats a 40 KB device,
runs a mixed load (accept, fan out, expunge, queue removal) with the power cut
at a random block program/erase (some torn), remounts the blocks as they were
at the cut, recovers and checks the promises the SIGKILL test checks on POSIX.
"""

import os
import random

import fwtest
from dialgate import compat, log
from dialgate.delivery import Route
from dialgate.spool import Spool, SpoolFull

MNT = "/lfs"
ROOT = MNT + "/spool"
USERS = ["u0", "u1", "u2"]


def _need_lfs():
    if not hasattr(os, "VfsLfs2"):
        fwtest.skip("littlefs (os.VfsLfs2) exists only on MicroPython; CPython covers POSIX (tests/host)")


def _device():
    from lfsdev import RamFlash

    compat.gc_collect()
    try:
        return RamFlash()
    except MemoryError:
        fwtest.skip("no 24 KB left on the heap for the RAM flash; run from .mpy (upy_test without --py)")


def _mount(dev, mkfs=False):
    if mkfs:
        os.VfsLfs2.mkfs(dev)
    os.mount(os.VfsLfs2(dev), MNT)


def _umount():
    try:
        os.umount(MNT)
    except OSError:
        pass


def _body(mid, n):
    return ("%s line of text\r\n" % mid) * n + "END %s\r\n" % mid


def _same(f, mid, n, size):
    """Compare a body file with _body(mid, n) line by line (bounded RAM), and its size."""
    line = ("%s line of text\r\n" % mid).encode()
    end = ("END %s\r\n" % mid).encode()
    buf = bytearray(len(line))
    ok = True
    try:
        for _ in range(n):
            if f.readinto(buf) != len(buf) or buf != line:
                ok = False
                break
        if ok:
            ok = f.read(len(end) + 1) == end
    finally:
        f.close()
    return ok and (size is None or size == len(line) * n + len(end))


class Oracle:
    def __init__(self):
        self.begun = {}  # id -> (n, users, remote)
        self.committed = {}
        self.expunging = {}  # (user, id)
        self.expunged = {}
        self.unqueuing = {}
        self.unqueued = {}


def _workload(sp, rng, orc, ops):
    for _ in range(ops):
        op = rng.randint(0, 9)
        if op < 5:
            users = USERS[: rng.randint(1, 3)]
            remote = rng.randint(0, 3) == 0
            n = rng.randint(0, 60)
            try:
                w = sp.writer()
            except SpoolFull:
                continue
            orc.begun[w.id] = (n, users, remote)
            try:
                line = ("%s line of text\r\n" % w.id).encode()
                for _ in range(n):
                    w.write(line)
                w.write(("END %s\r\n" % w.id).encode())
                routes = [Route("local", users[0] + "@office.test", users)]
                if remote:
                    routes.append(Route("remote", "far@isp.test", []))
                mid = w.commit("s@isp.test", routes)
            except SpoolFull:
                continue
            orc.committed[mid] = 1
        elif op < 8:
            u = USERS[rng.randint(0, 2)]
            md = sp.maildrops.open(u)
            try:
                msgs = md.messages()
                dele = [i for i in range(len(msgs)) if rng.randint(0, 1)]
                for i in dele:
                    orc.expunging[(u, msgs[i][0])] = 1
                md.expunge(dele)
                for i in dele:
                    orc.expunged[(u, msgs[i][0])] = 1
            finally:
                md.close()
        else:
            due = sp.queue.ids()
            if due:
                mid = due[0]
                orc.unqueuing[mid] = 1
                sp.queue.remove(mid)
                orc.unqueued[mid] = 1


def _check(sp, orc):
    holders = {}
    for u in USERS:
        md = sp.maildrops.open(u)
        try:
            msgs = md.messages()
            uids = [m[0] for m in msgs]
            assert len(uids) == len(set(uids)), "UID twice in " + u
            for i in range(len(msgs)):
                uid, size = msgs[i]
                assert uid in orc.begun, "unknown message %s" % uid
                assert (u, uid) not in orc.expunged, "expunged %s came back" % uid
                assert _same(md.open_body(i), uid, orc.begun[uid][0], size), "partial %s in %s" % (uid, u)
                holders.setdefault(uid, []).append(u)
        finally:
            md.close()
    queued = sp.queue.ids()
    for mid in queued:
        assert mid not in orc.unqueued, "unqueued %s came back" % mid
        assert _same(sp.queue.open_body(mid), mid, orc.begun[mid][0], None), "partial queued %s" % mid
    for mid in orc.begun:
        n, users, remote = orc.begun[mid]
        have = holders.get(mid, [])
        if mid in orc.committed or have or mid in queued:
            for u in users:
                assert u in have or (u, mid) in orc.expunging, "%s missing from %s" % (mid, u)
            if remote:
                assert mid in queued or mid in orc.unqueuing, "%s not queued" % mid
    assert os.listdir(sp.path("tmp")) == [] and os.listdir(sp.path("new")) == []
    for mid in os.listdir(sp.path("body")):
        assert mid in queued or mid in holders, "body %s leaked" % mid


def _trial(seed, cut, torn, ops):
    from lfsdev import RamFlash

    dev = _device()
    _mount(dev, True)
    random.seed(seed)
    rng = random
    orc = Oracle()
    dev.arm(cut, torn)
    try:
        sp = Spool(ROOT, 0)
        sp.recover()
        _workload(sp, rng, orc, ops)
    except OSError:
        if not dev.cut:
            raise
    was_cut = dev.cut
    load_writes = dev.writes
    _umount()
    image = dev.image()
    dev = None
    compat.gc_collect()
    dev = RamFlash(data=image)  # the blocks as they were at the cut
    _mount(dev)
    try:
        sp = Spool(ROOT, 0)
        sp.recover()
        _check(sp, orc)
        again = sp.recover()  # idempotent
        assert again["fanout"] == 0 and again["tmp"] == 0 and again["orphans"] == 0
        w = sp.writer()  # and the volume still takes mail
        w.write(b"after\r\n")
        w.commit("", [Route("local", "u0@office.test", ["u0"])])
    finally:
        _umount()
    return was_cut, load_writes


def test_power_cut_at_random_block_writes():
    _need_lfs()
    ops = 14
    # A full run without a cut tells how many block writes the load makes.
    _, total = _trial(7, -1, False, ops)
    random.seed(11)  # (MicroPython's random has no Random class: draw every cut point first)
    trials = 40
    plan = [(random.randint(1, total), random.randint(0, 2) == 0) for _ in range(trials)]
    cuts = 0
    quiet = log.LOG.console
    log.LOG.console = False  # every cut logs the EIO it caused
    try:
        for cut, torn in plan:
            was_cut, _ = _trial(7, cut, torn, ops)
            cuts += 1 if was_cut else 0
    finally:
        log.LOG.console = quiet
    print("# littlefs power cut: %d trials, %d cut mid-load (%d block programs/erases in the load, %d torn), "
          "all recovered" % (trials, cuts, total, len([1 for _, t in plan if t])))
    assert cuts >= trials // 2


def test_littlefs_full_flash_refuses_cleanly():
    _need_lfs()
    dev = _device()
    _mount(dev, True)
    try:
        sp = Spool(ROOT, 0)
        sp.recover()
        kept = []
        full = False
        for i in range(200):
            try:
                w = sp.writer()
                w.write(("m%03d " % i).encode() * 200)
                kept.append(w.commit("", [Route("local", "u0@office.test", ["u0"])]))
            except SpoolFull:
                full = True
                break
        assert full and kept
        assert os.listdir(sp.path("tmp")) == []
        md = sp.maildrops.open("u0")
        assert [m[0] for m in md.messages()] == kept
        md.expunge([0, 1])
        md.close()
        w = sp.writer()
        w.write(b"room again\r\n")
        w.commit("", [Route("local", "u0@office.test", ["u0"])])
        # The reserve refuses before the flash is actually full.
        sp.reserve = compat.disk_free(ROOT) + 1
        assert not sp.has_room(0)
    finally:
        _umount()


def test_block_writes_per_message_on_littlefs():
    """Block programs + erases per accepted 1000-octet message (docs/storage.md "Wear")."""
    _need_lfs()
    dev = _device()
    _mount(dev, True)
    try:
        sp = Spool(ROOT, 0)
        sp.recover()
        body = b"x" * 998 + b"\r\n"
        out = []
        for routes in ([Route("local", "u0@office.test", ["u0"])],
                       [Route("local", "t@office.test", ["u0", "u1", "u2"])],
                       [Route("remote", "r@isp.test", [])]):
            w = sp.writer()  # (the first message of a kind creates maildrops; not counted)
            w.write(body)
            w.commit("", routes)
            n = 4
            before = dev.writes
            for _ in range(n):
                w = sp.writer()
                w.write(body)
                w.commit("", routes)
            out.append((dev.writes - before) / n)
            for u in USERS:
                md = sp.maildrops.open(u)
                md.expunge(range(len(md.messages())))
                md.close()
            for mid in sp.queue.ids():
                sp.queue.remove(mid)
        print("# littlefs block programs+erases per 1000-octet message (128-octet blocks): "
              "1 local %.1f, 3 local %.1f, 1 remote %.1f" % (out[0], out[1], out[2]))
    finally:
        _umount()
