"""End to end: the queue runner relays a batch through a REAL Postfix (the ISP's
smarthost, host_tools/isp_postfix.py) with STARTTLS or implicit TLS, certificate
verification and SASL AUTH; messages must arrive byte-identical in Postfix's
maildirs. Also counts client->server round trips for 50 messages of 4 KB
(Postfix offers CHUNKING: BDAT, pipelined across messages).

Run with `-s` to see the figures.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import time

import pytest

from host_tools import isp_postfix
from host_tools.isp_postfix import IspPostfix, strip_trace

N = 50
SIZE = 4096


class Gw:
    """The parts of app.Gateway the relay uses, over a real spool."""

    def __init__(self, root, over):
        from gwparts import wire

        from dialgate import config

        flat = {"board.name": "host", "hostname": "gw.office.test", "domains": ["office.test"],
                "spool.path": str(root), "spool.reserve": 0}
        flat.update(over)
        wire(self, config.build(flat), str(root))

    def queue(self, body, rcpts, sender="alice@office.test"):
        from dialgate.delivery import Route

        w = self.spool.writer()
        for i in range(0, len(body), 1000):
            w.write(body[i : i + 1000])
        return w.commit(sender, [Route("remote", a, []) for a in rcpts])

    def run(self):
        asyncio.run(self.relay.run_once())

    def maildrop(self, user="alice"):
        md = self.maildrops.open(user)
        try:
            out = []
            for i in range(len(md.messages())):
                with md.open_body(i) as f:
                    out.append(f.read())
            return out
        finally:
            md.close()


def message(n: int, size: int = SIZE) -> bytes:
    """A `size`-octet message with the awkward parts: dot lines, 8-bit text, a 998-octet line."""
    head = (f"From: Alice <alice@office.test>\r\nTo: bob@example.com\r\nSubject: batch message {n}\r\n"
            f"Date: Sun, 22 Nov 2026 05:00:00 +0000\r\nMessage-ID: <batch{n}@office.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n").encode()
    lines = [b".leading dot", b"..two dots", b".", "Grüße aus dem Büro, ½ € ☎".encode(), b"x" * 998]
    body = bytearray(head)
    k = 0
    while len(body) < size - 80:
        ln = lines[k % len(lines)] if k % 7 else b"line %d of message %d" % (k, n)
        if len(body) + len(ln) + 2 > size - 80:
            ln = b"short line %d" % k
        body += ln + b"\r\n"
        k += 1
    body += b"-" * (size - len(body) - 2) + b"\r\n"
    return bytes(body)


def delivered_by_id(isp: IspPostfix, address: str) -> dict[str, bytes]:
    out = {}
    for f in isp.delivered(address):
        data = f.read_bytes()
        mid = email.message_from_bytes(data)["Message-ID"]
        out[mid] = strip_trace(data)
    return out


@pytest.fixture(scope="module")
def isp():
    isp_postfix.require()
    pf = IspPostfix(mailboxes=("bob@example.com", "carol@example.net"),
                    reject={"nobody@example.com": "550 5.1.1 no such user here"})
    pf.start()
    yield pf
    pf.stop()


def relay_over(isp: IspPostfix, port_kind: str = "submission", **extra) -> dict:
    tls = "implicit" if port_kind == "smtps" else "starttls"
    over = {"relay.smarthost": f"127.0.0.1:{isp.ports[port_kind]}", "relay.tls": tls,
            "relay.ca_file": isp.ca_file, "relay.tls_name": "isp.test", "relay.user": "gw",
            "relay.password": "secret", "relay.timeout": 30}
    over.update(extra)
    return over


def test_batch_of_50_byte_identical_one_round_trip_per_message(isp, tmp_path):
    gw = Gw(tmp_path / "spool", relay_over(isp))
    before = len(isp.delivered("bob@example.com"))
    originals = {}
    for n in range(N):
        body = message(n)
        assert len(body) == SIZE
        originals[f"<batch{n}@office.test>"] = body
        gw.queue(body, ["bob@example.com"])
    t0 = time.monotonic()
    gw.run()
    took = time.monotonic() - t0
    assert gw.outq.ids() == [], gw.relay.last_run
    st = gw.relay.state
    assert (st.delivered, st.deferred, st.bounced) == (N, 0, 0)
    rt = gw.relay.round_trips
    print(f"\nrelay: {N} messages of {SIZE} octets over one connection (STARTTLS + AUTH, BDAT pipelined): "
          f"{rt} client->server round trips, {took:.2f} s")
    # Postfix offers CHUNKING: EHLO, STARTTLS, EHLO, AUTH, then every message as
    # MAIL/RCPT/BDAT LAST without waiting for the one before (RFC 3030 §4.2), QUIT behind
    assert rt == 5
    isp.wait_delivered(before + N)
    got = delivered_by_id(isp, "bob@example.com")
    for mid, body in originals.items():
        # Postfix keeps lines as records and writes maildirs with LF line ends; apart
        # from that and its trace header on top, every octet is the one we queued.
        want = body.replace(b"\r\n", b"\n")
        assert got[mid] == want, (mid, hashlib.sha1(got[mid]).hexdigest(), hashlib.sha1(want).hexdigest())
    log = isp.log_text()
    assert "sasl_method=PLAIN, sasl_username=gw@isp.test" in log
    assert f"mail={N} rcpt={N} bdat={N}" in log  # all in one session, each one BDAT LAST chunk
    assert "starttls=1 auth=1" in log


def test_per_recipient_outcome_and_dsn(isp, tmp_path):
    gw = Gw(tmp_path / "spool", relay_over(isp))
    body = message(100, 1500)
    mid = gw.queue(body, ["carol@example.net", "nobody@example.com"])
    gw.run()
    assert gw.outq.ids() == []  # carol delivered, nobody bounced
    dsns = gw.maildrop()
    assert len(dsns) == 1
    msg = email.message_from_bytes(dsns[0])
    assert msg.get_content_type() == "multipart/report"
    status = msg.get_payload()[1].get_payload()
    assert status[1]["Final-Recipient"] == "rfc822; nobody@example.com"
    assert status[1]["Action"] == "failed" and status[1]["Status"] == "5.1.1"
    assert "Recipient address rejected: no such user here" in status[1]["Diagnostic-Code"]
    assert status[0]["X-Dialgate-Queue-ID"] == mid
    assert len(status) == 2  # carol is not in the DSN
    isp.wait_delivered(1)
    assert "<batch100@office.test>" in delivered_by_id(isp, "carol@example.net")


def test_implicit_tls_port(isp, tmp_path):
    gw = Gw(tmp_path / "spool", relay_over(isp, "smtps"))
    before = len(isp.delivered("bob@example.com"))
    for n in range(200, 203):
        gw.queue(message(n, 2000), ["bob@example.com"])
    gw.run()
    assert gw.outq.ids() == [] and gw.relay.state.delivered == 3
    assert gw.relay.round_trips == 3  # no STARTTLS round trip: EHLO, AUTH, the 3 messages (BDAT) + QUIT
    isp.wait_delivered(before + 3)


def test_certificate_not_trusted_defers(isp, tmp_path):
    # relay.ca_file "" = the system store, which does not know the ISP's self-signed cert
    gw = Gw(tmp_path / "spool", relay_over(isp, **{"relay.ca_file": ""}))
    mid = gw.queue(message(300, 1000), ["bob@example.com"])
    gw.run()
    rec = gw.outq.load(mid)
    assert rec.rcpts[0].state == "pending" and "CERTIFICATE_VERIFY_FAILED" in rec.rcpts[0].reply
    assert gw.relay.state.delivered == 0 and gw.maildrop() == []


def test_wrong_password_defers_not_bounces(isp, tmp_path):
    gw = Gw(tmp_path / "spool", relay_over(isp, **{"relay.password": "wrong"}))
    mid = gw.queue(message(400, 1000), ["bob@example.com"])
    gw.run()
    rec = gw.outq.load(mid)
    assert rec.rcpts[0].state == "pending" and " 535 " in rec.rcpts[0].reply, rec.rcpts[0].reply
    assert gw.maildrop() == []


def test_port_25_opportunistic_tls_without_auth(isp, tmp_path):
    # the MX-style port: STARTTLS offered and taken, no AUTH (relay.user "")
    gw = Gw(tmp_path / "spool", relay_over(isp, "smtp", **{"relay.tls": "opportunistic", "relay.user": ""}))
    before = len(isp.delivered("bob@example.com"))
    gw.queue(message(500, 1000), ["bob@example.com"])
    gw.run()
    assert gw.outq.ids() == [] and gw.relay.state.delivered == 1
    assert gw.relay.round_trips == 4  # EHLO, STARTTLS, EHLO, MAIL+RCPT+BDAT+body+QUIT
    isp.wait_delivered(before + 1)


@pytest.fixture(scope="module")
def upy_tree(tmp_path_factory):
    """The firmware compiled to .mpy, as a board runs it."""
    from host_tools.upy_test import build_tree

    tree = tmp_path_factory.mktemp("upy")
    build_tree(tree / "t", True)
    return tree / "t"


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_micropython_relays_through_postfix(isp, tmp_path, tls, upy_tree):
    """The board's path: STARTTLS by hand / implicit TLS over MicroPython asyncio,
    certificate verified with the CA converted to DER, AUTH, pipelining.
    Run at 192K (measured): since the BDAT pipeline and the merged data path,
    160K and 176K fail importing smtp_client with ~90 KB free, on what is most
    likely a new qstr pool (MicroPython reports its size in entries, 640) that
    finds no contiguous block; docs/architecture.md "Memory". upy_relay.py
    therefore interns every firmware name first, as a board's gateway does at
    start: without that, 192K failed the same way under pytest's workers (their
    longer paths are longer names), with 110 KB free."""
    import subprocess
    import sys
    from pathlib import Path

    upy = Path(sys.executable).parent / "micropython"
    if not upy.exists():
        pytest.skip("no micropython in the venv (make venv)")
    tree = upy_tree
    before = len(isp.delivered("bob@example.com"))
    port = isp.ports["submission" if tls == "starttls" else "smtps"]
    script = Path(__file__).with_name("upy_relay.py")
    r = subprocess.run([str(upy), "-X", "heapsize=192K", str(script), str(tmp_path / "spool"), str(port),
                        isp.ca_file, "5", tls, str(tree)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    print(out)
    assert r.returncode == 0, out
    assert "RESULT 5 delivered, 0 deferred, 0 bounced" in out
    assert "QUEUED 0" in out
    isp.wait_delivered(before + 5)


def test_fixture_holds_office_mail_until_etrn(tmp_path):
    """The fixture as the ISP of DESIGN.md: mail for office.test waits in Postfix
    (defer_transports) until the gateway says ETRN (RFC 1985) after flushing its
    own queue on the same connection; then Postfix delivers it to the gateway's
    own SMTP listener, into alice's maildrop."""
    import smtplib
    import ssl

    from gateway import Gateway

    isp_postfix.require()
    (tmp_path / "gw").mkdir()
    gw_proc = Gateway(tmp_path / "gw")
    isp = None
    try:
        ok, lines, _ = gw_proc.command("user add alice Secret123")
        assert ok, lines
        isp = IspPostfix(hold_domains=("office.test",), hold_nexthop=f"127.0.0.1:{gw_proc.smtp_port}").start()
        with smtplib.SMTP("127.0.0.1", isp.ports["submission"]) as s:
            s.starttls(context=ssl.create_default_context(cafile=isp.ca_file))
            s.login("gw", "secret")
            s.sendmail("carol@example.net", ["alice@office.test"],
                       b"From: carol@example.net\r\nTo: alice@office.test\r\nSubject: held\r\n"
                       b"Message-ID: <held1@example.net>\r\n\r\nwaiting at the ISP\r\n")
        time.sleep(2)
        assert len(isp.queued()) == 1  # held: defer_transports = hold
        assert "status=deferred (deferred transport)" in isp.log_text()  # not even tried yet

        # one connection: the outbound queue first, then ETRN (RFC 1985), as a dial session does
        relay_gw = Gw(tmp_path / "spool", relay_over(isp))
        relay_gw.queue(message(600, 1200), ["bob@example.com"])
        summary = asyncio.run(relay_gw.relay.flush(etrn=["office.test"]))
        assert summary.startswith("1 delivered") and "1 connection(s)" in summary, summary
        assert relay_gw.relay.etrn_results and relay_gw.relay.etrn_results[0][0] == 250, relay_gw.relay.etrn_results
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and isp.queued():
            time.sleep(0.3)
        assert isp.queued() == [], isp.log_text()[-2000:]
        ok, lines, _ = gw_proc.command("user list")
        assert any(ln.startswith("alice") and " 1 message" in ln for ln in lines), lines
    finally:
        if isp is not None:
            isp.stop()
        gw_proc.stop()
