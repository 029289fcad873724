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
        assert ok and lines[0] == "no calls logged yet" and lines[1:4] == ["delivered: 0", "deferred: 0", "bounced: 0"], lines
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


def test_lan_client_to_gateway_to_postfix(tmp_path):
    """The whole outbound path: an office PC submits over SMTP to the gateway
    (smtplib from the LAN), the gateway spools it, the runner relays it to the
    ISP's Postfix with STARTTLS + AUTH; the body arrives unchanged."""
    import email
    import smtplib

    from host_tools import isp_postfix
    from host_tools.isp_postfix import IspPostfix, strip_trace

    isp_postfix.require()
    isp = IspPostfix(mailboxes=("bob@example.com",)).start()
    try:
        over = {"link": {"type": "always-on"},
                "relay": {"smarthost": f"127.0.0.1:{isp.ports['submission']}", "ca_file": isp.ca_file,
                          "tls_name": "isp.test", "user": "gw", "password": "secret"}}
        gw = Gateway(tmp_path, over)
        try:
            body = (b"From: alice@office.test\r\nTo: bob@example.com\r\nSubject: from the LAN\r\n"
                    b"Message-ID: <lan1@office.test>\r\nDate: Sun, 22 Nov 2026 05:00:00 +0000\r\n\r\n"
                    b".starts with a dot\r\nplain line\r\n")
            with smtplib.SMTP("127.0.0.1", gw.smtp_port) as s:
                s.sendmail("alice@office.test", ["bob@example.com"], body)
            got = isp.wait_delivered(1, timeout=30)
            data = got[0].read_bytes()
            assert email.message_from_bytes(data)["Message-ID"] == "<lan1@office.test>"
            # the gateway adds its Received: line on top, Postfix its own; the rest is ours
            assert strip_trace(data).endswith(body.replace(b"\r\n", b"\n"))
            ok, lines, _ = gw.command("stats")
            assert "delivered: 1" in lines and "queued: 0" in lines, lines
        finally:
            gw.stop()
    finally:
        isp.stop()
