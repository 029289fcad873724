"""Spool: streaming writer, commit, fan-out (hard links and stubs), recovery, free-space guard."""

import json
import os

import fwtest
from dialgate import compat
from dialgate.delivery import Route
from dialgate.spool import Spool, SpoolFull


def schemes():
    """Fan-out schemes this runtime can test: stubs everywhere, hard links where the OS has them."""
    return [True, False] if compat.HAS_LINK else [False]


def new_spool(tag, links=None, reserve=0):
    d = fwtest.tempdir(tag)
    sp = Spool(d, reserve, links=links)
    sp.recover()
    return sp


def local(*users):
    return Route("local", users[0] + "@office.test", list(users))


def remote(addr):
    return Route("remote", addr, [])


def put(sp, body, routes, sender="a@isp.test", chunk=7):
    w = sp.writer()
    for i in range(0, len(body), chunk):
        w.write(memoryview(body)[i : i + chunk])
    assert w.size == len(body)
    return w.commit(sender, routes)


def read(f, size=5):
    buf = bytearray(size)
    out = []
    while True:
        n = f.readinto(buf)
        if not n:
            break
        out.append(bytes(buf[:n]))
    f.close()
    return b"".join(out)


def listing(sp, kind):
    return sorted(os.listdir(sp.path(kind)))


def test_single_local_message_is_renamed_into_the_maildrop():
    sp = new_spool("sp1")
    try:
        body = b"Subject: hi\r\n\r\nhello\r\n"
        mid = put(sp, body, [local("alice")])
        md = sp.maildrops.open("alice")
        assert list(md.messages()) == [(mid, len(body))]
        assert read(md.open_body(0)) == body
        md.close()
        assert listing(sp, "tmp") == [] and listing(sp, "body") == [] and listing(sp, "new") == []
    finally:
        fwtest.rmtree(sp.root)


def test_fan_out_shares_one_body_and_frees_it_with_the_last_reader():
    for links in schemes():
        sp = new_spool("sp2", links)
        try:
            body = b"To: team@office.test\r\n\r\nshared\r\n"
            mid = put(sp, body, [local("alice", "bob"), local("carol"), local("bob")])
            for u in ("alice", "bob", "carol"):
                md = sp.maildrops.open(u)
                assert list(md.messages()) == [(mid, len(body))], (links, u)
                assert read(md.open_body(0)) == body
                md.close()
            assert listing(sp, "new") == []
            for u in ("alice", "bob", "carol"):
                md = sp.maildrops.open(u)
                md.expunge([0])
                md.close()
                assert sp.maildrops.count(u) == 0
            assert listing(sp, "body") == [], links
            assert listing(sp, "tmp") == []
        finally:
            fwtest.rmtree(sp.root)


def test_remote_and_local_recipients_share_the_body_until_both_are_done():
    for links in schemes():
        sp = new_spool("sp3", links)
        try:
            body = b"Subject: out\r\n\r\nbye\r\n"
            mid = put(sp, body, [remote("x@isp.test"), local("alice"), remote("y@isp.test"), remote("x@isp.test")], "")
            q = sp.queue
            assert q.ids() == [mid] and q.due(compat.wall_time()) == [mid]
            rec = q.load(mid)
            assert rec.sender == "" and rec.size == len(body) and rec.local == ["alice"]
            assert [r.address for r in rec.pending()] == ["x@isp.test", "y@isp.test"]
            assert read(q.open_body(mid)) == body
            md = sp.maildrops.open("alice")
            md.expunge([0])
            md.close()
            assert read(q.open_body(mid)) == body  # the queue still holds it
            q.remove(mid)
            assert q.ids() == [] and listing(sp, "body") == [] and listing(sp, "queue") == []
        finally:
            fwtest.rmtree(sp.root)


def test_queue_record_updates_are_atomic_replacements():
    sp = new_spool("sp4")
    try:
        mid = put(sp, b"x\r\n", [remote("a@isp.test"), remote("b@isp.test")])
        q = sp.queue
        rec = q.load(mid)
        rec.rcpts[0].state = "delivered"
        rec.rcpts[0].reply = "250 2.0.0 ok"
        rec.rcpts[1].attempts = 1
        rec.rcpts[1].reply = "451 4.3.0 later"
        rec.attempts = 1
        rec.next_attempt = compat.wall_time() + 600
        q.save(rec)
        assert q.due(compat.wall_time()) == []
        back = q.load(mid)
        assert [(r.address, r.state, r.reply, r.attempts) for r in back.rcpts] == [
            ("a@isp.test", "delivered", "250 2.0.0 ok", 0),
            ("b@isp.test", "pending", "451 4.3.0 later", 1),
        ]
        assert listing(sp, "tmp") == []
        # The index is rebuilt from flash at boot.
        sp2 = Spool(sp.root, 0)
        sp2.recover()
        assert sp2.queue.ids() == [mid] and sp2.queue.due(rec.next_attempt) == [mid]
        try:
            q.load("nope")
            raise AssertionError("KeyError expected")
        except KeyError:
            pass
    finally:
        fwtest.rmtree(sp.root)


def test_abort_leaves_nothing_and_is_idempotent():
    sp = new_spool("sp5")
    try:
        w = sp.writer()
        w.write(b"half a mess")
        w.abort()
        w.abort()
        assert listing(sp, "tmp") == []
        try:
            w.write(b"more")
            raise AssertionError("write after abort")
        except OSError:
            pass
    finally:
        fwtest.rmtree(sp.root)


def test_ids_are_unique_across_restarts():
    sp = new_spool("sp6")
    try:
        seen = {}
        for boot in range(3):
            sp = Spool(sp.root, 0)
            sp.recover()
            for _ in range(3):
                mid = put(sp, b"m\r\n", [local("alice")])
                assert mid not in seen
                seen[mid] = 1
                for c in mid:
                    assert 0x21 <= ord(c) <= 0x7E
                assert len(mid) <= 70
        md = sp.maildrops.open("alice")
        uids = [u for u, _ in md.messages()]
        md.close()
        assert uids == sorted(seen) and len(uids) == 9  # oldest first
    finally:
        fwtest.rmtree(sp.root)


def test_a_full_flash_does_not_stop_the_spool_starting():
    """Issue 12: recover() bumped the boot counter first, and on a flash with no
    room at all that write raised ENOSPC: the gateway could not start, so POP3
    could never delete anything to make room (a board would boot-loop). Now the
    spool starts, refuses new mail (SpoolFull) until the counter is on flash,
    and ids stay unique."""
    sp = new_spool("spfull")
    try:
        first = put(sp, b"before\r\n", [local("alice")])
        sp = Spool(sp.root, 0)
        real_put = sp.flash.put
        calls = []

        def full(path, tmp, text):
            calls.append(path)
            raise OSError(28, "No space left on device")

        sp.flash.put = full
        sp.recover()  # must not raise
        assert calls, "the boot counter was not even tried"
        md = sp.maildrops.open("alice")  # POP3 still serves and deletes
        assert [u for u, _ in md.messages()] == [first]
        md.expunge([0])
        md.close()
        try:
            sp.writer()
            raise AssertionError("an id was handed out before its boot counter was on flash")
        except SpoolFull:
            pass
        sp.flash.put = real_put  # room again
        second = put(sp, b"after\r\n", [local("alice")])
        assert second != first and second > first  # unique, and sorts after the older boot's
        sp = Spool(sp.root, 0)
        sp.recover()
        third = put(sp, b"next boot\r\n", [local("alice")])
        assert third > second
    finally:
        fwtest.rmtree(sp.root)


def _fake_interrupted_fanout(sp, mid, body, users, rcpts):
    with open(sp.path("body", mid), "wb") as f:
        f.write(body)
    rec = {"id": mid, "sender": "s@x", "size": len(body), "created": 0, "next": 0, "attempts": 0, "sessions": 0,
           "local": users, "rcpts": [[a, "pending", "", 0] for a in rcpts]}
    with open(sp.path("new", mid), "w") as f:
        f.write(json.dumps(rec))


def test_recovery_cleans_tmp_finishes_fanout_and_frees_orphans():
    for links in schemes():
        sp = new_spool("sp7", links)
        try:
            with open(sp.path("tmp", "half"), "wb") as f:
                f.write(b"partial")
            with open(sp.path("body", "orphan"), "wb") as f:
                f.write(b"nobody holds me")
            _fake_interrupted_fanout(sp, "m1", b"one\r\n", ["alice", "bob"], [])
            _fake_interrupted_fanout(sp, "m2", b"two\r\n", ["bob"], ["r@isp.test"])
            # bob already got m1 before the crash: recovery must not duplicate it
            compat.makedirs(sp.mail_dir("bob"))
            if links:
                compat.link(sp.path("body", "m1"), sp.mail_dir("bob") + "/m1")
            else:
                open(sp.mail_dir("bob") + "/m1.ref", "wb").close()
            sp = Spool(sp.root, 0, links=links)
            counts = sp.recover()
            assert counts["tmp"] == 1 and counts["fanout"] == 2 and counts["orphans"] >= 1, counts
            assert listing(sp, "tmp") == [] and listing(sp, "new") == []
            md = sp.maildrops.open("bob")
            assert [u for u, _ in md.messages()] == ["m1", "m2"]
            assert read(md.open_body(0)) == b"one\r\n"
            md.close()
            assert sp.queue.ids() == ["m2"]
            again = Spool(sp.root, 0, links=links).recover()  # idempotent
            assert again["fanout"] == 0 and again["orphans"] == 0 and again["tmp"] == 0, again
        finally:
            fwtest.rmtree(sp.root)


def test_a_free_space_reading_is_reused_and_read_afresh_near_the_reserve():
    """A board reuses a statvfs reading for compat.FREE_REUSE_MS, less what the
    spool wrote since (statvfs walks the whole of littlefs, docs/storage.md "Free
    space"): five messages, ten asks, one reading. Within one more reserve of the
    limit it asks afresh, so the refusal near full stays exact."""
    sp = new_spool("spfree")
    real, reuse = compat.disk_free, compat.FREE_REUSE_MS
    calls = []

    def counted(path):
        calls.append(path)
        return real(path)

    compat.disk_free = counted
    compat.FREE_REUSE_MS = 60000
    try:
        if real(sp.root) < 0:
            fwtest.skip("no statvfs on this runtime")
        for _ in range(5):
            assert sp.has_room(100)
            put(sp, b"x" * 998 + b"\r\n", [local("alice")])
        assert len(calls) == 1, calls
        left = sp._free - sp.flash.used()  # what the reading says is free now
        sp.reserve = left // 2 + 1  # less than one more reserve above it: asked afresh
        assert sp.has_room(0) and len(calls) == 2, calls
        sp.reserve = real(sp.root) + 1
        assert not sp.has_room(0) and len(calls) == 3, calls
        sp.reserve = 0
        compat.FREE_REUSE_MS = 0  # (a PC's: every ask reads)
        assert sp.has_room(0) and sp.has_room(0) and len(calls) == 5, calls
    finally:
        compat.disk_free, compat.FREE_REUSE_MS = real, reuse
        fwtest.rmtree(sp.root)


def test_reserve_refuses_before_anything_is_promised():
    sp = new_spool("sp8")
    try:
        free = compat.disk_free(sp.root)
        if free < 0:
            fwtest.skip("no statvfs on this runtime")
        assert sp.has_room(0)
        sp.reserve = free + (1 << 30)
        assert not sp.has_room(0)
        try:
            sp.writer()
            raise AssertionError("SpoolFull expected")
        except SpoolFull:
            pass
    finally:
        fwtest.rmtree(sp.root)


def test_full_mid_write_aborts_only_that_message():
    sp = new_spool("sp9")
    try:
        kept = put(sp, b"keep me\r\n", [local("alice")])
        sp.free = lambda need=0: 5000  # pretend only 5000 octets remain above the reserve
        w = sp.writer()
        try:
            for _ in range(100):
                w.write(b"x" * 100)
            raise AssertionError("SpoolFull expected")
        except SpoolFull:
            pass
        assert w.size <= 5000
        assert listing(sp, "tmp") == []
        md = sp.maildrops.open("alice")
        assert list(md.messages()) == [(kept, 9)]
        md.close()
    finally:
        fwtest.rmtree(sp.root)


def test_commit_without_recipients_is_refused():
    sp = new_spool("spa")
    try:
        w = sp.writer()
        w.write(b"x")
        try:
            w.commit("a@b", [])
            raise AssertionError("ValueError expected")
        except ValueError:
            pass
        assert listing(sp, "tmp") == []
    finally:
        fwtest.rmtree(sp.root)


def test_commit_refuses_maildrop_names_that_are_not_plain_names():
    sp = new_spool("spn")
    try:
        w = sp.writer()
        w.write(b"x\r\n")
        try:
            w.commit("a@b", [Route("local", "x@office.test", ["../../etc"])])
            raise AssertionError("ValueError expected")
        except ValueError:
            pass
        assert listing(sp, "tmp") == [] and listing(sp, "mail") == []
    finally:
        fwtest.rmtree(sp.root)


def _stream_big(sp, total, chunk):
    """Write `total` octets through a SpoolWriter and read them back, sampling the live heap
    (gc.collect() then gc.mem_alloc(), every 64 chunks) -> (peak, base) in octets."""
    buf = bytearray(chunk)
    for i in range(chunk):
        buf[i] = 0x41 + i % 26
    buf[chunk - 2] = 13
    buf[chunk - 1] = 10
    mv = memoryview(buf)
    compat.gc_collect()
    base = compat.mem_alloc()
    peak = base
    w = sp.writer()
    n = 0
    while n < total:
        k = min(chunk, total - n)
        w.write(buf if k == chunk else mv[:k])
        n += k
        if n % (chunk * 64) == 0:  # live heap while a message is open (garbage collected first)
            compat.gc_collect()
            peak = max(peak, compat.mem_alloc())
    mid = w.commit("big@isp.test", [local("alice")])
    md = sp.maildrops.open("alice")
    uid, size = md.messages()[0]
    assert uid == mid and size == total
    f = md.open_body(0)
    got = 0
    rb = bytearray(chunk)
    while True:
        k = f.readinto(rb)
        if not k:
            break
        if got % (chunk * 64) == 0:
            compat.gc_collect()
            peak = max(peak, compat.mem_alloc())
            if rb[0] != 0x41:
                raise AssertionError("corrupt at %d" % got)
        got += k
    f.close()
    md.expunge([0])
    md.close()
    assert got == total
    return peak, base


def test_50mb_message_streams_in_constant_heap():
    total = 50 * 1024 * 1024
    chunk = 4096
    sp = new_spool("spbig")
    try:
        free = compat.disk_free(sp.root)
        if 0 <= free < total * 2:
            fwtest.skip("needs 100 MB free in TMPDIR")
        t0 = compat.ticks_ms()
        peak, base = _stream_big(sp, total, chunk)
        ms = compat.ticks_diff(compat.ticks_ms(), t0)
        print("# 50 MB through writer+reader: peak heap %d B (start %d B, growth %d B), chunk %d, %d ms"
              % (peak, base, peak - base, chunk, ms))
        if compat.mem_free() >= 0:  # MicroPython: a fixed heap; growth must stay small
            assert peak - base < 16384, peak - base
    finally:
        fwtest.rmtree(sp.root)


def _wear(sp, routes, body):
    before = sp.flash.counts()
    put(sp, body, routes, chunk=512)
    after = sp.flash.counts()
    return dict([(k, after[k] - before[k]) for k in after])


def test_flash_writes_per_accepted_message():
    """docs/storage.md "Wear" quotes these figures (files created, renames, removes, links, bytes)."""
    body = b"x" * 998 + b"\r\n"
    for links in schemes():
        sp = new_spool("spw", links)
        try:
            put(sp, body, [local("alice", "bob", "carol")])  # the maildrops exist already
            one = _wear(sp, [local("alice")], body)
            assert one == {"created": 1, "renames": 1, "removes": 0, "links": 0, "bytes": 1000, "syncs": 1}, one
            three = _wear(sp, [local("alice", "bob", "carol")], body)
            out = _wear(sp, [remote("x@isp.test"), remote("y@isp.test")], body)
            mixed = _wear(sp, [local("alice"), remote("x@isp.test")], body)
            env = three["bytes"] - 1000
            print("# wear links=%s: 1 local %s | 3 local %s | 2 remote %s | 1 local+1 remote %s"
                  % (links, one, three, out, mixed))
            # one body; the envelope is the only other file written (~%d octets)
            assert three["bytes"] < 1000 + 400 and out["bytes"] < 1000 + 400, env
            assert three["created"] == (2 if links else 5) and three["renames"] == 2
            assert out["created"] == 2 and out["renames"] == 2 and out["removes"] == 0
            assert mixed["created"] == (2 if links else 3) and mixed["renames"] == 3
        finally:
            fwtest.rmtree(sp.root)


def test_record_update_cut_inside_a_remove_then_rename_replace_is_finished():
    """FAT cannot rename over a file: compat.replace removes first. A cut between
    leaves the complete new record in tmp/ and none in queue/; recovery installs it."""
    sp = new_spool("spr")
    try:
        mid = put(sp, b"x\r\n", [remote("a@isp.test")])
        rec = sp.queue.load(mid)
        rec.attempts = 3
        with open(sp.path("tmp", mid + ".q"), "w") as f:
            f.write(rec.to_json())
        os.remove(sp.path("queue", mid))
        sp = Spool(sp.root, 0)
        sp.recover()
        assert sp.queue.ids() == [mid] and sp.queue.load(mid).attempts == 3
        assert read(sp.queue.open_body(mid)) == b"x\r\n"
        # a torn update next to an intact record is just dropped
        with open(sp.path("tmp", mid + ".q"), "w") as f:
            f.write('{"id": "')
        sp = Spool(sp.root, 0)
        assert sp.recover()["tmp"] == 1 and sp.queue.load(mid).attempts == 3
    finally:
        fwtest.rmtree(sp.root)


def test_writer_gathers_small_pieces_into_large_flash_writes():
    """SpoolWriter hands flash write_size pieces whatever the caller's are (docs/storage.md
    "Writing"), and ENOSPC when the gathered octets go out at commit is SpoolFull, nothing kept."""
    sp = new_spool("spg")
    try:
        size = sp.write_size
        assert size == compat.io_buffer(1024), size
        sizes = []
        real = sp.flash.write

        def counted(f, data):
            sizes.append(len(data))
            real(f, data)

        sp.flash.write = counted
        body = bytearray(b"abcdefghij" * 300)  # 3000 octets in 7-octet pieces
        msg_id = put(sp, body, [local("alice")], chunk=7)
        assert sum(sizes) == 3000 and len(sizes) == (3000 + size - 7) // (size - 6), sizes
        assert min(sizes[:-1] or [size]) > size - 7, sizes
        md = sp.maildrops.open("alice")
        assert read(md.open_body(0), 512) == body and list(md.messages())[0][0] == msg_id
        md.close()
        del sizes[:]
        big = b"B" * (size + 1)  # a piece over the buffer goes straight to flash, after what is gathered
        w = sp.writer()
        w.write(b"xy")
        w.write(big)
        assert sizes == [2, size + 1], sizes
        w.abort()

        def full(f, data):
            raise OSError(28, "No space left on device")

        sp.flash.write = full
        w = sp.writer()
        w.write(b"small\r\n")  # gathered: flash not touched yet
        try:
            w.commit("a@isp.test", [local("alice")])
            raise AssertionError("SpoolFull expected")
        except SpoolFull:
            pass
        assert listing(sp, "tmp") == [] and len(listing(sp, "mail/alice")) == 1
    finally:
        fwtest.rmtree(sp.root)
