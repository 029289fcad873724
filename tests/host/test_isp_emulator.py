"""The emulated ISP: holds office mail until ETRN, relays only after AUTH, keeps a
POP3 multidrop mailbox (deletions only at QUIT, one session at a time)."""

import asyncio
import hashlib
import poplib
import smtplib
import threading

import pytest

from host_tools.isp_emulator import Isp


class Office:
    """A minimal office-side SMTP sink that records what the ISP delivers."""

    def __init__(self):
        self.got = []

    async def handle(self, r, w):
        w.write(b"220 office\r\n")
        rcpts, sender = [], None
        while True:
            line = await r.readline()
            if not line:
                break
            cmd = line.decode().strip()
            if cmd.startswith("EHLO"):
                w.write(b"250 office\r\n")
            elif cmd.startswith("MAIL"):
                sender, rcpts = cmd[10:].strip("<>"), []
                w.write(b"250 ok\r\n")
            elif cmd.startswith("RCPT"):
                rcpts.append(cmd[8:].strip("<>"))
                w.write(b"250 ok\r\n")
            elif cmd == "DATA":
                w.write(b"354 go\r\n")
                body = b""
                while (ln := await r.readline()) != b".\r\n":
                    body += ln[1:] if ln.startswith(b".") else ln
                self.got.append((sender, rcpts, body))
                w.write(b"250 ok\r\n")
            elif cmd == "QUIT":
                w.write(b"221 bye\r\n")
                break
        await w.drain()
        w.close()


@pytest.fixture
def isp(tmp_path):
    loop = asyncio.new_event_loop()
    office = Office()
    box = {}

    async def setup():
        osrv = await asyncio.start_server(office.handle, "127.0.0.1", 0)
        oport = osrv.sockets[0].getsockname()[1]
        isp = Isp("smtp.isp.test", "office.test", ("127.0.0.1", oport), tmp_path, {"office": "pw"})
        isp.log = lambda m: None
        srv = await isp.serve("127.0.0.1", 0)
        psrv = await isp.serve_pop3("127.0.0.1", 0)
        box.update(isp=isp, port=srv.sockets[0].getsockname()[1], office=office,
                   pop3=psrv.sockets[0].getsockname()[1])

    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    asyncio.run_coroutine_threadsafe(setup(), loop).result(10)
    yield box
    loop.call_soon_threadsafe(loop.stop)


def test_holds_office_mail_until_etrn(isp):
    body = "Subject: hi\r\n\r\n.leading dot\r\nbye\r\n"
    with smtplib.SMTP("127.0.0.1", isp["port"]) as s:
        s.sendmail("a@internet.test", ["bob@office.test", "amy@OFFICE.test"], body)
        assert len(isp["isp"].store.held()) == 1
        assert s.docmd("ETRN", "isp.test")[0] == 459
        assert s.docmd("ETRN", "office.test")[0] == 250
    for _ in range(100):
        if isp["office"].got:
            break
        threading.Event().wait(0.05)
    sender, rcpts, data = isp["office"].got[0]
    assert sender == "a@internet.test" and rcpts == ["bob@office.test", "amy@OFFICE.test"]
    assert data == body.encode()
    for _ in range(100):
        if not isp["isp"].store.held():
            break
        threading.Event().wait(0.05)
    assert isp["isp"].store.held() == []
    with smtplib.SMTP("127.0.0.1", isp["port"]) as s:
        assert s.docmd("ETRN", "office.test")[0] == 251


def test_relays_only_after_auth(isp, tmp_path):
    with smtplib.SMTP("127.0.0.1", isp["port"]) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("bob@office.test", ["x@far.test"], "Subject: x\r\n\r\nx\r\n")
    with smtplib.SMTP("127.0.0.1", isp["port"]) as s:
        s.login("office", "pw")
        s.sendmail("bob@office.test", ["x@far.test"], "Subject: x\r\n\r\nx\r\n")
    assert len(list((tmp_path / "internet").glob("*.eml"))) == 1


def test_multidrop_mailbox_over_pop3(isp):
    """SMTP mail for the office lands in the mailbox, one copy per recipient with
    X-Original-To; RETR un-stuffs nothing (the client does), DELE only at QUIT."""
    isp["isp"].multidrop = True
    body = "Subject: hi\r\n\r\n.leading dot\r\nbye\r\n"
    with smtplib.SMTP("127.0.0.1", isp["port"]) as s:
        s.sendmail("a@internet.test", ["bob@office.test", "amy@office.test"], body)
    assert isp["isp"].store.held() == [] and len(isp["isp"].store.mailbox()) == 2
    p = poplib.POP3("127.0.0.1", isp["pop3"], timeout=5)
    stamp = p.getwelcome().split()[-1].decode()
    assert stamp.startswith("<") and stamp.endswith(">")
    p._shortcmd("APOP office " + hashlib.md5((stamp + "pw").encode()).hexdigest())
    uidls = [x.split()[1] for x in p.uidl()[1]]
    got = [b"\r\n".join(p.retr(k)[1]) for k in (1, 2)]
    assert sorted(g.split(b"\r\n")[1] for g in got) == [b"X-Original-To: amy@office.test",
                                                         b"X-Original-To: bob@office.test"]
    assert all(g.endswith(b"\r\n.leading dot\r\nbye") for g in got)  # poplib undoes the stuffing
    with pytest.raises(poplib.error_proto, match="IN-USE"):  # one session at a time
        q = poplib.POP3("127.0.0.1", isp["pop3"], timeout=5)
        q.user("office")
        q.pass_("pw")
    q.close()
    p.dele(1)
    p.close()  # no QUIT: nothing is deleted (RFC 1939 §6)
    threading.Event().wait(0.2)
    assert len(isp["isp"].store.mailbox()) == 2
    p = poplib.POP3("127.0.0.1", isp["pop3"], timeout=5)
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.user("office")
        p.pass_("wrong")
    p.user("office")
    p.pass_("pw")
    assert [x.split()[1] for x in p.uidl()[1]] == uidls  # stable UIDLs
    p.dele(1)
    p.quit()
    assert [m.stem for m in isp["isp"].store.mailbox()] == [uidls[1].decode()]
