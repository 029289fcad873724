"""The relay client's transport: one TCP or TLS connection driving a sans-IO
SmtpClient with bounded framing, STARTTLS by hand and an idle deadline.
Imported by relay.py on the first connection only."""

import asyncio

from . import compat, compat_relay
from .proto import Framer


async def converse(relay, host, port, name, client):
    """Drive `client` over one TCP (or TLS) connection with an idle deadline
    (`relay.timeout`). Raises what the connection raised (OSError, ValueError)."""
    err = []

    async def run():
        try:
            await _converse(relay, host, port, name, client)
        except Exception as e:  # handed to the caller below, not to the loop's handler
            err.append(e)

    task = asyncio.create_task(run())
    limit = relay.cfg["relay.timeout"] * 1000
    relay.last_io = compat.ticks_ms()
    while not task.done():
        await asyncio.sleep(0.05)
        if compat.ticks_diff(compat.ticks_ms(), relay.last_io) > limit:
            task.cancel()
            client.failed = client.failed or (0, b"timeout")
            break
    try:
        await task
    except asyncio.CancelledError:
        if not client.failed:
            raise
    if err:
        raise err[0]


async def _converse(relay, host, port, name, client):
    tls = relay.cfg["relay.tls"]
    if tls == "implicit":
        stream = await compat_relay.open_tls_connection(host, port, relay.tls_context(), name)
    else:
        stream = await compat.open_connection(host, port)
    size = relay.cfg["board.buffer"]
    fr = Framer(client, size)
    obuf = bytearray(size)
    omv = memoryview(obuf)

    def write(b):
        if b:
            stream.write(b)

    try:
        while not client.closing:
            n = await stream.readinto(fr.space())
            if not n:
                client.on_eof()
                break
            relay.last_io = compat.ticks_ms()
            fr.received(n)
            while fr.process(write):
                p = client.producer
                if p is not None:
                    while True:  # the body, dot-stuffed from flash, chunk by chunk
                        k = p.fill(obuf)
                        if not k:
                            break
                        stream.write(omv[:k])
                        await stream.drain()
                        relay.last_io = compat.ticks_ms()
                    client.producer = None
                    write(client.take_reply())
            if client.want_tls:
                if fr.start != fr.end:  # RFC 3207 §5 / CVE-2011-0411: nothing may follow the 220
                    client.failed = (0, b"data after STARTTLS reply")
                    break
                await stream.drain()
                # the context only now: a smarthost that offers no STARTTLS to an
                # opportunistic client needs none (nor a CA file on a board)
                stream = await compat_relay.start_tls(stream, relay.tls_context(), name)
                write(client.tls_started())
            await stream.drain()
    finally:
        p = client.producer
        if p is not None:
            client.producer = None
            p.close()
        try:
            stream.close()
            await compat.wait_closed(stream)
        except OSError:
            pass
