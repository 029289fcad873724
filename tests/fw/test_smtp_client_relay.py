"""relay: the queue runner over a real spool and a fake smarthost (no sockets):
per-recipient outcomes, retry schedule in wall time and online sessions,
bounces and delay warnings into the sender's maildrop, console commands.

Runs at 192K under MicroPython (issue 15 finding): the bounce test holds the
spool, the queue run, the relay and the DSN writer at once, and at 128K it
fails allocating 640 octets in bounce._clean with ~17 KB free in pieces of at
most 896 octets (micropython.mem_info()); 144K and 160K fail the same way
after unrelated firmware changes move the heap's layout, 176K passes."""


from relayfake import done, maildrop, new_gw, queue, run

UPY_HEAP = "192K"


def test_batch_delivered_over_one_connection():
    gw = new_gw("rl1")
    try:
        for i in range(5):
            queue(gw, ["bob@example.com", "carol@example.net"])
        gw.relay.begin_session()
        run(gw)
        assert len(gw.servers) == 1
        srv = gw.servers[0]
        assert len(srv.messages) == 5
        assert srv.messages[0][2].endswith(b"hello\r\n.dot\r\n")
        assert srv.messages[0][1] == ["bob@example.com", "carol@example.net"]
        assert gw.outq.ids() == []
        st = gw.relay.state
        assert (st.delivered, st.deferred, st.bounced) == (10, 0, 0)
        assert "10 delivered" in gw.relay.last_run
    finally:
        done(gw)


def test_5xx_bounces_that_recipient_only():
    gw = new_gw("rl2")
    try:
        mid = queue(gw, ["bob@example.com", "nobody@example.com", "carol@example.net"])
        gw.script[None] = {"replies": {"RCPT:nobody@example.com": "550 5.1.1 <nobody@example.com>: no such user"}}
        gw.relay.begin_session()
        run(gw)
        assert gw.outq.ids() == []  # nothing pending: the record is gone
        dsns = maildrop(gw)
        assert len(dsns) == 1
        d = dsns[0]
        assert b"Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1" in d
        assert b"bob@example.com\r\nAction" not in d
        assert b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: no such user" in d
        assert ("X-Dialgate-Queue-ID: %s" % mid).encode() in d
        assert b"Subject: test" in d  # the original header
        st = gw.relay.state
        assert (st.delivered, st.bounced) == (2, 1)
    finally:
        done(gw)


def test_null_sender_is_never_bounced():
    gw = new_gw("rl6")
    try:
        queue(gw, ["bob@example.com"], sender="")
        gw.script[None] = {"replies": {"RCPT": "550 5.1.1 no"}}
        gw.relay.begin_session()
        run(gw)
        assert gw.outq.ids() == []
        assert maildrop(gw) == []
        assert gw.servers[0].commands[0] == "MAIL FROM:<>"
    finally:
        done(gw)
