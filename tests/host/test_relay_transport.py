"""The relay's real transport (net.connect over asyncio sockets, CPython) against
misbehaving servers: the line drops in the middle of DATA, the server goes silent
(idle deadline), the server injects octets after its STARTTLS 220."""

from __future__ import annotations

import asyncio
import time

from test_relay_postfix import Gw, message


async def fake_server(behaviour: str, seen: list):
    async def handle(reader, writer):
        writer.write(b"220 fake.test ESMTP\r\n")
        await writer.drain()
        if behaviour == "silent":
            await asyncio.sleep(60)
            return
        while True:
            line = await reader.readline()
            if not line:
                return
            seen.append(line)
            verb = line[:4].upper()
            if behaviour == "plain" and verb == b"EHLO":
                writer.write(b"250-fake.test\r\n250 PIPELINING\r\n")  # no STARTTLS
            elif behaviour == "plain" and verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            elif verb == b"EHLO":
                writer.write(b"250-fake.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            elif verb == b"STAR":
                writer.write(b"220 go ahead\r\n250 injected before the handshake\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                await reader.readexactly(200)  # part of the body, then the line drops
                writer.close()
                return
            else:
                writer.write(b"502 no\r\n")
            await writer.drain()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def run_against(tmp_path, behaviour, tls="none", timeout=300, verify=False):
    seen: list = []

    async def main(gw):
        srv = await fake_server(behaviour, seen)
        port = srv.sockets[0].getsockname()[1]
        gw.cfg._v["relay.smarthost"] = f"127.0.0.1:{port}"
        try:
            await gw.relay.run_once()
        finally:
            srv.close()

    over = {"relay.smarthost": "127.0.0.1:1", "relay.tls": tls, "relay.timeout": timeout,
            "relay.tls_verify": verify}
    gw = Gw(tmp_path / "spool", over)
    mid = gw.queue(message(1, 3000), ["bob@example.com"])
    t0 = time.monotonic()
    asyncio.run(main(gw))
    return gw, mid, seen, time.monotonic() - t0


def test_line_drops_mid_data_message_stays_pending(tmp_path):
    gw, mid, seen, _ = run_against(tmp_path, "drop")
    assert any(ln.startswith(b"DATA") for ln in seen)
    rec = gw.outq.load(mid)
    assert rec.rcpts[0].state == "pending", rec.rcpts[0].reply
    assert "connection" in rec.rcpts[0].reply.lower() or "reset" in rec.rcpts[0].reply.lower(), rec.rcpts[0].reply
    st = gw.relay.state
    assert (st.delivered, st.bounced) == (0, 0) and gw.maildrop() == []


def test_silent_server_hits_the_idle_deadline(tmp_path):
    gw, mid, _, took = run_against(tmp_path, "silent", timeout=10)
    assert 9 < took < 20, took
    rec = gw.outq.load(mid)
    assert rec.rcpts[0].state == "pending" and "timeout" in rec.rcpts[0].reply, rec.rcpts[0].reply


def test_octets_after_starttls_220_end_the_session(tmp_path):
    gw, mid, seen, _ = run_against(tmp_path, "inject", tls="starttls")
    rec = gw.outq.load(mid)
    assert rec.rcpts[0].state == "pending"
    assert "data after STARTTLS reply" in rec.rcpts[0].reply or "unexpected reply" in rec.rcpts[0].reply, \
        rec.rcpts[0].reply
    assert not any(ln.startswith(b"MAIL") for ln in seen)


def test_opportunistic_without_starttls_needs_no_tls_context(tmp_path, monkeypatch):
    # A board with certificate checks on but no CA file cannot build a context;
    # a smarthost that offers no STARTTLS must still get the mail (make run
    # under MicroPython: the emulated ISP speaks plain SMTP).
    from dialgate.relay import Relay

    def no_context(self):
        raise ValueError("a CA file is needed to verify certificates on a board")

    monkeypatch.setattr(Relay, "tls_context", no_context)
    gw, mid, seen, _ = run_against(tmp_path, "plain", tls="opportunistic", verify=True)
    assert not any(ln.startswith(b"STARTTLS") for ln in seen)
    assert gw.relay.state.delivered == 1 and gw.outq.ids() == [], gw.outq.ids()
    gw2, _, seen2, _ = run_against(tmp_path / "2", "drop", tls="opportunistic", verify=True)
    assert not any(ln.startswith(b"MAIL") for ln in seen2)  # offered STARTTLS, no context: nothing in clear
    assert gw2.outq.ids() and gw2.relay.state.delivered == 0
