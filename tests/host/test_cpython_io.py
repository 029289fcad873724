"""CPython's stream adapter (compat_cpython.Stream, issue #11): what it changes
in asyncio's behaviour keeps every octet and every error.

- A served connection's transport reads at most 64 KiB per recv(): asyncio's
  256 KiB default is an mmap, mremap and munmap per command under glibc.
- drain() skips asyncio's drain when nothing is queued, but a lost connection
  still raises from it (a RETR streaming to a client that went away stops).
- drain() returns only when the transport holds nothing of what was written
  (compat_cpython.hold_nothing): the firmware fills the same buffer again
  after drain(), and Python 3.12's transports queue a view of it, not a copy.
  A slow POP3 client gets a 4 MB message intact from a gateway under every
  CPython on this machine from 3.11 on (it got a corrupt one under 3.12 and
  3.13 before).
"""

import asyncio
import glob
import os
import socket
import subprocess
import sys
import time

import pytest

import fwtest  # noqa: F401  (firmware on sys.path)
from dialgate import compat
from dialgate.compat_cpython import _RECV_MAX
from gateway import Gateway


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


def _pattern(i: int) -> bytes:
    return bytes([65 + i % 26]) * 65536


def test_drain_returns_with_nothing_queued_so_the_buffer_can_be_filled_again():
    got = {"left": []}

    async def handler(stream):
        buf = bytearray(65536)
        mv = memoryview(buf)
        # a send buffer that does not grow (autotuned, it would take all 3 MiB at once)
        stream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        for i in range(48):  # 3 MiB to a client that reads 8 KiB at a time
            buf[:] = _pattern(i)
            stream.write(mv)
            await stream.drain()
            got["left"].append(stream._w.transport.get_write_buffer_size())
        stream.close()

    async def main():
        server, port = await _serve(handler)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(s, ("127.0.0.1", port))
        data = bytearray()
        while True:
            await asyncio.sleep(0.001)
            try:
                d = s.recv(8192)
            except BlockingIOError:
                continue
            if not d:
                break
            data += d
        s.close()
        server.close()
        await server.wait_closed()
        return bytes(data)

    data = asyncio.run(main())
    assert set(got["left"]) == {0}, got["left"]
    assert data == b"".join(_pattern(i) for i in range(48))


def cpythons() -> list[str]:
    """This interpreter and every other CPython >= 3.11 found here (PATH, pyenv), one per version."""
    found = {sys.version_info[:2]: sys.executable}
    cands = [f"python3.{n}" for n in range(11, 16)]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    for c in cands:
        try:
            out = subprocess.run([c, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.split():
            v = tuple(int(x) for x in out.stdout.split())
            if v >= (3, 11) and v not in found:
                found[v] = c
    print("CPythons:", {".".join(map(str, v)): p for v, p in sorted(found.items())})
    return [found[v] for v in sorted(found)]


def _body() -> bytes:
    lines = [b"From: a@isp.test", b"To: alice@office.test", b"Subject: big", b""]
    # 4 MB: more than the gateway's send buffer grows to with a client this slow
    lines += [b"line %06d %s" % (i, b"0123456789abcdef" * 4) for i in range(56000)]
    lines += [b".a dot-stuffed line", b""]
    return b"\r\n".join(lines)


@pytest.mark.parametrize("python", cpythons())
def test_a_slow_pop3_client_gets_a_big_message_intact(tmp_path, python):
    from test_pop3_clients import PASSWORD, deliver

    body = _body()
    deliver(tmp_path / "spool", "alice", [body])
    gw = Gateway(tmp_path, python=python)
    try:
        ok, lines, _ = gw.command(f"user add alice {PASSWORD}")
        assert ok, lines
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect(("127.0.0.1", gw.pop3_port))
        f = s.makefile("rb", buffering=0)

        def line() -> bytes:
            out = b""
            while not out.endswith(b"\r\n"):
                c = f.read(1)
                assert c, out
                out += c
            return out

        assert line().startswith(b"+OK")
        s.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nRETR 1\r\n".encode())
        assert line().startswith(b"+OK")
        assert line().startswith(b"+OK")
        assert line().startswith(b"+OK")
        data = bytearray()
        while not data.endswith(b"\r\n.\r\n"):
            time.sleep(0.001)  # slower than the gateway writes: its sends come back short
            d = s.recv(8192)
            assert d, len(data)
            data += d
        s.sendall(b"QUIT\r\n")
        s.close()
        got = bytes(data[:-5]).replace(b"\r\n..", b"\r\n.")
        assert got == body.rstrip(b"\r\n"), (python, len(got), len(body))
    finally:
        gw.stop()
