"""An outbound queue record that cannot be read is set aside once (spool/corrupt/,
with its message), logged once, counted for `status`, and no longer looks due:
before, every queue run skipped it silently and the scheduler saw it as due mail."""

import os

import fwtest
from dialgate import log
from dialgate.delivery import Route
from dialgate.spool import Spool


def spool_with_one_remote(tag):
    d = fwtest.tempdir(tag)
    sp = Spool(d, 0)
    sp.recover()
    w = sp.writer()
    w.write(b"Subject: kept\r\n\r\nthe body stays\r\n")
    mid = w.commit("alice@office.test", [Route("remote", "bob@example.com", [])])
    return d, sp, mid


SEEN = []


def errors():
    return [x for x in SEEN if "cannot be read" in x[0]]


def watch_log():
    """Keep log.error's lines (the test gateway has no log file to read back)."""
    if not getattr(log.error, "watched", False):
        real = log.error

        def error(fmt, *args):
            SEEN.append((fmt, args))
            real(fmt, *args)

        error.watched = True
        log.error = error


def test_unreadable_record_is_set_aside_with_its_message_once():
    d, sp, mid = spool_with_one_remote("cor")
    try:
        with open(sp.path("queue", mid), "wb") as f:
            f.write(b"{\"id\": \"" + mid.encode() + b"\", \"rcpts\": [[")  # torn: not JSON
        watch_log()
        before = len(errors())
        sp = Spool(d, 0)  # a reboot
        sp.recover()
        q = sp.queue
        assert q.ids() == [] and q.due(2000000000) == []  # nothing due: no call made for it
        assert sorted(os.listdir(sp.path("corrupt"))) == sorted([mid, mid + ".body"])
        with open(sp.path("corrupt", mid + ".body"), "rb") as f:
            assert f.read().endswith(b"the body stays\r\n")  # the message is kept
        assert sp.corrupt == 1 and len(errors()) == before + 1
        sp = Spool(d, 0)  # and again: counted, not logged again, body not freed as an orphan
        sp.recover()
        assert sp.queue.ids() == [] and sp.corrupt == 1 and len(errors()) == before + 1
        assert os.listdir(sp.path("body")) == []
    finally:
        fwtest.rmtree(d)


def test_a_record_that_goes_bad_later_is_set_aside_at_load():
    d, sp, mid = spool_with_one_remote("cos")
    try:
        q = sp.queue
        assert q.ids() == [mid]
        with open(sp.path("queue", mid), "wb") as f:
            f.write(b"[1, 2]")  # JSON, but not a record
        try:
            q.load(mid)
            raise AssertionError("loaded a broken record")
        except KeyError:
            pass
        assert q.ids() == [] and sp.corrupt == 1 and mid in os.listdir(sp.path("corrupt"))
    finally:
        fwtest.rmtree(d)


def test_an_id_that_is_a_path_is_no_record_and_moves_nothing():
    """`queue show ../body/ID` at the console: before, queue/../body/ID (the
    queued message's own body) was "a record that cannot be read", and setting
    it aside renamed that body to ID.body, out of reach of the next queue run."""
    d, sp, mid = spool_with_one_remote("coi")
    try:
        q = sp.queue
        for bad in ("../body/" + mid, "..", ".", sp.path("body", mid), "x" * 65, ""):
            try:
                q.load(bad)
                raise AssertionError("loaded %r" % bad)
            except KeyError:
                pass
        assert sp.corrupt == 0 and os.listdir(sp.path("body")) == [mid]
        assert q.load(mid).id == mid and q.ids() == [mid]
        f = q.open_body(mid)
        try:
            assert f.read().endswith(b"the body stays\r\n")
        finally:
            f.close()
    finally:
        fwtest.rmtree(d)
