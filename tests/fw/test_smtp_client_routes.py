"""relay, SIZE and MX routes: the queue runner over a real spool and a fake smarthost:
per-recipient outcomes, retry schedule in wall time and online sessions,
bounces and delay warnings into the sender's maildrop, console commands.
Runs at 176K under MicroPython (128K to 160K fail on one 640-octet block): the config has grown to 117 keys (ODMR and
POP3 multidrop), and with the real spool, the queue runner and a DSN being
written the 128K heap no longer has a 640-octet block in one piece (issue 15)."""


from relayfake import done, maildrop, new_gw, queue, run

UPY_HEAP = "176K"


def test_size_limit_bounces_without_sending():
    gw = new_gw("rl7")
    try:
        queue(gw, ["bob@example.com"], body=b"Subject: big\r\n\r\n" + b"y" * 500 + b"\r\n")
        queue(gw, ["carol@example.net"])
        gw.script[None] = {"size": 200}
        gw.relay.begin_session()
        run(gw)
        assert len(gw.servers[0].messages) == 1
        d = maildrop(gw)
        assert len(d) == 1 and b"Status: 5.3.4" in d[0]
    finally:
        done(gw)


def test_mx_route_one_connection_per_domain():
    gw = new_gw("rl9", {"relay.route": "mx", "relay.tls": "opportunistic", "relay.user": ""})
    gw.relay.resolve_mx = lambda d: ["mx1." + d, "mx2." + d]
    try:
        queue(gw, ["bob@example.com", "carol@example.net"])
        queue(gw, ["dave@example.com"])
        gw.script["mx1.example.net"] = OSError("no route to host")  # the next MX takes over
        gw.relay.begin_session()
        run(gw)
        hosts = [s.host for s in gw.servers]
        assert hosts == ["mx1.example.com", "mx2.example.net"]
        assert gw.relay.policy is None and gw.relay.rbuf is None  # nothing of the run stays for the call
        assert len(gw.servers[0].messages) == 2 and len(gw.servers[1].messages) == 1
        assert gw.outq.ids() == []
    finally:
        done(gw)


def test_mx_route_counts_one_try_per_run():
    gw = new_gw("rlc", {"relay.route": "mx", "relay.tls": "opportunistic", "relay.user": ""})
    gw.relay.resolve_mx = lambda d: ["mx." + d]
    try:
        mid = queue(gw, ["bob@example.com", "carol@example.net"])
        gw.script[None] = {"replies": {"RCPT": "451 4.3.0 later"}}
        gw.relay.begin_session()
        run(gw)
        assert len(gw.servers) == 2  # one connection per domain
        rec = gw.outq.load(mid)
        assert rec.attempts == 1 and rec.sessions == 1
        assert [r.attempts for r in rec.rcpts] == [1, 1]
    finally:
        done(gw)
