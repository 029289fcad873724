"""Retry schedule of the queue runner: backoff in wall time, tries counted per
online session, give-up after lifetime AND sessions, delay warning, unset clock.
Runs at 152K under MicroPython: the config has grown to 117 keys (ODMR and
POP3 multidrop), and with the real spool, the queue runner and a DSN being
written the 128K heap no longer has a 640-octet block in one piece (issue 15).
144K held until the maildrops learnt `holds` (the multidrop journal's "P"
lines, 3 December 2026; CI passed this file at 144K just before): since then
the DSN's header cleaning fails on a 640-octet block at 144K in every run, most
likely a new qstr pool of 640 names started by those names; 152K and 160K pass."""

from relayfake import NOW, done, maildrop, new_gw, queue, run

from dialgate import outq
from dialgate.retry import RetryPolicy

UPY_HEAP = "152K"


def test_4xx_retries_after_the_interval_and_counts_sessions():
    gw = new_gw("rl3")
    try:
        mid = queue(gw, ["bob@example.com", "carol@example.net"])
        gw.script[None] = {"replies": {"RCPT:bob@example.com": "451 4.3.0 try later"}}
        gw.relay.begin_session()
        run(gw)
        rec = gw.outq.load(mid)
        assert [r.state for r in rec.rcpts] == ["pending", "delivered"]
        assert rec.rcpts[0].reply == "451 4.3.0 try later"
        assert rec.attempts == 1 and rec.sessions == 1
        assert rec.next_attempt == NOW + 1800  # RFC 5321 §4.5.4.1: 30 minutes
        assert gw.relay.due(NOW + 1799) == [] and gw.relay.due(NOW + 1800) == [mid]
        run(gw, NOW + 1800)  # same online session: one more try, no new session counted
        rec = gw.outq.load(mid)
        assert rec.attempts == 2 and rec.sessions == 1
        assert rec.next_attempt == NOW + 1800 + 3600  # backoff doubles
        gw.relay.begin_session()
        run(gw, NOW + 5400)
        rec = gw.outq.load(mid)
        assert rec.attempts == 3 and rec.sessions == 2
        assert gw.servers[-1].commands.count("RCPT TO:<carol@example.net>") == 0  # delivered ones not retried
        gw.script[None] = {}
        gw.relay.begin_session()
        run(gw, NOW + 5400 + 7200)
        assert gw.outq.ids() == []
        assert maildrop(gw) == []  # no bounce, no warning (warn_after 4 h not reached)
    finally:
        done(gw)


def test_give_up_needs_lifetime_and_sessions():
    gw = new_gw("rl5")
    try:
        mid = queue(gw, ["bob@example.com"])
        gw.script[None] = {"replies": {"RCPT": "450 4.2.0 mailbox busy"}}
        rec = gw.outq.load(mid)
        rec.created = NOW - 6 * 86400  # older than the 5-day lifetime, but never tried
        gw.outq.save(rec)
        gw.relay.begin_session()
        run(gw)
        assert gw.outq.load(mid).sessions == 1  # still queued: an offline office keeps its tries
        for k in (1, 2):
            gw.relay.begin_session()
            gw.due_now(mid)
            run(gw, NOW + k)
        rec = gw.outq.load(mid)
        assert rec.sessions == 3
        gw.relay.begin_session()
        gw.due_now(mid)
        run(gw, NOW + 10)
        assert gw.outq.ids() == []
        dsns = maildrop(gw)
        warn = [d for d in dsns if b"Action: delayed" in d]
        fail = [d for d in dsns if b"Action: failed" in d]
        assert len(warn) == 1  # one delay warning (age > 4 h after the first try), never repeated
        assert len(fail) == 1 and b"Status: 4.4.7" in fail[0]
        assert b"gave up after 3 tries in 3 online sessions" in fail[0]
        assert gw.relay.state.bounced == 1
    finally:
        done(gw)


def test_unset_clock_tries_once_per_session():
    gw = new_gw("rl8")
    try:
        mid = queue(gw, ["bob@example.com"])
        rec = gw.outq.load(mid)
        rec.created = 1000  # accepted before the clock was set
        gw.outq.save(rec)
        gw.script[None] = {"replies": {"RCPT": "451 4.3.0 later"}}
        gw.relay.begin_session()
        run(gw, 2000)
        assert gw.outq.load(mid).attempts == 1
        assert gw.relay.due(2001) == []  # tried in this session already
        gw.relay.begin_session()
        assert gw.relay.due(2002) == [mid]
        run(gw, NOW)  # the clock is set now: age counts from here
        assert gw.outq.load(mid).created == NOW
    finally:
        done(gw)


def test_retry_policy():
    p = RetryPolicy(1800, 14400, 432000, 3, 14400)
    assert [p.next_attempt(k, 0) for k in (1, 2, 3, 4, 5, 9)] == [1800, 3600, 7200, 14400, 14400, 14400]
    assert not p.expired(NOW - 432000, 2, NOW) and p.expired(NOW - 432000, 3, NOW)
    assert not p.expired(NOW - 431999, 9, NOW)
    assert not p.expired(100, 99, NOW)  # unset clock at creation: never by age
    assert not p.warn_due(NOW - 20000, 0, NOW) and p.warn_due(NOW - 20000, 1, NOW)
    assert not RetryPolicy(warn_after=0).warn_due(NOW - 10**6, 5, NOW)
    assert outq.PENDING == "pending"
