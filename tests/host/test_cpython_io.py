"""CPython's stream adapter (compat_cpython.Stream, issue #11): what it changes
in asyncio's behaviour keeps every octet and every error.

- A served connection's transport reads at most 64 KiB per recv(): asyncio's
  256 KiB default is an mmap, mremap and munmap per command under glibc.
- drain() skips asyncio's drain when nothing is queued, but a lost connection
  still raises from it (a RETR streaming to a client that went away stops).
"""

import asyncio

import fwtest  # noqa: F401  (firmware on sys.path)
from dialgate import compat
from dialgate.compat_cpython import _RECV_MAX


async def _serve(handler):
    """A server on a free loopback port through compat.start_server -> (server, port)."""
    server = await compat.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_served_stream_reads_at_most_64k_and_loses_nothing():
    got = {}

    async def handler(stream):
        got["max_size"] = stream._w.transport.max_size
        buf = bytearray(_RECV_MAX)
        total = bytearray()
        while True:
            n = await stream.readinto(memoryview(buf))
            if not n:
                break
            assert n <= _RECV_MAX
            total += buf[:n]
        got["data"] = bytes(total)
        stream.close()

    async def main():
        server, port = await _serve(handler)
        payload = bytes(range(256)) * 2048  # 512 KiB: many reads
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(payload)
        await w.drain()
        w.write_eof()
        await r.read()
        w.close()
        server.close()
        await server.wait_closed()
        return payload

    payload = asyncio.run(main())
    assert got["max_size"] == _RECV_MAX == 65536
    assert got["data"] == payload


def test_drain_after_the_peer_has_gone_raises():
    result = {}

    async def handler(stream):
        await stream.drain()  # nothing queued: returns at once
        peer_gone.set()
        await closed.wait()
        chunk = b"x" * 65536
        try:
            for _ in range(200):  # 12.5 MiB: far beyond what the kernel buffers
                stream.write(chunk)
                await stream.drain()
            result["raised"] = None
        except (ConnectionError, OSError) as e:
            result["raised"] = type(e).__name__
        stream.close()

    async def main():
        global peer_gone, closed
        peer_gone = asyncio.Event()
        closed = asyncio.Event()
        server, port = await _serve(handler)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await peer_gone.wait()
        w.transport.abort()  # RST: the client is gone
        await asyncio.sleep(0.05)
        closed.set()
        for _ in range(100):
            if "raised" in result:
                break
            await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert result.get("raised"), result
