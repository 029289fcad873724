"""dialgatectl against a running gateway process: every console command one-shot
with its exit status, --json, the serial path (a pyserial URL), tab completion
from the gateway's own help, the console password, and `report`'s picture and
CSV held to `stats`."""

from __future__ import annotations

import csv
import json
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import costlog_sample
import pytest

from dialgate.users import verify_password
from gateway import ROOT, Gateway, free_port
from host_tools import dialgatectl
from host_tools.console_complete import Completer, parse_help


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """A gateway with two weeks of cost log, an always-on uplink whose smarthost
    refuses (so queued mail has tries and a last error), and two queued messages."""
    d = tmp_path_factory.mktemp("ctl")
    recs = costlog_sample.records()
    costlog_sample.write(d / "spool", recs)
    over = dict(costlog_sample.CONFIG, **{"link.type": "always-on", "relay.smarthost": "127.0.0.1:9"})
    gw = Gateway(d, over)
    s = smtplib.SMTP("127.0.0.1", gw.smtp_port, local_hostname="pc.office.test")
    s.sendmail("alice@office.test", ["bob@example.com", "carol@example.net", "dan@example.org"],
               b"From: alice@office.test\r\nSubject: quarterly figures\r\n\r\nsee attached\r\n")
    s.sendmail("carol@office.test", ["eve@example.com"], b"Subject: lunch\r\n\r\nnoon?\r\n")
    s.quit()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the always-on "call" tries them at once, and fails
        ok, lines, _ = gw.command("queue list")
        _ok, st, _ = gw.command("stats")  # and the failed call's cost record is written (at its end)
        if len([x for x in lines if "; last: " in x]) == 2 and f"online sessions: {len(recs) + 1}" in st:
            break
        time.sleep(0.2)
    yield gw
    gw.stop()


def ctl(gw, capsys, *args: str) -> tuple[int, str, str]:
    """dialgatectl's main() in this process -> (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = dialgatectl.main(["--host", f"127.0.0.1:{gw.console_port}", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def queue_ids(gw, capsys) -> list[str]:
    rc, out, _ = ctl(gw, capsys, "--json", "queue", "list")
    return [m["id"] for m in json.loads(out)["messages"]]


def test_every_command_one_shot(office, capsys, monkeypatch):
    rc, out, _ = ctl(office, capsys, "help")
    names = set(parse_help(out.splitlines()))
    first, second = queue_ids(office, capsys)
    # every command help lists, with arguments and the exit status it must give, in an order that works
    runs = [
        ("status", [], 0, "listening: smtp"),
        ("memory", [], 0, "modules: "),
        ("log", ["5"], 0, ""),
        ("log", ["0"], 1, "ERR N must be a number from 1 to 1000"),
        ("config get", ["hostname"], 0, 'hostname = "gw.office.test"'),
        ("config set", ["queue.warn_after", "7200"], 0, "restart to apply"),
        ("config set", ["queue.warn_after", "-5"], 1, "ERR queue.warn_after: must be at least 0"),
        ("user add", ["bob", "secret1"], 0, "user bob added"),
        ("user add", ["bob", "secret1"], 1, "ERR user bob exists"),
        ("user passwd", ["bob", "secret2"], 0, "password of bob changed"),
        ("alias add", ["team", "bob"], 0, "alias team -> bob"),
        ("alias list", [], 0, "team -> bob"),
        ("alias del", ["team"], 0, "alias team deleted"),
        ("user list", [], 0, "bob  0 messages"),
        ("user del", ["bob"], 0, "user bob deleted"),
        ("queue list", [], 0, "2 message(s) queued"),
        ("queue show", [first], 0, "  Subject: quarterly figures"),
        ("queue show", ["nope"], 1, "ERR no queued message nope"),
        ("queue retry", [second], 0, "1 message(s) due now"),
        ("queue flush", [], 0, "message(s) due now"),
        ("queue delete", [second], 0, f"deleted {second} (no bounce is sent)"),
        ("dial", [], 0, ""),
        ("hangup", [], 1, "ERR an always-on link cannot hang up"),
        ("schedule", [], 0, "clock: trusted"),
        ("stats", [], 0, "online sessions: "),
        ("stats calls", ["3"], 0, " ok"),
        ("stats csv", [], 0, "n,start,date,"),
        ("login", ["x"], 0, "no console password is set"),
        ("console passwd", ["adm1n-pw"], 0, "console password set in "),
        ("console nopasswd", [], 0, "console password removed"),
        ("help", ["queue", "show"], 0, "queue show ID"),
        ("quit", [], 0, "bye"),
    ]
    last = {"restart", "shutdown"}  # they stop the gateway: test_restart_then_shutdown_one_shot
    assert names == {r[0] for r in runs} | last, names ^ ({r[0] for r in runs} | last)
    for name, args, want_rc, text in runs:
        if name == "console nopasswd":
            monkeypatch.setenv("DIALGATE_PASSWORD", "adm1n-pw")  # the console now asks for it
        rc, out, err = ctl(office, capsys, *name.split(), *args)
        assert rc == want_rc, (name, args, rc, out, err)
        assert text in (out if rc == 0 else err), (name, text, out, err)
    cfg = json.loads(office.config_path.read_text())
    assert cfg["queue"]["warn_after"] == 7200 and cfg["console"]["password"] == ""


def test_restart_then_shutdown_one_shot(tmp_path, capsys):
    """`config set`, `restart`: the saved value is in force afterwards, in the same
    process, with the spool as it was; `shutdown` ends the process with 0."""
    gw = Gateway(tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, local_hostname="pc.office.test") as s:
            s.sendmail("alice@office.test", ["eve@example.com"], b"Subject: kept\r\n\r\nover a restart\r\n")
        rc, out, err = ctl(gw, capsys, "config", "set", "queue.warn_after", "7200")
        assert rc == 0 and "restart to apply" in out, (out, err)
        pid = gw.proc.pid
        rc, out, err = ctl(gw, capsys, "restart")
        assert rc == 0 and out.startswith("restarting with "), (out, err)
        deadline = time.monotonic() + 20
        while True:  # the old gateway answers until it stops, then the port is closed a moment
            rc, out, err = ctl(gw, capsys, "config", "get", "queue.warn_after")
            if out.strip() == "queue.warn_after = 7200":
                break
            assert time.monotonic() < deadline and gw.proc.poll() is None, (rc, out, err)
            time.sleep(0.1)
        assert gw.proc.pid == pid
        rc, out, err = ctl(gw, capsys, "queue", "list")
        assert rc == 0 and "1 message(s) queued" in out and "eve@example.com" in out, out
        rc, out, err = ctl(gw, capsys, "shutdown")
        assert rc == 0 and out.startswith("stopping: "), (out, err)
        assert gw.proc.wait(timeout=15) == 0
        assert gw.output().count(" up as ") == 2
    finally:
        gw.stop()


def test_exit_statuses_of_the_command(office):
    """The real command line, as a script runs it: 0 OK, 1 ERR (on stderr), 2 no console."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "host_tools.dialgatectl", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)

    host = f"127.0.0.1:{office.console_port}"
    p = run("--host", host, "status")
    assert p.returncode == 0 and p.stdout.startswith("version: ") and "OK" not in p.stdout.splitlines()
    p = run("--host", host, "queue", "show", "nope")
    assert p.returncode == 1 and p.stderr.strip() == "ERR no queued message nope" and p.stdout == ""
    p = run("--host", f"127.0.0.1:{free_port()}", "status")
    assert p.returncode == 2 and "cannot reach the console" in p.stderr


def test_json_of_status_stats_and_the_queue(office, capsys):
    rc, out, _ = ctl(office, capsys, "--json", "status")
    st = json.loads(out)
    assert rc == 0 and st["version"] == "0.1.0" and st["uptime_s"] >= 0 and st["max_connections"] == 64
    assert st["link"] == "up 0 bps, 0 min, in 0 out 0 bytes (always-on)" and st["spool_free"] > 0
    rc, out, _ = ctl(office, capsys, "--json", "queue", "list")
    q = json.loads(out)
    assert q["count"] == len(q["messages"]) >= 1
    m = q["messages"][0]
    assert (m["sender"], m["rcpt"], m["rcpts"], m["pending"]) == ("alice@office.test", "bob@example.com", 3, 3)
    assert m["tries"] >= 1 and m["size"] > 0 and "127.0.0.1:9" in m["last_error"] and m["age_s"] >= 0
    rc, out, _ = ctl(office, capsys, "--json", "queue", "show", m["id"])
    show = json.loads(out)
    assert show["id"] == m["id"] and show["size"] == m["size"] and show["sender"] == "<alice@office.test>"
    assert [r["address"] for r in show["rcpts"]] == ["bob@example.com", "carol@example.net", "dan@example.org"]
    assert {r["state"] for r in show["rcpts"]} == {"pending"} and "127.0.0.1:9" in show["rcpts"][0]["reply"]
    assert "Subject: quarterly figures" in show["headers"] and show["headers"][0].startswith("Received: ")
    rc, out, _ = ctl(office, capsys, "--json", "stats")
    stats = json.loads(out)
    assert len(stats["days"]) == 14 and stats["queued"] == q["count"]
    assert stats["online_sessions"] == sum(d["calls"] for d in stats["days"])
    rc, out, _ = ctl(office, capsys, "--json", "stats", "calls", "4")
    calls = json.loads(out)["calls"]
    assert len(calls) == 4 and calls[-1]["n"] == stats["online_sessions"] and calls[-1]["ok"] is False
    rc, out, _ = ctl(office, capsys, "--json", "user", "list")
    assert json.loads(out) == {"lines": ["(no users)"]}
    rc, out, err = ctl(office, capsys, "--json", "queue", "show", "nope")
    assert rc == 1 and out == "" and err.strip() == "ERR no queued message nope"


def test_serial_console_path(office, capsys):
    """--port takes any pyserial URL: socket:// reaches the TCP console the way a UART is read
    (no greeting read; whatever is pending dropped first)."""
    rc, out, _ = ctl(office, capsys, "--port", f"socket://127.0.0.1:{office.console_port}", "config", "get",
                     "domains")
    assert rc == 0 and out.strip() == 'domains = ["office.test"]'


def test_tab_completion_from_the_gateways_help(office):
    c = office.console()
    try:
        ok, lines, _ = c.command("help")
        ok, qlines, _ = c.command("queue list")
        qids = sorted(x.split()[0] for x in qlines if " pending, " in x)
        comp = Completer(parse_help(lines), dialgatectl.LiveSource(c))
        assert {"queue", "stats", "user", "alias", "config", "console", "dial", "login", "quit"} <= set(
            comp.candidates(""))
        assert comp.candidates("qu") == ["queue", "quit"]
        assert comp.candidates("queue ") == ["delete", "flush", "list", "retry", "show"]
        assert comp.candidates("queue show ") == qids and qids
        assert comp.candidates("queue retry ") == sorted(["all", *qids])
        assert comp.candidates("stats c") == ["calls", "csv"]
        assert comp.candidates("help queue r") == ["retry"]
        assert "schedule.daily_minutes" in comp.candidates("config get schedule.d")
        assert comp.candidates("config set relay.smarthost ") == []  # VALUE: nothing to offer
        c.command("user add zoe pw1")
        c.command("alias add crew zoe")
        comp.source.cache.clear()
        assert comp.candidates("user del ") == ["zoe"]
        assert comp.candidates("alias add crew2 ") == ["crew", "zoe"]
        c.command("alias del crew")
        c.command("user del zoe")
    finally:
        c.close()


def test_console_password_right_wrong_and_asked(tmp_path, capsys, monkeypatch):
    stored = dialgatectl.hash_password("open-sesame", 1000)  # the host tool's hash, for the firmware to check
    assert verify_password(stored, "open-sesame")
    gw = Gateway(tmp_path, {"console.password": stored, "users.iterations": 1000})
    try:
        monkeypatch.delenv("DIALGATE_PASSWORD", raising=False)
        rc, _out, err = ctl(gw, capsys, "status")
        assert rc == 2 and "asks for a password" in err
        monkeypatch.setenv("DIALGATE_PASSWORD", "wrong")
        rc, _out, err = ctl(gw, capsys, "status")
        assert rc == 2 and "login refused: ERR wrong password" in err
        pw = tmp_path / "pw"
        pw.write_text("open-sesame\n")
        rc, out, _ = ctl(gw, capsys, "--password-file", str(pw), "status")
        assert rc == 0 and out.startswith("version: ")
        rc, out, _ = ctl(gw, capsys, "--password-file", str(pw), "--port", f"socket://127.0.0.1:{gw.console_port}",
                         "config", "get", "hostname")  # a UART says so only at the first command
        assert rc == 0 and out.strip() == 'hostname = "gw.office.test"'
        c = gw.console()  # by hand: nothing runs before login, and a wrong password costs time
        try:
            assert c.login_required and c.command("user list")[2] == "ERR login first: login PASSWORD"
            assert c.login("guess") == (False, "ERR wrong password")
            t0 = time.monotonic()
            assert c.command("user list")[2] == "ERR login first: login PASSWORD"
            assert time.monotonic() - t0 >= 0.9  # AUTH_DELAY_MS before the next line is read
            assert c.login("open-sesame") == (True, "OK") and c.command("user list")[1] == ["(no users)"]
        finally:
            c.close()
        log = (tmp_path / "log" / "dialgate.log").read_text()
        assert "WARN console: wrong password from 127.0.0.1" in log and "guess" not in log and "sesame" not in log
    finally:
        gw.stop()


def test_hash_password_command(capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pw\n"))
    assert dialgatectl.main(["hash-password", "--stdin", "--iterations", "2000"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("pbkdf2-sha256$2000$") and verify_password(out, "s3cret-pw")


def test_report_picture_and_csv_match_stats(office, capsys, tmp_path):
    png, csv_path = tmp_path / "r.png", tmp_path / "r.csv"
    rc, out, err = ctl(office, capsys, "report", "--out", str(png), "--csv", str(csv_path))
    assert rc == 0, err
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1000, 900)
    colours = img.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # text, bars, grid: not blank
    counts = {c: n for n, c in colours}
    for series in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28)):
        assert counts.get(series, 0) > 200, series  # online (blue), sent, received, failed: each drawn
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 14 and list(rows[0]) == ["day", "calls", "failed", "online_s", "online_min", "msgs_out",
                                                 "msgs_in", "bytes_out", "bytes_in", "queued_max"]
    rc, out, _ = ctl(office, capsys, "--json", "stats")
    days = {d["day"]: d for d in json.loads(out)["days"]}
    for key in ("calls", "failed", "online_s", "msgs_out", "msgs_in", "bytes_out", "bytes_in"):
        assert sum(int(r[key]) for r in rows) == sum(d[key] for d in days.values()), key
    for r in rows:  # day by day too
        d = days.get(r["day"], {"calls": 0, "failed": 0, "online_s": 0})
        assert (int(r["calls"]), int(r["failed"]), int(r["online_s"])) == (d["calls"], d["failed"], d["online_s"])
    assert max(int(r["queued_max"]) for r in rows) > 0


def test_make_console_still_runs_the_client():
    text = (Path(ROOT) / "Makefile").read_text()
    assert "-m host_tools.dialgatectl" in text and "$(VENV)/bin/dialgatectl" in text


def test_host_forms_ipv6_included(tmp_path, capsys, monkeypatch):
    """--host as console.listen writes it: NAME[:PORT], IPv4, [IPv6][:PORT], bare IPv6;
    and the real command over IPv6 loopback to a gateway listening there."""
    hp = dialgatectl.host_port
    assert hp("gw.office.test", 2323) == ("gw.office.test", 2323)
    assert hp("10.0.0.2:2424", 2323) == ("10.0.0.2", 2424)
    assert hp("[::1]:2424", 2323) == ("::1", 2424)
    assert hp("[fe80::1]", 2323) == ("fe80::1", 2323)
    assert hp("::1", 2323) == ("::1", 2323)
    for bad in ("[::1", "[::1]2424", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            hp(bad, 2323)
    rc = dialgatectl.main(["--host", "host:http", "status"])
    assert rc == 2 and "bad port" in capsys.readouterr().err
    import gateway as harness

    smtp, pop3, console, v6 = (free_port() for _ in range(4))
    ports = iter((smtp, pop3, console))
    monkeypatch.setattr(harness, "free_port", lambda: next(ports))  # so the harness waits on our console port
    gw = Gateway(tmp_path, {"console.listen": [f"127.0.0.1:{console}", f"[::1]:{v6}"]})
    try:
        capsys.readouterr()
        rc = dialgatectl.main(["--host", f"[::1]:{v6}", "status"])
        out = capsys.readouterr().out
        assert rc == 0 and out.startswith("version: "), out
    finally:
        gw.stop()
