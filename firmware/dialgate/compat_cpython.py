"""CPython's side of the asyncio stream differences (part of the compat family).

compat imports this only on CPython, so a board never loads its code. CPython
hands out a (reader, writer) pair where MicroPython has one Stream; `Stream`
gives the pair the MicroPython subset the firmware uses.
"""

import asyncio


class Stream:
    """CPython's (reader, writer) as a MicroPython Stream: readinto, read, write,
    drain, close, wait_closed, get_extra_info."""

    def __init__(self, reader, writer):
        self._r = reader
        self._w = writer

    async def readinto(self, buf):
        data = await self._r.read(len(buf))
        n = len(data)
        buf[:n] = data
        return n

    async def read(self, n):
        return await self._r.read(n)

    def write(self, data):
        self._w.write(data)

    async def drain(self):
        await self._w.drain()

    def close(self):
        self._w.close()

    async def wait_closed(self):
        try:
            await self._w.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    def get_extra_info(self, name):
        return self._w.get_extra_info(name)


async def start_server(cb, host, port, backlog=5):
    async def wrap(reader, writer):
        await cb(Stream(reader, writer))

    return await asyncio.start_server(wrap, host, port, backlog=backlog, reuse_address=True)  # pyright: ignore[reportCallIssue]


async def open_connection(host, port):
    r, w = await asyncio.open_connection(host, port)
    return Stream(r, w)


async def start_tls_server(stream, ctx):
    """Server side of STARTTLS: TLS over the same transport, read through a fresh
    StreamReader so bytes the client sent before the handshake, already in the
    old reader's buffer, are dropped (RFC 3207 §4.2)."""
    loop = asyncio.get_running_loop()  # type: ignore  # CPython only (board stubs lack it)
    w = stream._w
    await w.drain()
    reader = asyncio.StreamReader()  # type: ignore
    protocol = asyncio.StreamReaderProtocol(reader)  # type: ignore
    transport = await loop.start_tls(w.transport, protocol, ctx, server_side=True)
    protocol.connection_made(transport)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)  # type: ignore
    return Stream(reader, writer)
