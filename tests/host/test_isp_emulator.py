"""The emulated ISP: holds office mail until ETRN, relays only after AUTH."""

import asyncio
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
        box.update(isp=isp, port=srv.sockets[0].getsockname()[1], office=office)

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
