"""`make run`'s system end to end: gateway + emulated modem + emulated ISP on the
host profile's fixed ports, as a newcomer meets it: send one message and wait.
The first queued message makes the gateway call by itself; the mail goes out,
the ISP's held mail (two demo messages and one more) comes in over ETRN, and
the line goes down by itself once it is quiet; `stats calls` shows the call.
And the LAN certificate `make run` makes: STARTTLS and STLS verified against its
CA by swaks, fetchmail, smtplib and poplib."""

import os
import poplib
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time

import pytest

from gateway import ROOT, wait_port
from host_tools import lan_tls
from host_tools.console_client import ConsoleClient
from host_tools.pkgs import require
from host_tools.run_host import in_use

PORTS = (2525, 1110, 2323, 2600, 2700, 2526)


@pytest.fixture
def system(tmp_path):
    busy = in_use(list(PORTS))
    assert not busy, f"ports of the host profile in use (is `make run` already running?): {busy}"
    p = _start(["--dir", str(tmp_path)])
    try:
        wait_port(2323, proc=p)
        wait_port(2600, proc=p)
        yield tmp_path
    finally:
        _ctrl_c(p)


def _start(args):
    """run_host in a session of its own, as a terminal starts `make run`: its
    process group is the terminal's foreground group."""
    return subprocess.Popen([sys.executable, "-m", "host_tools.run_host", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ctrl_c(p):
    """A Ctrl-C in that terminal: SIGINT to the whole foreground process group.
    Only run_host may get it (each child has a group of its own): the gateway
    stops through its console, cleanly, after it and not beside it."""
    os.killpg(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    assert "dialgate stopped" in out, out
    # run_host stopped the gateway through its console, which hung up and flushed
    assert "console: shutdown" in out and "INFO stopping" in out, out
    assert "interrupted" not in out and "Traceback" not in out and "KeyboardInterrupt" not in out, out
    return out


def _wait(cond, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def _pop3_count(user, password):
    pop = poplib.POP3("127.0.0.1", 1110, timeout=10)
    try:
        pop.user(user)
        pop.pass_(password)
        return pop.stat()[0]
    finally:
        pop.quit()


def _status(c, prefix):
    return [x for x in c.command("status")[1] if x.startswith(prefix)]


def test_send_one_message_and_wait_the_call_happens_by_itself(system):
    c = ConsoleClient()
    try:
        assert c.command("user add bob bob-secret")[0]
        assert c.command("user add postmaster pm-secret")[0]
        with smtplib.SMTP("127.0.0.1", 2600) as s:  # the Internet writes to bob: the ISP holds it
            s.sendmail("far@example.net", ["bob@office.test"], "Subject: in\r\n\r\nheld at the ISP\r\n")
        assert _status(c, "link: down"), c.command("status")[1]
        assert _status(c, "last call: no call since boot")
        internet = system / "isp" / "internet"
        with smtplib.SMTP("127.0.0.1", 2525) as s:  # the trigger: schedule.queue_count 1 (configs/host.json)
            s.sendmail("bob@office.test", ["far@example.net"], "Subject: out\r\n\r\nhello over the modem\r\n")
        # nobody types `dial`
        assert _wait(lambda: list(internet.glob("*.eml")), 40), c.command("log 40")[1]
        body = next(internet.glob("*.eml")).read_bytes()
        assert b"hello over the modem" in body and b"Received: from" in body
        assert _wait(lambda: _pop3_count("bob", "bob-secret") == 1, 30), c.command("log 40")[1]
        assert _wait(lambda: _pop3_count("postmaster", "pm-secret") == 2, 30), c.command("log 40")[1]  # the demo
        pop = poplib.POP3("127.0.0.1", 1110, timeout=10)
        pop.user("bob")
        pop.pass_("bob-secret")
        assert b"held at the ISP" in b"\n".join(pop.retr(1)[1])
        pop.quit()
        # session.idle_hangup 10 s: the line goes down by itself
        assert _wait(lambda: _status(c, "link: down"), 40), c.command("log 40")[1]
        ok, lines, _ = c.command("stats calls")
        assert ok and len(lines) == 1, lines
        assert lines[0].startswith("#1 ") and " queue: " in lines[0] and "ask ETRN 250, end idle, ok" in lines[0], lines
        assert "in " in lines[0] and "/3 msgs" in lines[0] and "/1 msgs" in lines[0], lines
        assert _status(c, "last call: idle: ok")
        assert _status(c, "next call: in "), c.command("status")[1]  # schedule.interval
        ok, lines, _ = c.command("schedule")
        assert ok and lines[0].startswith("next call: in ") and any(x.startswith("clock: trusted") for x in lines)
    finally:
        c.close()


OUTSIDE = "127.0.0.2"  # not the host profile's LAN (127.0.0.1/32)


def test_make_run_offers_starttls_and_stls_verified_against_its_own_ca(system, tmp_path):
    require("swaks", "libnet-ssleay-perl", "fetchmail")
    ca = system / "tls" / "ca.pem"
    ctx = ssl.create_default_context(cafile=str(ca))  # verification and host name check on
    c = ConsoleClient()
    try:
        assert c.command("user add carol carol-secret")[0]
    finally:
        c.close()
    # from outside the LAN: no AUTH until STARTTLS, then AUTH
    with smtplib.SMTP("127.0.0.1", 2525, timeout=20, source_address=(OUTSIDE, 0)) as s:
        s.ehlo("far.example")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=ctx)
        s.ehlo("far.example")
        assert "PLAIN" in s.esmtp_features["auth"]
        s.login("carol", "carol-secret")
        s.sendmail("carol@office.test", ["carol@office.test"], b"Subject: one\r\n\r\nby smtplib\r\n")
    cmd = ["swaks", "--server", "127.0.0.1", "--port", "2525", "--local-interface", OUTSIDE, "--timeout", "20",
           "--from", "carol@office.test", "--to", "carol@office.test", "--body", "by swaks",
           "--tls", "--tls-verify", "--tls-ca-path", str(ca), "--auth", "PLAIN", "--auth-user", "carol",
           "--auth-password", "carol-secret"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TLS started" in r.stdout and "235 2.7.0" in r.stdout and "250 2.0.0 Ok: queued as" in r.stdout, r.stdout
    pop = poplib.POP3("127.0.0.1", 1110, timeout=20)
    try:
        assert "STLS" in pop.capa()
        pop.stls(context=ctx)
        pop.user("carol")
        pop.pass_("carol-secret")
        assert pop.stat()[0] == 2
    finally:
        pop.quit()
    # fetchmail: STLS with TLS 1.2 or later, the certificate checked against the CA (name: localhost)
    out = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'set idfile "{tmp_path}/ids"\npoll localhost protocol pop3 port 1110 timeout 30:\n'
                  f'  user "carol" there with password "carol-secret" is "root" here\n'
                  f"  sslproto tls1.2+ sslcertck sslcertfile {ca} keep fetchall\n"
                  f'  mda "cat >> {out}; echo ===END=== >> {out}"\n')
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nosyslog"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = out.read_bytes()
    assert got.count(b"===END===") == 2 and b"by smtplib" in got and b"by swaks" in got, got
    assert "STLS" in r.stdout + r.stderr
    # and the check is real: against another CA fetchmail refuses the server
    other = tmp_path / "other"
    lan_tls.make_ca(other, "other", ["localhost"], [], [])
    rc.write_text(rc.read_text().replace(str(ca), str(other / "ca.pem")))
    r = subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nosyslog"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "certificate" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_ctrl_c_stops_the_unix_port_gateway_through_its_console(tmp_path):
    """`make run UPY=…`: the gateway under the unix port gets no SIGINT of its own
    (a SIGINT in the middle of a collection can lock its heap: a crash at
    Ctrl-C instead of a stop), and its mail is on flash for the next run."""
    busy = in_use(list(PORTS))
    assert not busy, f"ports of the host profile in use (is `make run` already running?): {busy}"
    p = _start(["--dir", str(tmp_path), "--upy", "512K"])
    try:
        wait_port(2323, timeout=60, proc=p)
        c = ConsoleClient(timeout=10)
        ok, lines, _ = c.command("user add bob bob-secret")
        assert ok, lines
        with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as s:
            s.sendmail("alice@office.test", ["bob@office.test"], "Subject: before ctrl-c\r\n\r\nhi\r\n")
        c.close()
    except BaseException:
        p.kill()
        p.communicate()
        raise
    _ctrl_c(p)
    assert list((tmp_path / "spool" / "mail" / "bob").iterdir()), "the message is not in bob's maildrop"


def test_a_second_make_run_says_the_ports_are_taken_and_starts_nothing(tmp_path):
    """`make run` while one runs already (or anything on its ports): one line
    that says so, exit 1, and no process started (before: the ISP's and the
    modem's tracebacks, "address already in use")."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 2600))
        s.listen()
        r = subprocess.run([sys.executable, "-m", "host_tools.run_host", "--dir", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "127.0.0.1:2600 already in use" in r.stderr and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert not (tmp_path / "config.json").exists()  # it stopped before writing anything
