"""The dial session's phase machine (session.DialSession) as transcripts: every
event in, the action out, on a fake clock; then its driver (session_run) over a
fake link and the fake smarthost of relayfake. Every failure ends in HANGUP."""

from dialgate import session as S
from dialgate.session import COLLECT, DIAL, DONE, FLUSH, HANGUP

OPTS = {"session.idle_hangup": 30, "session.min_online": 20, "session.max_online": 900,
        "session.etrn": ["office.test"], "isp.odmr.host": "", "isp.pop3.host": ""}
NOW = 1800000000


def new(etrn=True, **over):
    o = dict(OPTS)
    if not etrn:
        o["session.etrn"] = []
    for k in over:
        o["session." + k] = over[k]
    s = S.DialSession(o, 7, "queue", "1 due message", 0, NOW)
    assert s.start() == DIAL and s.phase == S.DIALLING
    return s


def online(s, t=12000):
    """Dialled, connected: the first flush carries the ETRN."""
    assert s.dialled("up", 33600, ["CONNECT 33600/ARQ/V34"], t) == FLUSH
    assert s.etrn_now == (["office.test"] if s.etrn else None)
    return t


def test_a_good_call_end_to_end():
    s = new()
    t = online(s)
    assert s.phase == S.FLUSHING and s.record["dials"] == ["CONNECT 33600/ARQ/V34"] and s.record["speed"] == 33600
    assert s.tick(t + 1000, True, t + 1000, False, True) is None  # flushing (busy)
    t = 20000
    assert s.flushed(3, "", [(250, b"2.0.0 queuing started")], t) is None
    assert s.phase == S.LINGERING and s.record["ask"] == "ETRN 250" and s.record["msgs_out"] == 3
    # the ISP delivers: activity keeps the line up
    assert s.tick(t + 25000, True, t + 24000, False, False) is None
    last = t + 40000
    assert s.tick(last + 29000, True, last, False, False) is None  # quiet 29 s < 30
    assert s.tick(last + 30000, True, last, False, False) == HANGUP
    assert s.record["end"] == "idle" and s.phase == S.HANGING_UP
    assert s.tick(last + 31000, True, last, False, False) is None  # asked once
    assert s.hung_up(last + 32000, 5000, 9000, 4) == DONE
    r = s.record
    assert (r["online"], r["bytes_in"], r["bytes_out"], r["msgs_in"], r["ok"]) == (80, 5000, 9000, 4, True), r
    assert s.ok and r["n"] == 7 and r["start"] == NOW and r["trigger"] == "queue"


def test_every_dial_failure_hangs_up_and_fails():
    for outcome in ("busy", "no-dialtone", "no-answer", "no-carrier", "silent", "no-modem", "ppp-failed",
                    "no-port", "failed"):
        s = new()
        assert s.dialled(outcome, 0, ["busy", outcome], 3000) == HANGUP, outcome
        assert s.failure == outcome and s.record["end"] == outcome and s.record["dials"] == ["busy", outcome]
        assert s.hung_up(3500, 0, 0, 0) == DONE
        assert s.record["ok"] is False and s.record["online"] == 0


def test_idle_hangup_waits_for_min_online_after_the_ask():
    s = new(idle_hangup=5, min_online=20)
    t = online(s)
    assert s.flushed(0, "", [(250, b"ok")], t) is None
    assert s.tick(t + 10000, True, t, False, False) is None  # quiet 10 s, but the ISP had only 10 s
    assert s.tick(t + 20000, True, t, False, False) == HANGUP


def test_mail_queued_while_online_goes_in_the_same_call():
    s = new()
    t = online(s)
    s.flushed(0, "", [(250, b"ok")], t)
    assert s.tick(t + 1000, True, t, True, False) == FLUSH and s.etrn_now is None
    assert s.flushed(1, "", [], t + 3000) is None and s.phase == S.LINGERING
    assert s.record["msgs_out"] == 1 and s.record["ask"] == "ETRN 250"  # the ask is not repeated


def test_etrn_4xx_is_asked_again_then_given_up():
    s = new()
    t = online(s)
    assert s.flushed(0, "", [(458, b"4.0.0 unable to queue")], t) is None
    assert s.phase == S.ASKING and s.record["ask"] == "ETRN 458"
    assert s.tick(t + 4000, True, t, False, False) is None  # the pause between tries
    assert s.tick(t + 5000, True, t, False, False) == FLUSH and s.etrn_now == ["office.test"]
    assert s.flushed(0, "", [], t + 6000) is None and s.record["ask"] == "ETRN not sent"
    assert s.tick(t + 11000, True, t, False, False) == FLUSH
    assert s.flushed(0, "", [(459, b"4.7.0 not now")], t + 12000) is None
    assert s.phase == S.LINGERING and s.failure == "ETRN 459"  # 3 tries: the call failed its ask


def test_etrn_answered_on_a_later_try():
    s = new()
    t = online(s)
    s.flushed(0, "", [(451, b"later")], t)
    assert s.tick(t + 5000, True, t, False, False) == FLUSH
    assert s.flushed(0, "", [(250, b"queuing started")], t + 6000) is None
    assert s.phase == S.LINGERING and s.ok and s.record["ask"] == "ETRN 250"


def test_etrn_5xx_is_not_asked_again_and_is_named():
    s = new()
    t = online(s)
    assert s.flushed(2, "", [(501, b"5.5.4 bad domain")], t) is None
    assert s.phase == S.LINGERING and s.ok  # asking again will not help; the queue went out
    assert s.record["ask"] == "ETRN 501 (refused: check session.etrn)"


def test_smarthost_unreachable_hangs_up_at_once():
    s = new()
    t = online(s)
    err = "127.0.0.1:2526: 0 [Errno 111] connection refused"
    assert s.flushed(0, err, [], t) is None  # ETRN not sent: ask again
    for k in (1, 2):
        assert s.tick(t + 5000 * k, True, t, False, False) == FLUSH
        act = s.flushed(0, err, [], t + 5000 * k)
    assert act == HANGUP and s.record["end"] == "smarthost unreachable"
    assert s.failure == "smarthost unreachable: " + err
    s = new(etrn=False)
    online(s)
    assert s.flushed(0, err, [], t) == HANGUP and not s.ok  # no ask phase: nothing to wait for


def test_carrier_lost_in_every_online_phase():
    for where in ("flushing", "asking", "lingering"):
        s = new()
        t = online(s)
        if where != "flushing":
            s.flushed(0, "", [(450 if where == "asking" else 250, b"x")], t)
        assert s.phase == where
        assert s.tick(t + 2000, False, t, False, where == "flushing") == HANGUP, where
        assert s.record["end"] == "carrier lost" and s.failure == "carrier lost while " + where
        # the flush the drop interrupted comes back afterwards: nothing more to do
        assert s.flushed(1, "connection lost", [], t + 2500) is None
        assert s.hung_up(t + 3000, 100, 200, 0) == DONE and s.record["ok"] is False
        assert s.record["msgs_out"] == 1  # what did get its 250 is counted


def test_one_deadline_for_the_whole_call():
    s = new(max_online=60)
    assert s.tick(59999, False, 0, False, True) is None  # still dialling
    assert s.tick(60000, False, 0, False, True) == HANGUP
    assert s.record["end"] == "max_online" and s.failure == "max_online before the work was done"
    # the dial the deadline cut short reports in afterwards: the line stays down
    assert s.dialled("stopped", 0, [], 60500) == HANGUP and s.record["dials"] == ["stopped"]
    s = new(max_online=60)
    t = online(s, 10000)
    s.flushed(0, "", [(250, b"ok")], t)
    assert s.tick(59000, True, 58990, False, False) is None  # the ISP still delivering
    assert s.tick(60000, True, 59990, False, False) == HANGUP
    assert s.record["end"] == "max_online" and s.ok  # the work was done; the rest waits for the next call


def test_operator_hangup_in_any_phase():
    s = new()
    assert s.stop("operator") == HANGUP and s.record["end"] == "operator"
    assert s.stop("operator") is None  # already hanging up
    assert s.dialled("up", 33600, [], 1000) == HANGUP  # the dial it interrupted: hang up, no flush
    s = new()
    t = online(s)
    assert s.stop("operator") == HANGUP
    assert s.flushed(1, "", [(250, b"ok")], t + 1000) is None and s.phase == S.HANGING_UP
    assert s.hung_up(t + 2000, 1, 2, 0) == DONE and s.record["ok"] is True


def test_no_ask_phase_without_session_etrn():
    s = new(etrn=False, idle_hangup=10, min_online=0)
    t = online(s)
    assert s.flushed(4, "", [], t) is None and s.phase == S.LINGERING and s.record["ask"] == ""
    assert s.tick(t + 10000, True, t, False, False) == HANGUP and s.ok


def test_the_isp_greeting_date_sets_an_untrusted_clock():
    from dialgate import compat
    from dialgate.retry import parse_date, rfc5322_date

    t = parse_date("smtp.isp.test ESMTP Sendmail 8.18.1; Wed, 2 Dec 2026 10:00:00 +0100")
    assert rfc5322_date(t) == "Wed, 2 Dec 2026 09:00:00 +0000"
    assert parse_date("mx ESMTP; 2 Dec 26 09:00 -0030") == t + 30 * 60  # RFC 5322 §4.3 two-digit year, no seconds
    assert parse_date("isp.test ESMTP Postfix") == 0  # no date: the clock stays untrusted
    assert parse_date("2 Foo 2026 09:00:00 and 31 Dec x 1:2") == 0
    saved = list(compat._wall)
    try:
        step = compat.set_wall(compat.wall_time() + 3600)
        assert 3599 <= step <= 3601 and compat.clock_trusted()
        assert compat.wall_time() - parse_date(rfc5322_date(compat.wall_time())) == 0
    finally:
        compat._wall[0] = saved[0]
        compat._wall[1] = saved[1]


def test_odmr_asks_after_the_queue_and_etrn_then_lingers():
    s = new(etrn=False)
    s.collect = ["odmr"]  # isp.odmr.host set
    t = online(s)
    assert s.flushed(2, "", [], t + 5000) == COLLECT and s.phase == S.COLLECTING
    assert s.tick(t + 6000, True, t + 6000, False, True) is None  # collecting: busy
    assert s.collected([("ATRN", "reversed", 250, "OK now reversing")], t + 30000) is None
    assert s.phase == S.LINGERING and s.record["ask"] == "ATRN 250" and s.ok
    assert s.tick(t + 30000 + 31000, True, t + 30000, False, False) == HANGUP  # idle, min_online passed
    assert s.hung_up(t + 62000, 100, 200, 3) == DONE and s.record["ok"]


def test_odmr_453_is_success_451_and_530_fail_the_call():
    for how, code, ok in (("no mail", 453, True), ("retry", 451, False), ("refused", 530, False)):
        s = new()
        s.collect = ["odmr"]
        t = online(s)
        assert s.flushed(0, "", [(250, "queuing started")], t + 1000) == COLLECT
        s.collected([("ATRN", how, code, "text")], t + 2000)
        assert s.ok == ok, (code, s.failure)
        assert s.record["ask"] == "ETRN 250; ATRN %d%s" % (code, "" if ok else " (%s)" % how), s.record["ask"]
        if not ok:
            assert s.failure == "ATRN %d: text" % code


def test_carrier_lost_while_collecting_hangs_up():
    s = new(etrn=False)
    s.collect = ["odmr"]
    t = online(s)
    assert s.flushed(0, "", [], t + 1000) == COLLECT
    assert s.tick(t + 2000, False, t + 2000, False, True) == HANGUP
    assert s.failure == "carrier lost while collecting"
    assert s.collected([("ATRN", "retry", 0, "connection lost")], t + 3000) is None  # too late to matter


def test_pop3_multidrop_collects_after_odmr_and_says_how_many_are_left():
    s = new(etrn=False)
    s.collect = ["odmr", "pop3"]  # isp.odmr.host and isp.pop3.host set
    t = online(s)
    assert s.flushed(0, "", [], t + 1000) == COLLECT
    s.collected([("ATRN", "no mail", 453, "none"), ("POP3", "collected", 12, "3 left")], t + 2000)
    assert s.ok and s.record["ask"] == "ATRN 453; POP3 12 (3 left)", s.record["ask"]
    for how, n, text, ask in (("collected", 0, "", "POP3 0"), ("retry", 10, "connection lost", "POP3 10 (retry)"),
                              ("refused", 0, "login refused: check isp.pop3.user/password", "POP3 0 (refused)")):
        s = new(etrn=False)
        s.collect = ["pop3"]
        t = online(s)
        s.flushed(0, "", [], t + 1000)
        s.collected([("POP3", how, n, text)], t + 2000)
        assert s.record["ask"] == ask and s.ok == (how == "collected"), (s.record["ask"], s.failure)
        if how != "collected":
            assert s.failure == "POP3 %d: %s" % (n, text)
