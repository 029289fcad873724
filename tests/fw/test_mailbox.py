"""Maildrops: snapshot listing, sizes, never-reused UIDs, exclusive lock, durable expunge."""

import os

import fwtest
from dialgate import compat
from dialgate.delivery import Route
from dialgate.mailbox import Locked
from dialgate.spool import Spool


def _spool(links=None):
    sp = Spool(fwtest.tempdir("mb"), 0, links=links)
    sp.recover()
    return sp


def _put(sp, users, body=b"Subject: x\r\n\r\nbody\r\n"):
    w = sp.writer()
    w.write(body)
    return w.commit("s@isp.test", [Route("local", users[0] + "@office.test", users)])


def test_sizes_are_octets_and_listing_is_a_snapshot():
    sp = _spool()
    try:
        a = _put(sp, ["alice"], b"a\r\n")
        b = _put(sp, ["alice", "bob"], b"bb\r\nbb\r\n")
        md = sp.maildrops.open("alice")
        assert list(md.messages()) == [(a, 3), (b, 8)]
        _put(sp, ["alice"])  # arrives during the session: not in this snapshot (RFC 1939 §8)
        assert len(md.messages()) == 2
        md.close()
        md = sp.maildrops.open("alice")
        assert len(md.messages()) == 3
        md.close()
    finally:
        fwtest.rmtree(sp.root)


def test_a_second_login_stats_only_what_is_new():
    """CPython: the sizes of the last listing are kept per maildrop (a stored
    message never changes and its id is never reused), so a mail client that
    polls with "leave on server" costs one stat per new message, not per
    message; what was deleted leaves the table. A board keeps none (its
    littlefs lists sizes; its heap has no room)."""
    sp = _spool()
    real = compat.file_size
    stats = []

    def counting(path):
        stats.append(path)
        return real(path)

    try:
        if compat.MICROPYTHON:
            assert sp.maildrops._sizes is None
            return
        a = _put(sp, ["alice"], b"a\r\n")
        b = _put(sp, ["alice", "bob"], b"bb\r\nbb\r\n")  # bob's copy may be a stub for body/
        compat.file_size = counting
        md = sp.maildrops.open("alice")
        assert list(md.messages()) == [(a, 3), (b, 8)]
        md.close()
        assert len(stats) == 2, stats
        del stats[:]
        c = _put(sp, ["alice"], b"ccc\r\n")
        md = sp.maildrops.open("alice")
        assert list(md.messages()) == [(a, 3), (b, 8), (c, 5)]
        assert len(stats) == 1 and stats[0].endswith(c), stats  # only the new one
        md.expunge([0])
        md.close()
        md = sp.maildrops.open("alice")
        assert list(md.messages()) == [(b, 8), (c, 5)]
        md.close()
        assert sorted(sp.maildrops._sizes["alice"]) == sorted(n for n, _ in compat.files_in(sp.mail_dir("alice")))
        md = sp.maildrops.open("bob")
        assert list(md.messages()) == [(b, 8)]
        md.close()
    finally:
        compat.file_size = real
        fwtest.rmtree(sp.root)


def test_lock_is_exclusive_and_released_by_close():
    sp = _spool()
    try:
        _put(sp, ["alice"])
        md = sp.maildrops.open("alice")
        try:
            sp.maildrops.open("alice")
            raise AssertionError("Locked expected")
        except Locked:
            pass
        other = sp.maildrops.open("bob")  # other maildrops are independent; empty is fine
        assert list(other.messages()) == []
        other.close()
        md.close()
        md.close()  # idempotent
        md = sp.maildrops.open("alice")
        md.close()
    finally:
        fwtest.rmtree(sp.root)


def test_a_crash_cannot_leave_a_lock_stuck():
    sp = _spool()
    try:
        _put(sp, ["alice"])
        held = sp.maildrops.open("alice")
        if compat.MICROPYTHON:
            # A reset empties the RAM lock table: a new gateway opens the maildrop.
            sp2 = Spool(sp.root, 0)
            sp2.recover()
            md = sp2.maildrops.open("alice")
            md.close()
        else:
            # Same process, second spool object: the OS lock is held -> Locked.
            sp2 = Spool(sp.root, 0)
            sp2.recover()
            try:
                sp2.maildrops.open("alice")
                raise AssertionError("Locked expected")
            except Locked:
                pass
            held.close()  # (process death does the same; tests/host/test_spool_crash.py kills one)
            md = sp2.maildrops.open("alice")
            md.close()
        held.close()
    finally:
        fwtest.rmtree(sp.root)


def test_uids_survive_restarts_and_are_never_reused():
    for links in [True, False] if compat.HAS_LINK else [False]:
        sp = _spool(links)
        try:
            first = [_put(sp, ["alice", "bob"]) for _ in range(3)]
            md = sp.maildrops.open("alice")
            assert [u for u, _ in md.messages()] == first
            md.expunge([2])  # delete the newest: its UID must never come back
            md.close()
            sp = Spool(sp.root, 0, links=links)
            sp.recover()
            later = _put(sp, ["alice"])
            md = sp.maildrops.open("alice")
            uids = [u for u, _ in md.messages()]
            md.close()
            assert uids == first[:2] + [later]
            assert later not in first
            md = sp.maildrops.open("bob")  # bob still has all three
            assert [u for u, _ in md.messages()] == first
            md.close()
        finally:
            fwtest.rmtree(sp.root)


def test_expunge_is_durable_and_only_touches_the_given_messages():
    sp = _spool()
    try:
        ids = [_put(sp, ["alice"], ("m%d\r\n" % i).encode()) for i in range(5)]
        md = sp.maildrops.open("alice")
        md.expunge([0, 3])
        md.close()
        md = sp.maildrops.open("alice")
        assert [u for u, _ in md.messages()] == [ids[1], ids[2], ids[4]]
        f = md.open_body(2)
        assert f.read(10) == b"m4\r\n"
        f.close()
        md.close()
    finally:
        fwtest.rmtree(sp.root)


def test_bad_user_names_are_refused():
    sp = _spool()
    try:
        for bad in ("", "../x", ".hidden", "a/b", "A" * 65, "Alice"):
            try:
                sp.maildrops.open(bad)
                raise AssertionError("ValueError expected for %r" % bad)
            except ValueError:
                pass
    finally:
        fwtest.rmtree(sp.root)


def test_remove_all_frees_shared_bodies():
    sp = _spool(False)
    try:
        _put(sp, ["alice", "bob"])
        _put(sp, ["alice", "bob"])
        sp.maildrops.remove_all("alice")
        assert "alice" not in sp.maildrops.users()
        assert len(os.listdir(sp.path("body"))) == 2  # bob still reads them
        sp.maildrops.remove_all("bob")
        assert os.listdir(sp.path("body")) == []
    finally:
        fwtest.rmtree(sp.root)


def test_snapshot_ram_per_message():
    """What a POP3 session holds per waiting message (printed; MicroPython heap only)."""
    sp = _spool()
    try:
        n = 300
        for _ in range(n):
            _put(sp, ["alice"], b"x\r\n")
        compat.gc_collect()
        before = compat.mem_alloc()
        md = sp.maildrops.open("alice")
        compat.gc_collect()
        held = compat.mem_alloc() - before
        assert len(md.messages()) == n and md.messages()[n - 1][1] == 3
        md.expunge(range(n))  # (so rmtree lists an empty directory: 300 names fragment a 128K heap)
        md.close()
        if compat.mem_free() >= 0:
            print("# maildrop snapshot of %d messages: %d B of heap (%d B a message)" % (n, held, held // n))
            assert held // n < 60
    finally:
        fwtest.rmtree(sp.root)
