"""The storage layer in a real gateway process: user/alias console commands, recovery at start,
persistence across a restart, and passwords kept out of the log (both runtimes)."""

from __future__ import annotations

import poplib

import pytest

from gateway import Gateway

RUNTIMES = ["cpython", "upy"]
PW = "Tr1cky-Passw0rd"
# The whole gateway (all features) does not fit 128K yet; this test is about storage, not heap.
HEAP = "512K"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_user_and_alias_commands_persist_and_never_log_passwords(tmp_path, runtime):
    spool = tmp_path / "spool"
    (spool / "tmp").mkdir(parents=True)
    (spool / "tmp" / "half-written").write_bytes(b"partial message")
    mpy = runtime == "upy"
    gw = Gateway(tmp_path, runtime=runtime, mpy=mpy, heap=HEAP)
    try:
        assert not (spool / "tmp" / "half-written").exists()  # recover() ran at start
        assert gw.command(f"user add alice {PW}") == (True, ["user alice added"], "OK")
        assert gw.command("user add bob Another-1")[0]
        assert gw.command("user add alice x")[2] == "ERR user alice exists"
        assert gw.command("user add ../etc pw")[2].startswith("ERR bad user name")
        assert gw.command("user del carol")[2] == "ERR no user carol"
        assert gw.command("alias add team alice bob") == (True, ["alias team -> alice bob"], "OK")
        assert gw.command("alias add ghost nobody")[2] == "ERR no user or alias nobody"
        ok, lines, _ = gw.command("user list")
        assert ok and lines[0].startswith("alice  0 messages") and "(APOP)" in lines[0]  # host: APOP on
    finally:
        gw.stop()
    gw = Gateway(tmp_path, runtime=runtime, mpy=mpy, heap=HEAP)
    try:
        ok, lines, _ = gw.command("user list")
        assert ok and [x.split()[0] for x in lines] == ["alice", "bob"]
        assert gw.command("alias list") == (True, ["team -> alice bob"], "OK")
        pop = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
        try:
            pop.user("alice")
            assert pop.pass_(PW).startswith(b"+OK")
            assert pop.stat() == (0, 0)
        finally:
            pop.quit()
        assert gw.command(f"user passwd alice {PW}2")[0]
        assert gw.command("user del bob") == (True, ["user bob deleted (0 messages removed)"], "OK")
    finally:
        gw.stop()
    logged = (tmp_path / "log" / "dialgate.log").read_text() + gw.output()
    assert "console: user add" in logged
    assert PW not in logged and "Another-1" not in logged
    assert PW not in (spool / "users.json").read_text()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_alias_fan_out_over_smtp_and_pop3_with_uids_stable_across_restart(tmp_path, runtime):
    import smtplib

    mpy = runtime == "upy"
    gw = Gateway(tmp_path, runtime=runtime, mpy=mpy, heap=HEAP)
    try:
        for u in ("alice", "bob"):
            assert gw.command(f"user add {u} Pw-{u}-1")[0]
        assert gw.command("alias add team alice bob")[0]
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=10) as s:
            s.sendmail("someone@isp.test", ["team@office.test"], b"Subject: for the team\r\n\r\nhello team\r\n")
            s.sendmail("someone@isp.test", ["alice@office.test"], b"Subject: only alice\r\n\r\nhi\r\n")
        uids = {}
        for u in ("alice", "bob"):
            pop = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
            try:
                pop.user(u)
                pop.pass_(f"Pw-{u}-1")
                uids[u] = [x.split()[1] for x in pop.uidl()[1]]
                body = b"\r\n".join(pop.retr(1)[1])
                assert b"hello team" in body
            finally:
                pop.quit()
        assert len(uids["alice"]) == 2 and len(uids["bob"]) == 1
        assert uids["bob"][0] == uids["alice"][0]  # one message, one UID, one body on flash
    finally:
        gw.stop()
    gw = Gateway(tmp_path, runtime=runtime, mpy=mpy, heap=HEAP)
    try:
        pop = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
        try:
            pop.user("alice")
            pop.pass_("Pw-alice-1")
            assert [x.split()[1] for x in pop.uidl()[1]] == uids["alice"]
            pop.dele(1)
        finally:
            pop.quit()
        ok, lines, _ = gw.command("user list")
        assert lines[0].startswith("alice  1 messages") and lines[1].startswith("bob  1 messages")
    finally:
        gw.stop()
