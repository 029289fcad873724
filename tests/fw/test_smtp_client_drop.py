"""relay, connection failures: the queue runner over a real spool and a fake smarthost:
per-recipient outcomes, retry schedule in wall time and online sessions,
bounces and delay warnings into the sender's maildrop, console commands."""


from relayfake import NOW, done, maildrop, new_gw, queue, run


def test_connection_refused_and_loss_mid_data_leave_messages_pending():
    gw = new_gw("rl4")
    try:
        line = b"X-Long: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
        a = queue(gw, ["bob@example.com"], body=line, repeat=40)
        b = queue(gw, ["carol@example.net"], body=line, repeat=40)
        gw.script[None] = OSError("connection refused")
        gw.relay.begin_session()
        run(gw)
        for mid in (a, b):
            rec = gw.outq.load(mid)
            assert rec.rcpts[0].state == "pending" and "connection refused" in rec.rcpts[0].reply
            assert rec.attempts == 1 and rec.next_attempt == NOW + 1800
        # now the line drops in the middle of the first message's data
        gw.script[None] = {"drop_in_data": 0}
        for mid in (a, b):
            gw.due_now(mid)
        run(gw, NOW + 10)
        assert gw.servers[-1].in_data
        for mid in (a, b):
            rec = gw.outq.load(mid)
            assert rec.rcpts[0].state == "pending", rec.rcpts[0].reply
        assert gw.relay.state.delivered == 0 and gw.relay.state.bounced == 0
        assert maildrop(gw) == []
    finally:
        done(gw)


def test_counters_survive_a_restart():
    from dialgate.relay import Relay

    gw = new_gw("rl5")
    try:
        queue(gw, ["bob@example.com"])
        gw.relay.begin_session()
        run(gw)
        again = Relay(gw)  # as after a reboot: read back from SPOOL/relay.json
        assert again.state.delivered == 1
    finally:
        done(gw)
