"""`make run`'s system end to end: gateway + emulated modem + emulated ISP on the
host profile's fixed ports. LAN mail leaves only once `dial` brings the line up;
mail the ISP holds for the office arrives in the same session (ETRN)."""

import poplib
import signal
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from gateway import ROOT, wait_port
from host_tools.console_client import ConsoleClient

PORTS = (2525, 1110, 2323, 2600, 2700, 2526)


def _busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def system(tmp_path):
    busy = [p for p in PORTS if _busy(p)]
    assert not busy, f"ports of the host profile in use (is `make run` already running?): {busy}"
    p = subprocess.Popen([sys.executable, "-m", "host_tools.run_host", "--dir", str(tmp_path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(2323, proc=p)
        wait_port(2600, proc=p)
        yield tmp_path
    finally:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0, out
        assert "dialgate stopped" in out, out


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


def test_dial_session_sends_the_queue_and_fetches_held_mail(system):
    c = ConsoleClient()
    try:
        assert c.command("user add bob bob-secret")[0]
        with smtplib.SMTP("127.0.0.1", 2525) as s:
            s.sendmail("bob@office.test", ["far@example.net"], "Subject: out\r\n\r\nhello over the modem\r\n")
        with smtplib.SMTP("127.0.0.1", 2600) as s:  # the Internet writes to bob: the ISP holds it
            s.sendmail("far@example.net", ["bob@office.test"], "Subject: in\r\n\r\nheld at the ISP\r\n")
        time.sleep(1.5)
        internet = system / "isp" / "internet"
        assert not list(internet.glob("*.eml")), "mail left before the line was up"
        ok, lines, _ = c.command("status")
        assert any(x.startswith("link: down") for x in lines), lines
        assert c.command("dial")[0]
        assert _wait(lambda: list(internet.glob("*.eml"))), c.command("log 30")[1]
        body = next(internet.glob("*.eml")).read_bytes()
        assert b"hello over the modem" in body and b"Received: from" in body
        ok, lines, _ = c.command("status")
        assert any(x.startswith("link: up 33600 bps") for x in lines), lines
        # relay.etrn (configs/host.json): the session asked for office.test, so the
        # ISP delivered the held message back over the line to the gateway
        assert _wait(lambda: _pop3_count("bob", "bob-secret") == 1), c.command("log 30")[1]
        pop = poplib.POP3("127.0.0.1", 1110, timeout=10)
        pop.user("bob")
        pop.pass_("bob-secret")
        assert b"held at the ISP" in b"\n".join(pop.retr(1)[1])
        pop.quit()
        assert c.command("hangup")[0]
        assert _wait(lambda: any(x.startswith("link: down") for x in c.command("status")[1]), 15)
    finally:
        c.close()
