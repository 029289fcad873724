"""The emulated line's forwarders (host_tools/modem_line.py): a reply the far end
sends just before it closes arrives before the close, as TCP delivers it.

The half-close used to be scheduled at the same instant as the last data (a
zero-length read takes no line time), and asyncio's timer heap does not keep
the order of equal times: now and then the EOF went first and the reply was
dropped (seen as a POP3 QUIT reply lost, tests/host/test_reliability_link.py).
"""

import asyncio

from gateway import free_port
from host_tools.modem_line import Forward, Line


def test_the_last_reply_before_a_close_is_not_lost():
    async def main() -> list[bytes]:
        async def server(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readline()
            w.write(b"+OK bye\r\n")  # the reply, then the close at once (a POP3 QUIT)
            await w.drain()
            w.close()

        srv = await asyncio.start_server(server, "127.0.0.1", 0)
        listen = free_port()
        line = Line(200_000, 20, [Forward(("127.0.0.1", listen), ("127.0.0.1", srv.sockets[0].getsockname()[1]),
                                          True)])
        await line.connect()

        async def client(k: int) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", listen)
            w.write(b"QUIT %d\r\n" % k)
            await w.drain()
            got = await asyncio.wait_for(r.read(), 10)  # until EOF
            w.close()
            return got

        try:
            out = []
            for _ in range(10):  # many at once: other timers around the ones that tie
                out += await asyncio.gather(*(client(k) for k in range(20)))
            return out
        finally:
            await line.disconnect()
            srv.close()

    got = asyncio.run(main())
    assert got == [b"+OK bye\r\n"] * len(got), sorted(set(got))
