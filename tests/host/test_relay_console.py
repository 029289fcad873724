"""The queue runner inside a real gateway process (CPython): console `queue list`,
`stats`, `queue show`, help; and a message already in the spool at start-up
relayed to a real Postfix by the runner over the always-on link."""

from __future__ import annotations

import time

from gateway import Gateway


def test_console_commands_in_a_running_gateway(tmp_path):
    gw = Gateway(tmp_path, {"relay": {"smarthost": "127.0.0.1:9"}})
    try:
        ok, lines, _ = gw.command("queue list")
        assert ok and lines[-1] == "0 message(s) queued", lines
        ok, lines, _ = gw.command("stats")
        assert ok and lines[:3] == ["delivered: 0", "deferred: 0", "bounced: 0"], lines
        ok, lines, _ = gw.command("queue show nope")
        assert not ok
        ok, lines, _ = gw.command("help queue retry")
        assert ok and lines[0] == "queue retry ID|all"
    finally:
        gw.stop()


def test_relay_to_postfix_from_a_running_gateway(tmp_path):
    from host_tools import isp_postfix
    from host_tools.isp_postfix import IspPostfix

    isp_postfix.require()
    isp = IspPostfix(mailboxes=("bob@example.com",)).start()
    try:
        from dialgate.delivery import Route
        from dialgate.spool import Spool

        spool = tmp_path / "spool"
        sp = Spool(str(spool), 0)
        sp.recover()
        w = sp.writer()
        w.write(b"From: alice@office.test\r\nTo: bob@example.com\r\nSubject: via gateway\r\n"
                b"Message-ID: <gw1@office.test>\r\n\r\n.hello\r\n")
        w.commit("alice@office.test", [Route("remote", "bob@example.com", [])])
        over = {"spool": {"path": str(spool)}, "link": {"type": "always-on"},
                "relay": {"smarthost": f"127.0.0.1:{isp.ports['submission']}", "ca_file": isp.ca_file,
                          "tls_name": "isp.test", "user": "gw", "password": "secret"}}
        gw = Gateway(tmp_path, over)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                ok, lines, _ = gw.command("stats")
                if "delivered: 1" in lines:
                    break
                time.sleep(0.3)
            assert "delivered: 1" in lines, (lines, gw.output()[-2000:])
            ok, lines, _ = gw.command("queue list")
            assert lines[-1] == "0 message(s) queued"
        finally:
            gw.stop()
        got = isp.wait_delivered(1)
        assert got[0].read_bytes().endswith(b"Message-ID: <gw1@office.test>\n\n.hello\n")
    finally:
        isp.stop()
