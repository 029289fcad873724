"""Console commands of the outbound queue (queue list/show/retry/delete/flush,
stats) over a real spool; the link-down rule for `queue flush`."""

import asyncio

from relayfake import done, new_gw, queue, run

from dialgate import queue_console
from dialgate.console import Commands


def console_gw(tag):
    gw = new_gw(tag)
    gw.commands = Commands()
    queue_console.add_commands(gw.commands)
    return gw


def test_console_commands():
    gw = console_gw("rlb")
    try:
        a = queue(gw, ["bob@example.com", "carol@example.net"])
        b = queue(gw, ["dave@example.com"])
        out = gw.console("queue list")
        assert out[-1] == "OK" and out[-2] == "2 message(s) queued"
        assert out[0].startswith(a) and "<alice@office.test> 2/2 pending" in out[0]
        out = gw.console("queue show " + a)
        assert "rcpt <bob@example.com> pending, 0 tries" in out
        assert gw.console("queue show nope")[-1] == "ERR no queued message nope"
        assert gw.console("queue delete " + b)[-1] == "OK"
        assert gw.outq.ids() == [a]
        gw.script[None] = {"replies": {"RCPT:bob@example.com": "452 4.2.2 full"}}
        gw.relay.new_session()
        run(gw)
        out = gw.console("queue show " + a)
        assert "rcpt <bob@example.com> pending, 1 tries: 452 4.2.2 full" in out
        assert "rcpt <carol@example.net> delivered, 1 tries: 250 2.0.0 queued" in out
        out = gw.console("stats")
        assert out[:3] == ["delivered: 1", "deferred: 1", "bounced: 0"]
        assert out[3] == "queued: 1"
        assert gw.console("queue retry " + a)[0].startswith("1 message(s) due now")
        assert gw.outq.load(a).next_attempt == 0
        assert gw.console("queue retry")[-1].startswith("ERR usage")
    finally:
        done(gw)


def test_link_down_means_no_run():
    gw = console_gw("rla")
    try:
        queue(gw, ["bob@example.com"])
        gw.link.up = False
        assert gw.console("queue flush")[-1].startswith("ERR link is down")
        asyncio.run(gw.relay.tick())
        assert gw.servers == []
        gw.link.up = True
        assert gw.console("queue flush")[-1] == "OK"
        asyncio.run(gw.relay.tick())  # link came up: new session, kicked: run
        assert gw.relay.state.session == 1
        assert len(gw.servers) == 1 and gw.outq.ids() == []
    finally:
        done(gw)
