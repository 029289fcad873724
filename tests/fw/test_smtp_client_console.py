"""Console commands of the outbound queue (queue list/show/retry/delete/flush)
over a real spool; `queue flush` and `queue retry` ask the session owner.

Runs at 176K under MicroPython (issue 15 finding): a queue run and the queue
console at once; at 128K and 136K `queue show` fails allocating 640 octets
(a dict's table, likely sys.modules growing with the lazy import) in a heap
whose free space is in smaller pieces; 144K passed. Since December 3 (compat's
CPython message reader, the console's `memory`) 160K fails the same way, in
`queue show`'s import of retry, and 168K passes: the test sits where a few
hundred octets of boot code move the holes. On December 4 CI failed it at 168K
while 152K passed here: the tests ran as `micropython upyrun.py` from the
checkout, so every module's __file__ was a qstr of the whole host path, and the
CI clone's path was longer. They now run as a board does (upy_test.board_cmd,
modules load as `dialgate/x.mpy`): 152K passes and 144K fails in either place.
On December 7 the console's and net's out-of-memory handling (about 200
octets of .mpy, loaded at boot) tipped `queue show` at 168K (a MemoryError in
its reply, 3 of 3 runs); 176K passes."""

from relayfake import done, new_gw, queue, run

UPY_HEAP = "176K"


class Sessions:
    """session_run.SessionRunner as the queue commands see it."""

    current = None


def with_console(gw):
    """The queue console (imported here, not by the module: heap for a queue run first)."""
    from dialgate import queue_console
    from dialgate.console import Commands

    gw.commands = Commands()
    queue_console.add_commands(gw.commands)
    return gw


def console_gw(tag):
    gw = with_console(new_gw(tag))
    gw.sessions = Sessions()
    gw.asked = []
    gw.request_session = gw.asked.append
    return gw


def test_console_commands():
    gw = console_gw("rlb")
    try:
        a = queue(gw, ["bob@example.com", "carol@example.net"])
        b = queue(gw, ["dave@example.com"])
        out = gw.console("queue list")
        assert out[-1] == "OK" and out[-2] == "2 message(s) queued"
        # mailq's columns: id, age, size, sender, first recipient and how many more
        assert out[0].startswith(a) and "<alice@office.test> -> <bob@example.com> and 1 more, 2/2 pending" in out[0]
        assert "<dave@example.com>, 1/1 pending, 0 tries, next now" in out[1] and "last:" not in out[1]
        rec = gw.outq.load(a)
        rec.rcpts[1].reply = "451 4.3.0 try later"
        rec.rcpts[1].attempts = rec.attempts = 1
        gw.outq.save(rec)
        assert gw.console("queue list")[0].endswith("2/2 pending, 1 tries, next now; last: 451 4.3.0 try later")
        out = gw.console("queue show " + a)
        assert "rcpt <bob@example.com> pending, 0 tries" in out
        assert "rcpt <carol@example.net> pending, 1 tries: 451 4.3.0 try later" in out
        i = out.index("headers:")
        assert out[i + 1:] == ["  Subject: test", "  Message-ID: <0@office.test>", "OK"], out
        assert gw.console("queue show nope")[-1] == "ERR no queued message nope"
        assert gw.console("queue delete " + b)[-1] == "OK"
        assert gw.outq.ids() == [a]
        assert gw.console("queue retry " + a)[0].startswith("1 message(s) due now")
        assert gw.outq.load(a).next_attempt == 0
        assert gw.console("queue retry")[-1].startswith("ERR usage")
    finally:
        done(gw)


def test_queue_show_bounds_the_header():
    gw = console_gw("rld")
    try:
        long = b"X-Long: " + b"y" * 300 + b"\r\n"
        hdr = b"Subject: caf\xc3\xa9\r\n Folded\r\n" + long + b"".join([b"X-%d: v\r\n" % i for i in range(50)])
        a = queue(gw, ["bob@example.com"], body=hdr + b"\r\nbody\r\n")
        out = gw.console("queue show " + a)
        h = out[out.index("headers:") + 1:-1]
        assert h[:3] == ["  Subject: caf??", "   Folded", "  X-Long: " + "y" * 192], h[:3]
        assert len(h) == 41 and h[-1] == "  ... (more header lines not shown)", h[-3:]
        b = queue(gw, ["bob@example.com"], body=b"Subject: only a header\r\n")
        out = gw.console("queue show " + b)
        assert out[-3:] == ["headers:", "  Subject: only a header", "OK"], out
    finally:
        done(gw)


def test_a_run_leaves_per_recipient_outcomes_for_queue_show():
    # a test of its own, without the console: a queue run's code and the
    # console's at once do not fit the 128K heap of the 64-bit port
    gw = new_gw("rlc")
    try:
        a = queue(gw, ["bob@example.com", "carol@example.net"])
        gw.script[None] = {"replies": {"RCPT:bob@example.com": "452 4.2.2 full"}}
        gw.relay.begin_session()
        run(gw)
        rec = gw.outq.load(a)  # what `queue show` prints, line by line
        rows = [(r.address, r.state, r.attempts, r.reply) for r in rec.rcpts]
        assert rows == [("bob@example.com", "pending", 1, "452 4.2.2 full"),
                        ("carol@example.net", "delivered", 1, "250 2.0.0 queued")], rows
        st = gw.relay.state  # what `stats` prints under the calls (test_costlog.py)
        assert (st.delivered, st.deferred, st.bounced, len(gw.outq.ids())) == (1, 1, 0, 1)
    finally:
        done(gw)


def test_queue_flush_and_retry_ask_the_session_owner():
    gw = console_gw("rla")
    try:
        a = queue(gw, ["bob@example.com"])
        rec = gw.outq.load(a)
        rec.next_attempt = 1900000000  # deferred: not due
        gw.outq.save(rec)
        assert gw.console("queue retry all")[0] == "1 message(s) due now; they go at the next call (dial calls now)"
        assert gw.asked == [] and gw.outq.load(a).next_attempt == 0
        assert gw.console("queue flush") == ["1 message(s) due now; call requested", "OK"]
        assert gw.asked == ["queue flush"]
        gw.sessions.current = object()  # a call in progress takes what is due
        assert gw.console("queue flush")[0] == "1 message(s) due now; they go in the call in progress"
        assert gw.asked == ["queue flush"] and gw.servers == []  # the console never flushes itself
    finally:
        done(gw)
